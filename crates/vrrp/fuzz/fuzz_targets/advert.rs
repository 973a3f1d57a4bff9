//! Fuzz the VRRPv3 decoders; a decoded advert re-encodes to the same message (reserved bits aside).
#![no_main]
use std::net::Ipv4Addr;

use kawaii_vrrp::{Advert, decode_datagram, parse_ipv4};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_ipv4(data);
    let _ = decode_datagram(data);
    if let Ok(advert) = Advert::decode(data) {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(224, 0, 0, 18);
        let bytes = advert.encode(src, dst).expect("a decoded advert encodes");
        assert_eq!(bytes.len(), data.len());
        assert_eq!(Advert::decode_checked(&bytes, src, dst).ok(), Some(advert));
    }
});
