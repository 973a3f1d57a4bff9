//! Parsers against real captured bytes (`testdata/*.bin`, captured on 127.0.0.1 with socat from
//! openssl s_client 3.0, curl 7.88 and HAProxy 2.6) plus every truncated prefix of each.

use kawaii_sniff::proxy_protocol::{self, Addresses, Command, ProxyError};
use kawaii_sniff::tls::build;
use kawaii_sniff::{ClientHelloSniffer, HostSniff, HostSniffer, TlsSniff, sniff_host, sniff_sni};

fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Feeds `wire` one byte at a time; every proper prefix must be NeedMore; returns the final answer.
fn tls_bytewise(wire: &[u8]) -> TlsSniff {
    let mut s = ClientHelloSniffer::default();
    for end in 0..wire.len() {
        assert_eq!(
            s.feed(&wire[..end]),
            TlsSniff::NeedMore,
            "prefix of {end} bytes"
        );
        // A fresh parser on the same prefix agrees (no hidden state dependence).
        assert_eq!(
            sniff_sni(&wire[..end]),
            TlsSniff::NeedMore,
            "fresh prefix of {end} bytes"
        );
    }
    s.feed(wire)
}

fn sni(name: &str) -> TlsSniff {
    TlsSniff::Found {
        sni: Some(name.to_owned()),
    }
}

#[test]
fn openssl_client_hello_with_sni() {
    assert_eq!(
        tls_bytewise(&testdata("openssl_sni.bin")),
        sni("foo.example.com")
    );
}

#[test]
fn openssl_tls12_client_hello() {
    assert_eq!(
        tls_bytewise(&testdata("openssl_tls12_sni.bin")),
        sni("app.example.org")
    );
}

#[test]
fn curl_client_hello() {
    assert_eq!(
        tls_bytewise(&testdata("curl_sni.bin")),
        sni("www.example.net")
    );
}

#[test]
fn openssl_client_hello_without_sni() {
    assert_eq!(
        tls_bytewise(&testdata("openssl_nosni.bin")),
        TlsSniff::Found { sni: None }
    );
}

/// Re-frames a captured single-record ClientHello into `n` records.
fn reframe(wire: &[u8], n: usize) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
    let hs = &wire[5..5 + len];
    build::records(hs, hs.len().div_ceil(n))
}

#[test]
fn captured_hello_split_over_ten_records_and_bytewise() {
    let wire = reframe(&testdata("curl_sni.bin"), 10);
    assert_eq!(wire.len(), testdata("curl_sni.bin").len() + 45);
    assert_eq!(tls_bytewise(&wire), sni("www.example.net"));
    // One record per handshake byte (517 records).
    let wire = reframe(&testdata("openssl_sni.bin"), usize::MAX);
    assert_eq!(tls_bytewise(&wire), sni("foo.example.com"));
}

#[test]
fn http_on_tls_port_detected_from_first_byte() {
    assert_eq!(
        sniff_sni(&testdata("curl_http_get.bin")[..1]),
        TlsSniff::NotTls
    );
}

/// Feeds `wire` one byte at a time; every proper prefix must be NeedMore, for the incremental
/// sniffer and for a fresh one; returns the final answer (which both must agree on).
fn http_bytewise(wire: &[u8]) -> HostSniff {
    let mut s = HostSniffer::default();
    for end in 0..wire.len() {
        assert_eq!(s.feed(&wire[..end]), HostSniff::NeedMore, "prefix {end}");
        assert_eq!(
            sniff_host(&wire[..end], kawaii_sniff::DEFAULT_MAX_HEAD),
            HostSniff::NeedMore,
            "fresh prefix {end}"
        );
    }
    let last = s.feed(wire);
    assert_eq!(last, sniff_host(wire, kawaii_sniff::DEFAULT_MAX_HEAD));
    last
}

#[test]
fn curl_http_request_head() {
    let wire = testdata("curl_http_get.bin");
    let want = HostSniff::Found {
        host: Some("shop.example.com".into()),
        head_len: wire.len(),
    };
    assert_eq!(http_bytewise(&wire), want);
    let wire = testdata("curl_http_ipv6_host.bin");
    let want = HostSniff::Found {
        host: Some("::1".into()),
        head_len: wire.len(),
    };
    assert_eq!(http_bytewise(&wire), want);
    assert_eq!(sniff_host(&wire, 20), HostSniff::TooLarge);
}

#[test]
fn tls_on_http_port_is_malformed_at_once() {
    assert!(matches!(
        sniff_host(&testdata("curl_sni.bin")[..1], 16384),
        HostSniff::Malformed(_)
    ));
}

fn proxy_prefixes(wire: &[u8], header_len: usize) {
    for end in 0..header_len {
        assert_eq!(
            proxy_protocol::decode(&wire[..end]),
            Err(ProxyError::Incomplete),
            "{end}"
        );
    }
}

#[test]
fn haproxy_proxy_v1() {
    let wire = testdata("haproxy_proxy_v1.bin");
    let (h, n) = proxy_protocol::decode(&wire).expect("v1 decodes");
    assert_eq!(&wire[n..], b"hello");
    assert_eq!(h.version, 1);
    assert_eq!(
        h.addresses.source().map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(
        h.addresses.destination(),
        Some("127.0.0.1:18450".parse().expect("addr"))
    );
    proxy_prefixes(&wire, n);
    assert_eq!(
        proxy_protocol::encode_v1(Some((
            h.addresses.source().expect("src"),
            h.addresses.destination().expect("dst")
        ))),
        wire[..n].to_vec()
    );
}

#[test]
fn haproxy_proxy_v2() {
    let wire = testdata("haproxy_proxy_v2.bin");
    let (h, n) = proxy_protocol::decode(&wire).expect("v2 decodes");
    assert_eq!(&wire[n..], b"hello");
    assert_eq!((h.version, h.command), (2, Command::Proxy));
    assert!(matches!(h.addresses, Addresses::Inet { .. }));
    assert_eq!(
        h.addresses.source().map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.0.3")
    );
    proxy_prefixes(&wire, n);
    assert_eq!(
        proxy_protocol::encode_v2(&h).expect("encode"),
        wire[..n].to_vec()
    );
}

#[test]
fn haproxy_proxy_v2_with_crc32c_and_unique_id() {
    let wire = testdata("haproxy_proxy_v2_tlvs.bin");
    let (h, n) = proxy_protocol::decode(&wire).expect("v2 decodes, CRC verified");
    assert_eq!(&wire[n..], b"hello");
    assert_eq!(h.tlvs.len(), 2);
    assert_eq!(h.tlvs[1].value, b"abc123");
    proxy_prefixes(&wire, n);
    // Our encoder recomputes the same CRC32C HAProxy sent.
    assert_eq!(
        proxy_protocol::encode_v2(&h).expect("encode"),
        wire[..n].to_vec()
    );
    let mut bad = wire.clone();
    bad[20] ^= 0xff;
    assert_eq!(proxy_protocol::decode(&bad), Err(ProxyError::V2Checksum));
}
