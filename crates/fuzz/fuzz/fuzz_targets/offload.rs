//! `kawaii_fuzz::targets::offload` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::offload(data));
