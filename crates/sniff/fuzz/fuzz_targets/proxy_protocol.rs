//! Fuzz the PROXY v1/v2 decoder: a decoded header decodes the same from exactly its own bytes,
//! every shorter prefix of them is `Incomplete`, and a v2 header re-encodes and decodes to itself.
#![no_main]
use kawaii_sniff::proxy_protocol::{ProxyError, decode, encode_v2};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((h, n)) = decode(data) else { return };
    assert!(n <= data.len());
    assert_eq!(decode(&data[..n]), Ok((h.clone(), n)));
    for end in 0..n {
        assert_eq!(
            decode(&data[..end]),
            Err(ProxyError::Incomplete),
            "prefix {end} of {n}"
        );
    }
    if h.version == 2
        && let Ok(wire) = encode_v2(&h)
    {
        let (again, m) = decode(&wire).expect("re-encoded header decodes");
        assert_eq!(m, wire.len());
        assert_eq!(again.addresses, h.addresses);
        assert_eq!(again.command, h.command);
    }
});
