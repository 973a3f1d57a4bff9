//! `kawaii_fuzz::targets::http_host` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::http_host(data));
