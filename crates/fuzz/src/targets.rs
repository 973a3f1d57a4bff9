//! The targets: each takes arbitrary bytes, runs one decoder as the daemon does on untrusted
//! input, and checks what must hold of its answer (round trips, incremental = one-shot). Each
//! panics only on a bug.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key the authenticated formats are checked under.
const KEY: [u8; 32] = *b"kawaii fuzz key, not a secret ok";

fn tag(data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&KEY).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The ClientHello sniffer, one-shot and fed in segments whose size comes from the input: the
/// first verdict of the incremental parse is the one the whole input gets.
pub fn tls_client_hello(data: &[u8]) {
    use kawaii_sniff::{ClientHelloSniffer, TlsSniff, sniff_sni};
    let whole = sniff_sni(data);
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut s = ClientHelloSniffer::default();
    let mut end = 0;
    let last = loop {
        let answer = s.feed(&data[..end]);
        if answer != TlsSniff::NeedMore || end == data.len() {
            break answer;
        }
        end = (end + step).min(data.len());
    };
    assert_eq!(last, whole, "after {end} of {} bytes", data.len());
    assert!(s.consumed() <= data.len());
}

/// The HTTP head sniffer with a cap from the input: the first verdict fed in segments agrees
/// with a one-shot parse (the same route, or a rejection for both).
pub fn http_host(data: &[u8]) {
    use kawaii_sniff::{HostSniff, HostSniffer, sniff_host};
    let rejected = |s: &HostSniff| matches!(s, HostSniff::Malformed(_) | HostSniff::TooLarge);
    let max = usize::from(data.first().copied().unwrap_or(0)) * 64;
    let step = usize::from(data.get(1).copied().unwrap_or(1)).max(1);
    let whole = sniff_host(data, max);
    let mut s = HostSniffer::new(max);
    let mut end = 0;
    let last = loop {
        let answer = s.feed(&data[..end]);
        if answer != HostSniff::NeedMore || end == data.len() {
            break answer;
        }
        end = (end + step).min(data.len());
    };
    assert!(
        last == whole || (rejected(&last) && rejected(&whole)),
        "after {end} of {} bytes: {last:?}, whole input: {whole:?}",
        data.len()
    );
    if let HostSniff::Found { head_len, .. } = whole {
        assert!(head_len <= data.len() && head_len <= max);
    }
}

/// PROXY v1/v2: a decoded header decodes the same from exactly its own bytes, every shorter
/// prefix is `Incomplete`, and a v2 header re-encodes and decodes to itself.
pub fn proxy_protocol(data: &[u8]) {
    use kawaii_sniff::proxy_protocol::{ProxyError, decode, encode_v2};
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
}

/// VRRPv3 over IPv4 and IPv6: the IP and advert decoders; a decoded advert re-encodes to the
/// same message.
pub fn vrrp_advert(data: &[u8]) {
    use kawaii_vrrp::{
        Advert, MULTICAST_GROUP6, decode_datagram, decode_datagram6, parse_ipv4, parse_ipv6,
    };
    use std::net::{Ipv4Addr, Ipv6Addr};
    let _ = parse_ipv4(data);
    let _ = decode_datagram(data);
    let _ = parse_ipv6(data);
    let _ = decode_datagram6(data);
    if let Ok(advert) = Advert::decode(data) {
        let (src, dst) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(224, 0, 0, 18));
        let bytes = advert.encode(src, dst).expect("a decoded advert encodes");
        assert_eq!(bytes.len(), data.len());
        assert_eq!(Advert::decode_checked(&bytes, src, dst).ok(), Some(advert));
    }
    if let Ok(advert) = Advert::decode6(data) {
        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
        let bytes = advert
            .encode(src, MULTICAST_GROUP6)
            .expect("a decoded advert encodes");
        assert_eq!(bytes.len(), data.len());
        assert_eq!(
            Advert::decode_checked(&bytes, src, MULTICAST_GROUP6).ok(),
            Some(advert)
        );
    }
}

/// IPv6 router and neighbour advertisements and router solicitations: a decoded
/// advertisement re-encodes to a message that decodes to it again (unknown options dropped).
pub fn router_advert(data: &[u8]) {
    use kawaii_vrrp::ra::{NeighborAdvert, RouterAdvert, is_router_solicit};
    let _ = is_router_solicit(data);
    if let Ok(na) = NeighborAdvert::decode(data) {
        assert_eq!(NeighborAdvert::decode(&na.encode()).ok(), Some(na));
    }
    if let Ok(ra) = RouterAdvert::decode(data) {
        let bytes = ra.encode().expect("a decoded advertisement encodes");
        assert_eq!(RouterAdvert::decode(&bytes).ok(), Some(ra));
    }
}

/// The WireGuard endpoint-sync message, as it arrives (almost always a bad tag) and with a
/// valid tag appended, so that the parser behind the MAC is reached: what decodes re-encodes
/// to the same bytes.
pub fn wg_sync(data: &[u8]) {
    use kawaii_drivers::wg_sync::{DecodeError, MAX_ENTRIES, decode, encode};
    let _ = decode(data, &KEY);
    let mut signed = data.to_vec();
    signed.extend_from_slice(&tag(data));
    match decode(&signed, &KEY) {
        Ok((version, m)) if m.entries.len() <= MAX_ENTRIES => {
            assert_eq!(encode(&m, &KEY, version), signed)
        }
        Ok(_) => {}
        Err(e) => assert_ne!(e, DecodeError::BadTag, "a valid tag refused"),
    }
}

/// The VPC peering consent hello, as it arrives and with a valid tag over the body of the
/// version its byte 4 names (32 bytes for version 1, 66 for version 2's IPv6 pair): it decodes
/// exactly when its header parses, and re-encodes to the same bytes.
pub fn consent_hello(data: &[u8]) {
    use kawaii_drivers::consent::{ConsentError, Message};
    let _ = Message::peek(data);
    let _ = Message::decode(data, &KEY);
    let body = if data.get(4) == Some(&2) { 66 } else { 32 };
    let mut signed = vec![0u8; body];
    let n = data.len().min(body);
    signed[..n].copy_from_slice(&data[..n]);
    let mac = tag(&signed);
    signed.extend_from_slice(&mac);
    match (Message::peek(&signed), Message::decode(&signed, &KEY)) {
        (Ok(p), Ok(m)) => {
            assert_eq!(p, m);
            assert_eq!(m.encode(&KEY), signed);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (p, m) => panic!("peek {p:?} but decode {m:?}"),
    }
    assert!(!matches!(
        Message::decode(&signed, &KEY),
        Err(ConsentError::BadMac)
    ));
}

/// The TUN offload: a `virtio_net_hdr` and packet from the kernel (TSO split, checksum), and a
/// run of decrypted packets through GRO.
pub fn offload(data: &[u8]) {
    kawaii_wg::fuzz_offload(data);
}

/// A native TOML config, as `kawaii check` and a reload read it: parse, validate, plan, render.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_gateway(kawaii_model::Gateway::parse(
        text,
        kawaii_model::Format::Toml,
    ));
}

/// The drop-in formats (kiagateway `servers.toml`, Cloud Gateway `conf.yaml`, Kilo `Peer`
/// manifests): what they make validates and plans without a panic.
pub fn dropins(data: &[u8]) {
    use kawaii_model::dropin;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(g) = dropin::kiagateway(text) {
        check_gateway(g);
    }
    if let Some(g) = dropin::cloud_gateway(text) {
        check_gateway(g);
    }
    if let Some(Ok(peers)) = dropin::kilo_peers(text) {
        for p in &peers {
            let _ = dropin::kilo_peer(p, false);
        }
    }
}

/// Every API request body parser, and the validation and plan a commit would run.
pub fn api_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        kawaii_api::fuzz_bodies(text);
    }
}

fn check_gateway(g: Result<kawaii_model::Gateway, kawaii_model::ModelError>) {
    let Ok(mut g) = g else { return };
    g.prepare_commit(&kawaii_model::Gateway::default());
    let Ok(report) = kawaii_model::validate(&g) else {
        return;
    };
    let zones: Vec<Option<String>> = std::iter::once(None)
        .chain(report.desired.zones.iter().map(|z| Some(z.name.clone())))
        .collect();
    for zone in zones {
        if let Ok(plan) = kawaii_plan::plan(&report.desired, zone.as_deref()) {
            if let Some(t) = &plan.nftables {
                let _ = t.render();
            }
            let _ = plan.net.render();
            if let Some(w) = &plan.wireguard {
                let _ = w.render();
            }
        }
    }
}
