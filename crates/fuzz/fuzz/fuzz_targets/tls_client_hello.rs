//! `kawaii_fuzz::targets::tls_client_hello` under libFuzzer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kawaii_fuzz::targets::tls_client_hello(data));
