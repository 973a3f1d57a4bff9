//! Fuzz the router and neighbour advertisement decoders; a decoded advertisement re-encodes to a message that
//! decodes to it again (unknown options dropped).
#![no_main]
use kawaii_vrrp::ra::{NeighborAdvert, RouterAdvert, is_router_solicit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = is_router_solicit(data);
    if let Ok(na) = NeighborAdvert::decode(data) {
        assert_eq!(NeighborAdvert::decode(&na.encode()).ok(), Some(na));
    }
    if let Ok(ra) = RouterAdvert::decode(data) {
        let bytes = ra.encode().expect("a decoded advertisement encodes");
        assert_eq!(RouterAdvert::decode(&bytes).ok(), Some(ra));
    }
});
