//! `kawaii_fuzz::targets::proxy_protocol` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::proxy_protocol(data));
