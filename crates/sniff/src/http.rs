//! HTTP/1.x request head parser that extracts the routing host (RFC 9112 §3.2, RFC 9110 §7.2).
//!
//! Contract: feed a [`HostSniffer`] the bytes received so far; it answers
//! [`HostSniff::NeedMore`] until the head (`\r\n\r\n`) is complete, then [`HostSniff::Found`] with
//! the host lowercased, port and trailing dot removed (IPv6 literals without brackets), or
//! [`HostSniff::Malformed`] (400) / [`HostSniff::TooLarge`] (431). Scanning is linear in the
//! input: the head is parsed by `httparse` once, when its end has been seen.

use std::net::Ipv6Addr;

/// Default cap on the request head, terminator included.
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 128;

/// Answer of the sniffer for the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSniff {
    NeedMore,
    /// Complete head of `head_len` bytes; `host` is `None` for an HTTP/1.0 request without Host
    /// or an empty Host (RFC 9112 §3.2).
    Found {
        host: Option<String>,
        head_len: usize,
    },
    Malformed(HttpError),
    TooLarge,
}

/// Why a request head was rejected as malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("request head does not parse: {0}")]
    Syntax(String),
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Host value")]
    BadHost,
}

/// Linear-time request head sniffer. See the module doc.
#[derive(Debug, Clone)]
pub struct HostSniffer {
    max: usize,
    scanned: usize,
}

impl Default for HostSniffer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_HEAD)
    }
}

impl HostSniffer {
    pub fn new(max_head: usize) -> Self {
        Self {
            max: max_head,
            scanned: 0,
        }
    }

    /// Looks at `buf`, the bytes received so far (a prefix-stable, growing buffer).
    pub fn feed(&mut self, buf: &[u8]) -> HostSniff {
        let start = self.scanned.saturating_sub(3).min(buf.len());
        let end = buf[start..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| start + p + 4);
        let Some(end) = end else {
            self.scanned = buf.len();
            if buf.len() >= self.max {
                return HostSniff::TooLarge;
            }
            // Reject obvious garbage (e.g. a TLS ClientHello) without waiting for a terminator,
            // but only what the complete head would be rejected for too: the method is a token
            // (RFC 9110 §9.1), and empty lines before the request line are ignored (RFC 9112 §2.2).
            if let Some(&b) = buf.iter().find(|b| !matches!(b, b'\r' | b'\n'))
                && !is_tchar(b)
            {
                return HostSniff::Malformed(HttpError::Syntax("method".into()));
            }
            return HostSniff::NeedMore;
        };
        if end > self.max {
            return HostSniff::TooLarge;
        }
        parse_head(&buf[..end])
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One-shot convenience: parse `buf` from the start.
pub fn sniff_host(buf: &[u8], max_head: usize) -> HostSniff {
    HostSniffer::new(max_head).feed(buf)
}

fn parse_head(head: &[u8]) -> HostSniff {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return HostSniff::Malformed(HttpError::Syntax("incomplete head".into()));
        }
        Err(httparse::Error::TooManyHeaders) => return HostSniff::TooLarge,
        Err(e) => return HostSniff::Malformed(HttpError::Syntax(e.to_string())),
    };
    let mut host_hdr = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            if host_hdr.is_some() {
                return HostSniff::Malformed(HttpError::DuplicateHost);
            }
            host_hdr = Some(h.value);
        }
    }
    // RFC 9112 §3.2.2: an absolute-form target's authority wins over Host.
    let from_target = req.path.and_then(absolute_form_authority);
    let authority = match (from_target, host_hdr) {
        (Some(a), _) => Some(a.as_bytes()),
        (None, Some(h)) => Some(h),
        (None, None) if req.version == Some(0) => None,
        (None, None) => return HostSniff::Malformed(HttpError::MissingHost),
    };
    let host = match authority.map(trim_ows) {
        None | Some([]) => None,
        Some(a) => match normalize_authority(a) {
            Some(h) => Some(h),
            None => return HostSniff::Malformed(HttpError::BadHost),
        },
    };
    HostSniff::Found { host, head_len }
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |p| p + 1);
    &v[start..end]
}

fn absolute_form_authority(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Drop userinfo, never used for routing.
    Some(authority.rsplit_once('@').map_or(authority, |(_, h)| h))
}

/// `host[:port]` or `[v6]:port` → normalized host, or `None` if invalid.
pub fn normalize_authority(a: &[u8]) -> Option<String> {
    if let Some(rest) = a.strip_prefix(b"[") {
        let close = rest.iter().position(|b| *b == b']')?;
        let (lit, after) = (&rest[..close], &rest[close + 1..]);
        check_port(after)?;
        let addr: Ipv6Addr = std::str::from_utf8(lit).ok()?.parse().ok()?;
        return Some(addr.to_string());
    }
    let (host, port) = match a.iter().rposition(|b| *b == b':') {
        Some(p) => (&a[..p], &a[p..]),
        None => (a, &a[a.len()..]),
    };
    check_port(port)?;
    crate::normalize_dns_name(host)
}

/// Accepts "" or ":" followed by 1..=5 digits <= 65535.
fn check_port(p: &[u8]) -> Option<()> {
    if p.is_empty() {
        return Some(());
    }
    let digits = p.strip_prefix(b":")?;
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (n <= 65535).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(req: &str) -> HostSniff {
        sniff_host(req.as_bytes(), DEFAULT_MAX_HEAD)
    }

    fn found(h: &str, req: &str) -> HostSniff {
        HostSniff::Found {
            host: Some(h.to_owned()),
            head_len: req.len(),
        }
    }

    #[test]
    fn host_forms() {
        let r = "GET / HTTP/1.1\r\nHost: Shop.Example.COM.:8080\r\n\r\n";
        assert_eq!(host(r), found("shop.example.com", r));
        let r = "GET / HTTP/1.1\r\nhost:   [::1]:80 \r\n\r\n";
        assert_eq!(host(r), found("::1", r));
        let r = "GET http://Abs.Example/x HTTP/1.1\r\nHost: other\r\n\r\n";
        assert_eq!(host(r), found("abs.example", r));
        let r = "GET / HTTP/1.0\r\n\r\n";
        assert_eq!(
            host(r),
            HostSniff::Found {
                host: None,
                head_len: r.len()
            }
        );
    }

    #[test]
    fn errors() {
        for (head, error) in [
            ("GET / HTTP/1.1\r\n\r\n", HttpError::MissingHost),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                HttpError::DuplicateHost,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n",
                HttpError::BadHost,
            ),
            ("GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n", HttpError::BadHost),
        ] {
            assert_eq!(host(head), HostSniff::Malformed(error), "{head:?}");
        }
        assert!(matches!(host("\x16\x03\x01"), HostSniff::Malformed(_)));
        assert!(matches!(
            host("GE T / HTTP/1.1\r\nHost: a\r\n\r\n"),
            HostSniff::Malformed(_)
        ));
    }

    /// Fuzz finding (bench/fuzz, http_host): a head whose method starts with a lowercase letter
    /// was rejected as malformed while incomplete, yet routed when it arrived in one segment.
    /// The early verdict must be the one the complete head gets, however it is segmented.
    #[test]
    fn early_verdict_matches_the_complete_head() {
        let crash: &[u8] =
            b"xGET / HTTP/1.1\r\nHo#t: [::<</ HTTP/1.1\r\nHost:\t\r\n&ost: [:Tser:&]7\
            \xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff:*\r\n\r\n080Accept: ";
        let whole = sniff_host(crash, DEFAULT_MAX_HEAD);
        assert!(
            matches!(
                whole,
                HostSniff::Found {
                    host: None,
                    head_len: 82
                }
            ),
            "{whole:?}"
        );
        for req in [
            &b"get / HTTP/1.1\r\nHost: a.example\r\n\r\n"[..],
            b"\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
            crash,
        ] {
            let whole = sniff_host(req, DEFAULT_MAX_HEAD);
            assert_ne!(whole, HostSniff::NeedMore);
            for end in 0..req.len() {
                let mut s = HostSniffer::default();
                let early = s.feed(&req[..end]);
                if early == HostSniff::NeedMore {
                    continue;
                }
                assert!(
                    matches!(
                        (&early, &whole),
                        (HostSniff::Malformed(_), HostSniff::Malformed(_))
                    ) || early == whole,
                    "prefix {end}: {early:?} vs {whole:?}"
                );
            }
        }
        // Still rejected at the first byte: a TLS record, a space, a control byte.
        for first in [0x16u8, b' ', 0] {
            assert!(matches!(
                sniff_host(&[first], DEFAULT_MAX_HEAD),
                HostSniff::Malformed(_)
            ));
        }
    }

    #[test]
    fn too_large_and_incremental() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "y".repeat(200)
        );
        assert_eq!(sniff_host(big.as_bytes(), 100), HostSniff::TooLarge);
        assert_eq!(sniff_host(&big.as_bytes()[..150], 100), HostSniff::TooLarge);
        let mut s = HostSniffer::default();
        for end in 0..big.len() {
            assert_eq!(s.feed(&big.as_bytes()[..end]), HostSniff::NeedMore, "{end}");
        }
        assert_eq!(s.feed(big.as_bytes()), found("a", &big));
    }
}
