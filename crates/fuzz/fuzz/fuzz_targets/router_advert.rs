//! `kawaii_fuzz::targets::router_advert` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::router_advert(data));
