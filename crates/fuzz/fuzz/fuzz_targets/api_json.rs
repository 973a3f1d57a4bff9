//! `kawaii_fuzz::targets::api_json` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::api_json(data));
