//! Pure parsers for L4 domain routing: the TLS ClientHello SNI ([`tls`]), the HTTP/1.x request
//! head Host ([`http`]) and the PROXY protocol v1/v2 header ([`proxy_protocol`]).
//!
//! No runtime, socket or allocator tricks: every function takes the bytes received so far and
//! answers whether it needs more, found what it looks for, or must reject the input. No input
//! makes any of them panic (tested on every truncated prefix and fuzzed).

pub mod http;
pub mod proxy_protocol;
pub mod tls;

pub use http::{DEFAULT_MAX_HEAD, HostSniff, HostSniffer, HttpError, sniff_host};
pub use proxy_protocol::{Addresses, Command, ProxyError, ProxyHeader, Tlv, Transport};
pub use tls::{ClientHelloSniffer, MAX_CLIENT_HELLO, TlsError, TlsSniff, sniff_sni};

/// Every error this crate reports, for callers that want one type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("http: {0}")]
    Http(#[from] HttpError),
    #[error("proxy protocol: {0}")]
    Proxy(#[from] ProxyError),
}

/// Lowercases a DNS name, strips one trailing dot and checks it is a plausible host name
/// (LDH labels plus `_`, 1..=63 bytes per label, 1..=253 bytes in total).
pub(crate) fn normalize_dns_name(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > 253 {
        return None;
    }
    for label in raw.split(|b| *b == b'.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
    }
    let mut s = String::with_capacity(raw.len());
    for b in raw {
        s.push(char::from(b.to_ascii_lowercase()));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::normalize_dns_name;

    #[test]
    fn dns_names() {
        assert_eq!(
            normalize_dns_name(b"Foo.Example.COM.").as_deref(),
            Some("foo.example.com")
        );
        assert_eq!(normalize_dns_name(b"a_b-c.d").as_deref(), Some("a_b-c.d"));
        assert_eq!(normalize_dns_name(b"."), None);
        assert_eq!(normalize_dns_name(b"a..b"), None);
        assert_eq!(normalize_dns_name(b"a b"), None);
        assert_eq!(normalize_dns_name(&[b'a'; 64]), None);
        assert_eq!(normalize_dns_name(b"caf\xc3\xa9"), None);
    }
}
