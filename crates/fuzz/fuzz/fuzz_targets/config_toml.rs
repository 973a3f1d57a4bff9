//! `kawaii_fuzz::targets::config_toml` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::config_toml(data));
