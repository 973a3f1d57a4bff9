//! Property tests: round trips through builders/encoders, arbitrary splits, arbitrary garbage.

use kawaii_sniff::proxy_protocol::{self, Addresses, Command, ProxyHeader, Tlv, Transport};
use kawaii_sniff::tls::build;
use kawaii_sniff::{ClientHelloSniffer, HostSniff, HostSniffer, TlsSniff, sniff_host, sniff_sni};
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?"
}

fn dns_name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..5).prop_map(|l| l.join("."))
}

fn sock() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
    ]
}

proptest! {
    #[test]
    fn sni_survives_any_record_split_and_segmenting(
        name in dns_name(), pad in 0usize..3000, rec in 1usize..400, seg in 1usize..64,
        dot in any::<bool>(),
    ) {
        let wire_name = if dot { format!("{name}.") } else { name.clone() };
        let wire = build::records(&build::client_hello(Some(wire_name.as_bytes()), pad), rec);
        let mut s = ClientHelloSniffer::default();
        let mut end = 0;
        let answer = loop {
            end = (end + seg).min(wire.len());
            let a = s.feed(&wire[..end]);
            if a != TlsSniff::NeedMore || end == wire.len() { break a; }
        };
        prop_assert_eq!(end, wire.len());
        prop_assert_eq!(answer, TlsSniff::Found { sni: Some(name.to_ascii_lowercase()) });
    }

    #[test]
    fn tls_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = sniff_sni(&bytes);
        let mut tls = vec![22u8, 3, 1];
        tls.extend_from_slice(&bytes);
        let _ = sniff_sni(&tls);
    }

    #[test]
    fn host_roundtrip(name in dns_name(), port in proptest::option::of(any::<u16>())) {
        let authority = match port { Some(p) => format!("{name}:{p}"), None => name.clone() };
        let req = format!("GET /x HTTP/1.1\r\nUser-Agent: t\r\nHost: {authority}\r\n\r\nbody");
        let mut s = HostSniffer::default();
        let head_len = req.len() - 4;
        for end in 0..head_len {
            prop_assert_eq!(s.feed(&req.as_bytes()[..end]), HostSniff::NeedMore);
        }
        prop_assert_eq!(
            s.feed(req.as_bytes()),
            HostSniff::Found { host: Some(name.to_ascii_lowercase()), head_len }
        );
    }

    #[test]
    fn http_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048), max in 0usize..4096) {
        let _ = sniff_host(&bytes, max);
        let mut req = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        req.extend_from_slice(&bytes);
        req.extend_from_slice(b"\r\n\r\n");
        let _ = sniff_host(&req, max);
    }

    #[test]
    fn proxy_v2_roundtrip(src in sock(), dst in sock(), tlvs in prop::collection::vec(
        (4u8..=255, prop::collection::vec(any::<u8>(), 0..40)), 0..4), crc in any::<bool>()) {
        let mut tlvs: Vec<Tlv> = tlvs.into_iter().map(|(kind, value)| Tlv { kind, value }).collect();
        if crc { tlvs.insert(0, Tlv { kind: 3, value: vec![0; 4] }); }
        let h = ProxyHeader { version: 2, command: Command::Proxy,
            addresses: Addresses::Inet { transport: Transport::Stream, source: src, destination: dst }, tlvs };
        let wire = proxy_protocol::encode_v2(&h).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (back, n) = proxy_protocol::decode(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(n, wire.len());
        let same_family = src.is_ipv4() == dst.is_ipv4();
        if same_family && !crc {
            prop_assert_eq!(back, h);
        } else {
            prop_assert_eq!(back.addresses.source().map(|a| a.port()), Some(src.port()));
        }
        for end in 0..wire.len() {
            prop_assert_eq!(proxy_protocol::decode(&wire[..end]), Err(proxy_protocol::ProxyError::Incomplete));
        }
    }

    #[test]
    fn proxy_v1_roundtrip(src in sock(), dst in sock()) {
        let wire = proxy_protocol::encode_v1(Some((src, dst)));
        let (back, n) = proxy_protocol::decode(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(n, wire.len());
        prop_assert_eq!(back.addresses.source().map(|a| a.port()), Some(src.port()));
        if src.is_ipv4() && dst.is_ipv4() {
            prop_assert_eq!(back.addresses.source(), Some(src));
            prop_assert_eq!(back.addresses.destination(), Some(dst));
        }
    }

    #[test]
    fn proxy_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), v2 in any::<bool>()) {
        let mut buf = if v2 { proxy_protocol::V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
        buf.extend_from_slice(&bytes);
        let _ = proxy_protocol::decode(&buf);
        let _ = proxy_protocol::decode(&bytes);
    }
}
