//! Fuzz the PROXY v1/v2 decoder; a decoded v2 header re-encodes and decodes to itself.
#![no_main]
use kawaii_sniff::proxy_protocol::{decode, encode_v2};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, n)) = decode(data) {
        assert!(n <= data.len());
        if h.version == 2
            && let Ok(wire) = encode_v2(&h)
        {
            let (again, _) = decode(&wire).expect("re-encoded header decodes");
            assert_eq!(again.addresses, h.addresses);
        }
    }
});
