//! The consent hello on the wire: which peering (the subnets each side declared, as the receiver
//! sees them), when (Unix ms, growing), and an HMAC-SHA256 under the peering's `consent_key`
//! over every byte before it. Version 1 carries the IPv4 pair; version 2 appends the IPv6 pair
//! of a dual-stack peering. A hello is sent in the oldest version that carries it, so an
//! IPv4-only peering says exactly what the release before said (N-1 reads it unchanged).
//!
//! ```text
//! version 1, 64 bytes (an IPv4-only peering):
//!  0      4    5    6              14             22         27         32                 64
//!  | KWPH | v1 | op | unix time ms | random nonce | from/len  | to/len    | HMAC-SHA256 (32) |
//!
//! version 2, 98 bytes (a dual-stack peering): version 1's first 32 bytes, then
//!  32                 49                 66                 98
//!  | from6 (16)/len   | to6 (16)/len     | HMAC-SHA256 (32) |
//! ```

use hmac::{Hmac, Mac};
use ipnet::{Ipv4Net, Ipv6Net};
use sha2::Sha256;
use std::net::{Ipv4Addr, Ipv6Addr};

const MAGIC: &[u8; 4] = b"KWPH";
/// The MAC-covered head every version starts with (magic to the IPv4 pair).
const HEAD: usize = 32;
const TAG: usize = 32;
/// The hello versions this build reads (byte 4): 1 (IPv4) and 2 (dual stack). A later layout
/// adds its version here and keeps reading the previous one, so gateways a release apart keep
/// their consent during a rolling upgrade (see [`crate::wire`]).
pub const VERSIONS: std::ops::RangeInclusive<u8> = 1..=2;

/// A hello's length in `version`.
fn len(version: u8) -> usize {
    if version >= 2 {
        HEAD + 2 * 17 + TAG
    } else {
        HEAD + TAG
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Hello = 1,
    Withdraw = 2,
}

/// The IPv6 subnets of a dual-stack peering, in the same roles as [`Message::from`] and
/// [`Message::to`] (no aliases: IPv6 is routed as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nets6 {
    pub from: Ipv6Net,
    pub to: Ipv6Net,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub op: Op,
    pub time_ms: u64,
    pub nonce: u64,
    /// The sender's private subnet as the receiver sees it (the sender's `local_alias`, if any).
    pub from: Ipv4Net,
    /// The subnet the sender peers with, as the sender sees it (ours or our alias, if it
    /// mirrors us).
    pub to: Ipv4Net,
    /// A dual-stack peering's IPv6 subnets (version 2); None: an IPv4-only peering.
    pub v6: Option<Nets6>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("not a kawaii peering hello")]
    NotHello,
    #[error("malformed hello")]
    Malformed,
    #[error("bad authentication code")]
    BadMac,
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().into()
}

impl Message {
    /// The version this hello is sent in: the oldest that carries it.
    pub fn version(&self) -> u8 {
        if self.v6.is_some() { 2 } else { 1 }
    }

    pub fn encode(&self, key: &[u8]) -> Vec<u8> {
        let version = self.version();
        let mut b = Vec::with_capacity(len(version));
        b.extend_from_slice(MAGIC);
        b.push(version);
        b.push(self.op as u8);
        b.extend_from_slice(&self.time_ms.to_be_bytes());
        b.extend_from_slice(&self.nonce.to_be_bytes());
        for n in [self.from, self.to] {
            b.extend_from_slice(&n.addr().octets());
            b.push(n.prefix_len());
        }
        if let Some(v6) = self.v6 {
            for n in [v6.from, v6.to] {
                b.extend_from_slice(&n.addr().octets());
                b.push(n.prefix_len());
            }
        }
        let m = mac(key, &b);
        b.extend_from_slice(&m);
        b
    }

    /// Parses the unauthenticated header (to find the peering), without trusting it.
    pub fn peek(b: &[u8]) -> Result<Message, ConsentError> {
        if b.len() < 5 || &b[..4] != MAGIC {
            return Err(ConsentError::NotHello);
        }
        let version = b[4];
        if !VERSIONS.contains(&version) || b.len() != len(version) {
            return Err(ConsentError::Malformed);
        }
        let op = match b[5] {
            1 => Op::Hello,
            2 => Op::Withdraw,
            _ => return Err(ConsentError::Malformed),
        };
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let net = |i: usize| {
            let ip = Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
            Ipv4Net::new(ip, b[i + 4]).map_err(|_| ConsentError::Malformed)
        };
        let net6 = |i: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[i..i + 16]);
            Ipv6Net::new(Ipv6Addr::from(a), b[i + 16]).map_err(|_| ConsentError::Malformed)
        };
        let v6 = if version >= 2 {
            Some(Nets6 {
                from: net6(HEAD)?,
                to: net6(HEAD + 17)?,
            })
        } else {
            None
        };
        Ok(Message {
            op,
            time_ms: u64_at(6),
            nonce: u64_at(14),
            from: net(22)?,
            to: net(27)?,
            v6,
        })
    }

    /// Parses and checks the authentication code under `key`.
    pub fn decode(b: &[u8], key: &[u8]) -> Result<Message, ConsentError> {
        let m = Message::peek(b)?;
        let (body, tag) = b.split_at(b.len() - TAG);
        let want = mac(key, body);
        // Constant time is not critical for a MAC check on a one-shot datagram, but cheap.
        let diff = want.iter().zip(tag).fold(0u8, |acc, (a, c)| acc | (a ^ c));
        if diff != 0 {
            return Err(ConsentError::BadMac);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("net")
    }

    fn net6(s: &str) -> Ipv6Net {
        s.parse().expect("net")
    }

    fn hello(v6: Option<Nets6>) -> Message {
        Message {
            op: Op::Hello,
            time_ms: 42,
            nonce: 7,
            from: net("10.2.0.0/24"),
            to: net("10.1.0.0/24"),
            v6,
        }
    }

    fn dual() -> Option<Nets6> {
        Some(Nets6 {
            from: net6("2001:db8:2::/64"),
            to: net6("2001:db8:1::/64"),
        })
    }

    #[test]
    fn both_versions_round_trip_and_every_prefix_fails() {
        for (m, version, length) in [(hello(None), 1, 64), (hello(dual()), 2, 98)] {
            let b = m.encode(b"k");
            assert_eq!((b[4], b.len()), (version, length));
            assert_eq!(Message::decode(&b, b"k"), Ok(m.clone()));
            assert_eq!(Message::decode(&b, b"other"), Err(ConsentError::BadMac));
            for n in 0..b.len() {
                assert!(
                    Message::decode(&b[..n], b"k").is_err(),
                    "v{version} prefix {n}"
                );
            }
            // The tag covers the IPv6 pair too.
            let mut forged = b.clone();
            forged[40] ^= 1;
            assert!(Message::decode(&forged, b"k").is_err());
        }
    }

    /// Version 1 is byte for byte what the release before sent (its layout by hand), so an
    /// IPv4-only peering keeps its consent across a rolling upgrade either way.
    #[test]
    fn version_1_is_the_previous_layout_byte_for_byte() {
        let mut old = Vec::new();
        old.extend_from_slice(b"KWPH");
        old.extend_from_slice(&[1, 1]);
        old.extend_from_slice(&42u64.to_be_bytes());
        old.extend_from_slice(&7u64.to_be_bytes());
        old.extend_from_slice(&[10, 2, 0, 0, 24, 10, 1, 0, 0, 24]);
        let tag = mac(b"k", &old);
        old.extend_from_slice(&tag);
        assert_eq!(hello(None).encode(b"k"), old);
        assert_eq!(Message::decode(&old, b"k"), Ok(hello(None)));
    }

    /// Version 2's layout, by hand: the IPv6 pair after the IPv4 one, address then length.
    #[test]
    fn version_2_appends_the_ipv6_pair() {
        let b = hello(dual()).encode(b"k");
        let mut from6 = net6("2001:db8:2::/64").addr().octets().to_vec();
        from6.push(64);
        assert_eq!(&b[32..49], from6.as_slice());
        assert_eq!(b[65], 64);
        let v1 = hello(None).encode(b"k");
        assert_eq!(b[4], 2);
        assert_eq!(
            (&b[..4], &b[5..32]),
            (&v1[..4], &v1[5..32]),
            "the head is version 1's"
        );
    }

    #[test]
    fn wrong_lengths_versions_and_prefixes_are_malformed() {
        let mut b = hello(dual()).encode(b"k");
        b[4] = 1; // a version 1 header on a version 2 body
        assert_eq!(Message::peek(&b), Err(ConsentError::Malformed));
        let mut b = hello(None).encode(b"k");
        b[4] = 3;
        assert_eq!(Message::peek(&b), Err(ConsentError::Malformed));
        let mut b = hello(dual()).encode(b"k");
        b[48] = 129; // an IPv6 prefix length past 128
        assert_eq!(Message::peek(&b), Err(ConsentError::Malformed));
        assert_eq!(Message::peek(b"nope"), Err(ConsentError::NotHello));
    }
}
