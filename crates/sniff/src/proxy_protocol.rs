//! PROXY protocol v1 (text) and v2 (binary) headers, as specified by HAProxy's
//! `proxy-protocol.txt` (version 2.x of the document).
//!
//! Contract: [`decode`] takes the bytes received so far and returns the header and its length,
//! [`ProxyError::Incomplete`] while more bytes are needed, [`ProxyError::NotProxy`] as soon as the
//! bytes cannot start a header, or another error. [`encode_v1`] and [`encode_v2`] produce headers
//! towards backends. A v2 CRC32C TLV, when present, is verified.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v1 headers are at most 107 bytes, CRLF included (spec §2.1).
pub const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const TLV_CRC32C: u8 = 0x03;

/// Version 1 (human-readable) header:
///
/// ```text
/// "PROXY" SP ( "TCP4" | "TCP6" ) SP src_addr SP dst_addr SP src_port SP dst_port CRLF
/// "PROXY" SP "UNKNOWN" [ SP <anything> ] CRLF            (at most 107 bytes in all)
/// ```
///
/// Version 2 (binary) header:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          signature  \r\n\r\n\0\r\nQUIT\n  (12 bytes)          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |ver=2 |  cmd  | fam   | proto |        len (address + TLVs)    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | addresses: TCP4/UDP4 12 bytes (src 4, dst 4, sport 2, dport 2) |
/// |            TCP6/UDP6 36 bytes (src 16, dst 16, sport, dport)   |
/// |            UNIX     216 bytes (src 108, dst 108)               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | TLVs: type (1) | length (2) | value ...   repeated to `len`    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    pub command: Command,
    pub addresses: Addresses,
    /// v2 TLVs in wire order (the CRC32C TLV included when it was present).
    pub tlvs: Vec<Tlv>,
}

/// v2 command (low nibble of byte 13). v1 headers are always `Proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Health check or connection of the proxy itself: use the real connection endpoints.
    Local,
    Proxy,
}

/// Transport protocol (low nibble of byte 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stream,
    Datagram,
}

/// Addresses carried by the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    /// `UNKNOWN` (v1) or `AF_UNSPEC` (v2): the receiver uses the real connection endpoints.
    Unspec,
    Inet {
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// AF_UNIX paths, NUL padding removed.
    Unix {
        transport: Transport,
        source: Vec<u8>,
        destination: Vec<u8>,
    },
}

impl Addresses {
    /// The client address, when the header carries an IP one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Self::Inet { source, .. } => Some(*source),
            _ => None,
        }
    }
    /// The address the client connected to, when the header carries an IP one.
    pub fn destination(&self) -> Option<SocketAddr> {
        match self {
            Self::Inet { destination, .. } => Some(*destination),
            _ => None,
        }
    }
}

/// One v2 type-length-value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// Why a PROXY header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("incomplete PROXY header")]
    Incomplete,
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 header longer than 107 bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1(&'static str),
    #[error("unsupported PROXY v2 version/command byte {0:#04x}")]
    V2VersionCommand(u8),
    #[error("unsupported PROXY v2 family/protocol byte {0:#04x}")]
    V2Family(u8),
    #[error("PROXY v2 address block shorter than its family needs")]
    V2ShortAddresses,
    #[error("malformed PROXY v2 TLV")]
    V2Tlv,
    #[error("PROXY v2 CRC32C mismatch")]
    V2Checksum,
    #[error("cannot encode: {0}")]
    Encode(&'static str),
}

/// Decodes a v1 or v2 header at the start of `buf`; returns it and its length in bytes.
pub fn decode(buf: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    let sig_len = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig_len] == V2_SIGNATURE[..sig_len] && !buf.is_empty() {
        return decode_v2(buf);
    }
    let p_len = buf.len().min(V1_PREFIX.len());
    if buf[..p_len] == V1_PREFIX[..p_len] && !buf.is_empty() {
        return decode_v1(buf);
    }
    if buf.is_empty() {
        return Err(ProxyError::Incomplete);
    }
    Err(ProxyError::NotProxy)
}

fn decode_v1(buf: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|b| *b == b'\n') else {
        return Err(if buf.len() >= V1_MAX {
            ProxyError::V1TooLong
        } else {
            ProxyError::Incomplete
        });
    };
    let line = window[..lf]
        .strip_suffix(b"\r")
        .ok_or(ProxyError::V1("missing CR"))?;
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::V1("not ASCII"))?;
    let mut parts = line.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(ProxyError::NotProxy);
    }
    let family = parts.next().ok_or(ProxyError::V1("family"))?;
    let addresses = match family {
        "UNKNOWN" => Addresses::Unspec,
        "TCP4" | "TCP6" => {
            let mut field = |what| parts.next().ok_or(ProxyError::V1(what));
            let (sa, da, sp, dp) = (
                field("source")?,
                field("dest")?,
                field("sport")?,
                field("dport")?,
            );
            if parts.next().is_some() {
                return Err(ProxyError::V1("trailing fields"));
            }
            let (src, dst): (IpAddr, IpAddr) = if family == "TCP4" {
                let s: Ipv4Addr = sa.parse().map_err(|_| ProxyError::V1("source"))?;
                let d: Ipv4Addr = da.parse().map_err(|_| ProxyError::V1("dest"))?;
                (s.into(), d.into())
            } else {
                let s: Ipv6Addr = sa.parse().map_err(|_| ProxyError::V1("source"))?;
                let d: Ipv6Addr = da.parse().map_err(|_| ProxyError::V1("dest"))?;
                (s.into(), d.into())
            };
            Addresses::Inet {
                transport: Transport::Stream,
                source: SocketAddr::new(src, v1_port(sp)?),
                destination: SocketAddr::new(dst, v1_port(dp)?),
            }
        }
        _ => return Err(ProxyError::V1("family")),
    };
    let header = ProxyHeader {
        version: 1,
        command: Command::Proxy,
        addresses,
        tlvs: Vec::new(),
    };
    Ok((header, lf + 1))
}

fn v1_port(s: &str) -> Result<u16, ProxyError> {
    let ok = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = ok && !(s.len() > 1 && s.starts_with('0'));
    if !ok {
        return Err(ProxyError::V1("port"));
    }
    s.parse().map_err(|_| ProxyError::V1("port"))
}

fn decode_v2(buf: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    let Some(fixed) = buf.get(..16) else {
        return Err(ProxyError::Incomplete);
    };
    let ver_cmd = fixed[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2VersionCommand(ver_cmd));
    }
    let command = match ver_cmd & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        _ => return Err(ProxyError::V2VersionCommand(ver_cmd)),
    };
    let fam = fixed[13];
    let transport = match fam & 0x0f {
        0 => None,
        1 => Some(Transport::Stream),
        2 => Some(Transport::Datagram),
        _ => return Err(ProxyError::V2Family(fam)),
    };
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let total = 16 + len;
    let Some(body) = buf.get(16..total) else {
        return Err(ProxyError::Incomplete);
    };
    let (addresses, addr_len) = match (fam >> 4, transport) {
        (0, _) => (Addresses::Unspec, 0),
        (1, Some(t)) => inet(body, 4, t, |b| {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        })?,
        (2, Some(t)) => inet(body, 16, t, |b| {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            IpAddr::V6(Ipv6Addr::from(a))
        })?,
        (3, Some(t)) => {
            let a = body.get(..216).ok_or(ProxyError::V2ShortAddresses)?;
            let path = |p: &[u8]| p[..p.iter().position(|b| *b == 0).unwrap_or(p.len())].to_vec();
            let addrs = Addresses::Unix {
                transport: t,
                source: path(&a[..108]),
                destination: path(&a[108..]),
            };
            (addrs, 216)
        }
        _ => return Err(ProxyError::V2Family(fam)),
    };
    let mut tlvs = Vec::new();
    let mut rest = &body[addr_len..];
    let mut crc_at = None;
    while !rest.is_empty() {
        let h = rest.get(..3).ok_or(ProxyError::V2Tlv)?;
        let vlen = usize::from(u16::from_be_bytes([h[1], h[2]]));
        let value = rest.get(3..3 + vlen).ok_or(ProxyError::V2Tlv)?;
        if h[0] == TLV_CRC32C {
            if vlen != 4 || crc_at.is_some() {
                return Err(ProxyError::V2Tlv);
            }
            crc_at = Some(total - rest.len() + 3);
        }
        tlvs.push(Tlv {
            kind: h[0],
            value: value.to_vec(),
        });
        rest = &rest[3 + vlen..];
    }
    if let Some(at) = crc_at {
        let mut copy = buf[..total].to_vec();
        let want = u32::from_be_bytes([copy[at], copy[at + 1], copy[at + 2], copy[at + 3]]);
        copy[at..at + 4].fill(0);
        if crc32c(&copy) != want {
            return Err(ProxyError::V2Checksum);
        }
    }
    Ok((
        ProxyHeader {
            version: 2,
            command,
            addresses,
            tlvs,
        },
        total,
    ))
}

/// Encodes a v1 header (`PROXY TCP4|TCP6 ...` or `PROXY UNKNOWN`).
pub fn encode_v1(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let line = match addresses {
        Some((SocketAddr::V4(s), SocketAddr::V4(d))) => {
            format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
        }
        Some((s, d)) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            format!(
                "PROXY TCP6 {} {} {} {}\r\n",
                v6(s),
                v6(d),
                s.port(),
                d.port()
            )
        }
        None => "PROXY UNKNOWN\r\n".to_owned(),
    };
    line.into_bytes()
}

/// Encodes a v2 header. Inet addresses of mixed families are sent as IPv6 (v4-mapped).
/// A CRC32C TLV in `tlvs` is recomputed.
pub fn encode_v2(header: &ProxyHeader) -> Result<Vec<u8>, ProxyError> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(match header.command {
        Command::Local => 0x20,
        Command::Proxy => 0x21,
    });
    let proto = |t: &Transport| match t {
        Transport::Stream => 1u8,
        Transport::Datagram => 2u8,
    };
    let mut body = Vec::new();
    match &header.addresses {
        Addresses::Unspec => out.push(0x00),
        Addresses::Inet {
            transport,
            source,
            destination,
        } => match (source, destination) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                out.push(0x10 | proto(transport));
                body.extend_from_slice(&s.ip().octets());
                body.extend_from_slice(&d.ip().octets());
                body.extend_from_slice(&s.port().to_be_bytes());
                body.extend_from_slice(&d.port().to_be_bytes());
            }
            (s, d) => {
                out.push(0x20 | proto(transport));
                let v6 = |a: &SocketAddr| match a.ip() {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                    IpAddr::V6(v6) => v6.octets(),
                };
                body.extend_from_slice(&v6(s));
                body.extend_from_slice(&v6(d));
                body.extend_from_slice(&s.port().to_be_bytes());
                body.extend_from_slice(&d.port().to_be_bytes());
            }
        },
        Addresses::Unix {
            transport,
            source,
            destination,
        } => {
            if source.len() > 108 || destination.len() > 108 {
                return Err(ProxyError::Encode("unix path longer than 108 bytes"));
            }
            out.push(0x30 | proto(transport));
            for p in [source, destination] {
                let mut block = [0u8; 108];
                block[..p.len()].copy_from_slice(p);
                body.extend_from_slice(&block);
            }
        }
    }
    let mut crc_at = None;
    for tlv in &header.tlvs {
        let len = u16::try_from(tlv.value.len()).map_err(|_| ProxyError::Encode("TLV too long"))?;
        body.push(tlv.kind);
        body.extend_from_slice(&len.to_be_bytes());
        if tlv.kind == TLV_CRC32C {
            if tlv.value.len() != 4 {
                return Err(ProxyError::Encode("CRC32C TLV must be 4 bytes"));
            }
            crc_at = Some(16 + body.len());
            body.extend_from_slice(&[0; 4]);
        } else {
            body.extend_from_slice(&tlv.value);
        }
    }
    let len = u16::try_from(body.len()).map_err(|_| ProxyError::Encode("header too long"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    if let Some(at) = crc_at {
        let crc = crc32c(&out).to_be_bytes();
        out[at..at + 4].copy_from_slice(&crc);
    }
    Ok(out)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise: headers are tiny.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An INET or INET6 address block (§2.2): source and destination addresses of `n` bytes each,
/// then source and destination ports; and its length.
fn inet(
    body: &[u8],
    n: usize,
    transport: Transport,
    ip: impl Fn(&[u8]) -> IpAddr,
) -> Result<(Addresses, usize), ProxyError> {
    let len = 2 * n + 4;
    let a = body.get(..len).ok_or(ProxyError::V2ShortAddresses)?;
    let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
    let addrs = Addresses::Inet {
        transport,
        source: SocketAddr::new(ip(&a[..n]), port(2 * n)),
        destination: SocketAddr::new(ip(&a[n..2 * n]), port(2 * n + 2)),
    };
    Ok((addrs, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn v1_forms() {
        let (h, n) = decode(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nxyz").expect("unknown");
        assert_eq!((h.addresses, n), (Addresses::Unspec, 35));
        let (h, _) = decode(b"PROXY TCP6 ::1 ::2 1 65535\r\n").expect("tcp6");
        assert_eq!(h.addresses.source(), Some("[::1]:1".parse().expect("addr")));
        assert_eq!(
            decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
            Err(ProxyError::V1("port"))
        );
        assert_eq!(
            decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            Err(ProxyError::V1("missing CR"))
        );
        assert_eq!(decode(b"PROX"), Err(ProxyError::Incomplete));
        assert_eq!(decode(b"GET /"), Err(ProxyError::NotProxy));
        assert_eq!(decode(&[b'x'; 10]), Err(ProxyError::NotProxy));
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(200, b'a');
        assert_eq!(decode(&long), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v2_roundtrip_with_crc() {
        let h = ProxyHeader {
            version: 2,
            command: Command::Proxy,
            addresses: Addresses::Inet {
                transport: Transport::Stream,
                source: "[2001:db8::1]:443".parse().expect("addr"),
                destination: "127.0.0.1:80".parse().expect("addr"),
            },
            tlvs: vec![
                Tlv {
                    kind: 0x03,
                    value: vec![0; 4],
                },
                Tlv {
                    kind: 0xE0,
                    value: b"x".to_vec(),
                },
            ],
        };
        let wire = encode_v2(&h).expect("encode");
        let (back, n) = decode(&wire).expect("decode");
        assert_eq!(n, wire.len());
        assert_eq!(back.addresses.source(), h.addresses.source());
        let mut bad = wire.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode(&bad), Err(ProxyError::V2Checksum));
    }
}
