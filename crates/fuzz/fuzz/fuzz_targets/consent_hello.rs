//! `kawaii_fuzz::targets::consent_hello` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::consent_hello(data));
