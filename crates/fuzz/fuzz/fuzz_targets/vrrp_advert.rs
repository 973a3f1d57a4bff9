//! `kawaii_fuzz::targets::vrrp_advert` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::vrrp_advert(data));
