//! Router advertisements and solicitations (RFC 4861 §4.1, §4.2, §4.6), sans-I/O: what the
//! holder of a zone's link-local VIP sends on the private link so that hosts take their default
//! route (and, with SLAAC, their addresses) from it. A withdrawal is the same advertisement with
//! router lifetime 0 (RFC 4861 §6.2.5). Unsolicited neighbour advertisements (§4.4, §7.2.6)
//! tell the link that a VIP moved to a new holder, as gratuitous ARP does for IPv4. The ICMPv6
//! checksum covers the IPv6 pseudo-header (RFC 4443 §2.3); raw ICMPv6 sockets fill it in,
//! `encode_checked` does it here.

use crate::error::{DecodeError, EncodeError};
use std::net::Ipv6Addr;

/// ICMPv6 type of a router solicitation.
pub const ROUTER_SOLICIT: u8 = 133;
/// ICMPv6 type of a router advertisement.
pub const ROUTER_ADVERT: u8 = 134;
/// ICMPv6 type of a neighbour advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;
const OPT_TARGET_LL: u8 = 2;
/// All-nodes multicast: where unsolicited advertisements go (RFC 4861 §6.2.4).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All-routers multicast: where hosts solicit.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// Neighbour discovery is only believed with hop limit 255 (RFC 4861 §6.1.2).
pub const HOP_LIMIT: u8 = 255;

const OPT_SOURCE_LL: u8 = 1;
const OPT_PREFIX: u8 = 3;
const OPT_MTU: u8 = 5;
const HEADER: usize = 16;

/// A prefix information option (RFC 4861 §4.6.2).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |    Length     | Prefix Length |L|A| Reserved1 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Valid Lifetime                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Preferred Lifetime                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                           Reserved2                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            Prefix (128 bits)                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: hosts may form addresses in it (SLAAC, needs a /64).
    pub autonomous: bool,
    /// Seconds; `u32::MAX` is infinity.
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
}

/// Default router preference (RFC 4191 §2.2), the `Prf` bits of a router advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preference {
    Low,
    #[default]
    Medium,
    High,
}

impl Preference {
    fn bits(self) -> u8 {
        match self {
            Preference::High => 0b01,
            Preference::Medium => 0b00,
            Preference::Low => 0b11,
        }
    }

    /// RFC 4191 §2.2: the reserved value 10 is treated as medium.
    fn from_bits(b: u8) -> Preference {
        match b & 0b11 {
            0b01 => Preference::High,
            0b11 => Preference::Low,
            _ => Preference::Medium,
        }
    }
}

/// A router advertisement (RFC 4861 §4.2, with RFC 4191's preference).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |     Code      |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Cur Hop Limit |M|O|H|Prf|Resvd|       Router Lifetime         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Reachable Time                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                          Retrans Timer                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Options ...
/// +-+-+-+-+-+-+-+-+-+-+-+-
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterAdvert {
    /// Hop limit hosts should use (0: unspecified).
    pub cur_hop_limit: u8,
    pub managed: bool,
    pub other_config: bool,
    /// Which default router hosts prefer (RFC 4191).
    pub preference: Preference,
    /// Seconds this router is a default router; 0: it is not (a withdrawal).
    pub router_lifetime: u16,
    /// Milliseconds; 0: unspecified.
    pub reachable_time: u32,
    pub retrans_timer: u32,
    /// The sender's link-layer address (the option is left out when None).
    pub source_link_layer: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub prefixes: Vec<PrefixInfo>,
}

impl RouterAdvert {
    /// The message with a zero checksum (a raw ICMPv6 socket computes it on send).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(HEADER + 8 + 8 + 32 * self.prefixes.len());
        out.extend_from_slice(&[ROUTER_ADVERT, 0, 0, 0, self.cur_hop_limit]);
        out.push(
            u8::from(self.managed) << 7
                | u8::from(self.other_config) << 6
                | self.preference.bits() << 3,
        );
        out.extend_from_slice(&self.router_lifetime.to_be_bytes());
        out.extend_from_slice(&self.reachable_time.to_be_bytes());
        out.extend_from_slice(&self.retrans_timer.to_be_bytes());
        if let Some(mac) = self.source_link_layer {
            out.extend_from_slice(&[OPT_SOURCE_LL, 1]);
            out.extend_from_slice(&mac);
        }
        if let Some(mtu) = self.mtu {
            out.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
            out.extend_from_slice(&mtu.to_be_bytes());
        }
        for p in &self.prefixes {
            if p.prefix_len > 128 {
                return Err(EncodeError::PrefixLength(p.prefix_len));
            }
            let flags = u8::from(p.on_link) << 7 | u8::from(p.autonomous) << 6;
            out.extend_from_slice(&[OPT_PREFIX, 4, p.prefix_len, flags]);
            out.extend_from_slice(&p.valid_lifetime.to_be_bytes());
            out.extend_from_slice(&p.preferred_lifetime.to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&p.prefix.octets());
        }
        Ok(out)
    }

    /// The message with its checksum for `src` -> `dst`.
    pub fn encode_checked(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Result<Vec<u8>, EncodeError> {
        let mut out = self.encode()?;
        let sum = icmpv6_checksum(&out, src, dst);
        out[2..4].copy_from_slice(&sum.to_be_bytes());
        Ok(out)
    }

    /// Parses an ICMPv6 router advertisement (checksum not checked: see [`Self::decode_checked`]).
    /// Unknown options are skipped (RFC 4861 §4.6); a zero-length option is an error.
    pub fn decode(bytes: &[u8]) -> Result<RouterAdvert, DecodeError> {
        fixed_part(bytes, ROUTER_ADVERT, HEADER)?;
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let mut ra = RouterAdvert {
            cur_hop_limit: bytes[4],
            managed: bytes[5] & 0x80 != 0,
            other_config: bytes[5] & 0x40 != 0,
            preference: Preference::from_bits(bytes[5] >> 3),
            router_lifetime: u16::from_be_bytes([bytes[6], bytes[7]]),
            reachable_time: be32(&bytes[8..12]),
            retrans_timer: be32(&bytes[12..16]),
            ..RouterAdvert::default()
        };
        for (kind, body) in options(&bytes[HEADER..])? {
            match kind {
                OPT_SOURCE_LL if body.len() >= 6 => {
                    let mut mac = [0; 6];
                    mac.copy_from_slice(&body[..6]);
                    ra.source_link_layer = Some(mac);
                }
                OPT_MTU => ra.mtu = Some(be32(&body[2..6])),
                OPT_PREFIX => {
                    // RFC 4861 §4.6.2: the option's length is 4 (32 bytes).
                    if body.len() != 30 {
                        return Err(DecodeError::Ndp(
                            "prefix information option is not 32 bytes",
                        ));
                    }
                    if body[0] > 128 {
                        return Err(DecodeError::Ndp("prefix length over 128"));
                    }
                    let mut prefix = [0; 16];
                    prefix.copy_from_slice(&body[14..30]);
                    ra.prefixes.push(PrefixInfo {
                        prefix: Ipv6Addr::from(prefix),
                        prefix_len: body[0],
                        on_link: body[1] & 0x80 != 0,
                        autonomous: body[1] & 0x40 != 0,
                        valid_lifetime: be32(&body[2..6]),
                        preferred_lifetime: be32(&body[6..10]),
                    });
                }
                _ => {}
            }
        }
        Ok(ra)
    }

    /// [`Self::decode`], then the checksum over the pseudo-header of `src` -> `dst`.
    pub fn decode_checked(
        bytes: &[u8],
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<RouterAdvert, DecodeError> {
        let ra = Self::decode(bytes)?;
        let computed = icmpv6_checksum(bytes, src, dst);
        let got = u16::from_be_bytes([bytes[2], bytes[3]]);
        if computed != got {
            return Err(DecodeError::Checksum { got, computed });
        }
        Ok(ra)
    }
}

/// A neighbour advertisement (RFC 4861 §4.4); unsolicited on a takeover: `solicited` false,
/// `override_` true, sent to all-nodes (§7.2.6).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |     Code      |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |R|S|O|                     Reserved                            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Target Address (128 bits)               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Options ...
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvert {
    /// R: the sender is a router.
    pub router: bool,
    /// S: an answer to a solicitation (never in an unsolicited one).
    pub solicited: bool,
    /// O: replace the cached link-layer address.
    pub override_: bool,
    pub target: Ipv6Addr,
    /// The target's link-layer address (the new holder's).
    pub target_link_layer: Option<[u8; 6]>,
}

impl NeighborAdvert {
    /// The unsolicited advertisement of a VIP `target` now at `mac`.
    pub fn takeover(target: Ipv6Addr, mac: Option<[u8; 6]>, router: bool) -> NeighborAdvert {
        NeighborAdvert {
            router,
            solicited: false,
            override_: true,
            target,
            target_link_layer: mac,
        }
    }

    /// The message with a zero checksum (a raw ICMPv6 socket computes it on send).
    pub fn encode(&self) -> Vec<u8> {
        let flags = u8::from(self.router) << 7
            | u8::from(self.solicited) << 6
            | u8::from(self.override_) << 5;
        let mut out = vec![NEIGHBOR_ADVERT, 0, 0, 0, flags, 0, 0, 0];
        out.extend_from_slice(&self.target.octets());
        if let Some(mac) = self.target_link_layer {
            out.extend_from_slice(&[OPT_TARGET_LL, 1]);
            out.extend_from_slice(&mac);
        }
        out
    }

    /// The message with its checksum for `src` -> `dst`.
    pub fn encode_checked(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut out = self.encode();
        let sum = icmpv6_checksum(&out, src, dst);
        out[2..4].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Parses a neighbour advertisement (checksum not checked); unknown options are skipped.
    pub fn decode(bytes: &[u8]) -> Result<NeighborAdvert, DecodeError> {
        const FIXED: usize = 24;
        fixed_part(bytes, NEIGHBOR_ADVERT, FIXED)?;
        let mut target = [0; 16];
        target.copy_from_slice(&bytes[8..FIXED]);
        let target = Ipv6Addr::from(target);
        // RFC 4861 §7.1.2: the target is not multicast.
        if target.is_multicast() {
            return Err(DecodeError::Ndp("target address is multicast"));
        }
        let mut na = NeighborAdvert {
            router: bytes[4] & 0x80 != 0,
            solicited: bytes[4] & 0x40 != 0,
            override_: bytes[4] & 0x20 != 0,
            target,
            target_link_layer: None,
        };
        for (kind, body) in options(&bytes[FIXED..])? {
            if kind == OPT_TARGET_LL && body.len() >= 6 {
                let mut mac = [0; 6];
                mac.copy_from_slice(&body[..6]);
                na.target_link_layer = Some(mac);
            }
        }
        Ok(na)
    }
}

/// Checks an ND message's fixed part: at least `len` bytes, ICMPv6 type `kind`, code 0.
fn fixed_part(bytes: &[u8], kind: u8, len: usize) -> Result<(), DecodeError> {
    if bytes.len() < len {
        return Err(DecodeError::Incomplete {
            needed: len,
            got: bytes.len(),
        });
    }
    if bytes[0] != kind {
        return Err(DecodeError::Icmpv6Type(bytes[0]));
    }
    if bytes[1] != 0 {
        return Err(DecodeError::Ndp("ICMPv6 code is not 0"));
    }
    Ok(())
}

/// Whether `bytes` is a router solicitation (RFC 4861 §4.1: type 133, code 0, 8 bytes or more,
/// well-formed options): what a host sends to have an advertisement at once.
pub fn is_router_solicit(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0] == ROUTER_SOLICIT && bytes[1] == 0 && options(&bytes[8..]).is_ok()
}

/// The options of an ND message as (type, body after the type and length bytes); every
/// option's length (in 8-byte units) must be non-zero and fit (RFC 4861 §4.6).
fn options(mut rest: &[u8]) -> Result<Vec<(u8, &[u8])>, DecodeError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(DecodeError::Incomplete {
                needed: 2,
                got: rest.len(),
            });
        }
        let len = usize::from(rest[1]) * 8;
        if len == 0 {
            return Err(DecodeError::Ndp("option of length 0"));
        }
        if rest.len() < len {
            return Err(DecodeError::Incomplete {
                needed: len,
                got: rest.len(),
            });
        }
        if rest[0] == OPT_MTU && len != 8 {
            return Err(DecodeError::Ndp("MTU option is not 8 bytes"));
        }
        out.push((rest[0], &rest[2..len]));
        rest = &rest[len..];
    }
    Ok(out)
}

/// The ICMPv6 checksum of `message` (its checksum field counted as zero) from `src` to `dst`:
/// the one's complement sum over the pseudo-header (RFC 8200 §8.1) and the message.
pub fn icmpv6_checksum(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let hi = u32::from(c[0]) << 8;
            sum += hi | c.get(1).copied().map_or(0, u32::from);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    add(&len.to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(&message[..message.len().min(2)]);
    if message.len() > 4 {
        add(&message[4..]);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    fn slaac() -> RouterAdvert {
        RouterAdvert {
            cur_hop_limit: 64,
            router_lifetime: 1800,
            source_link_layer: Some([0x00, 0x00, 0x5e, 0x00, 0x02, 0x33]),
            prefixes: vec![PrefixInfo {
                prefix: "2001:db8:1::".parse().expect("prefix"),
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
            }],
            ..RouterAdvert::default()
        }
    }

    /// The same advertisement written out by hand from RFC 4861 §4.2 and §4.6, checksum
    /// computed independently (sum of 16-bit words of pseudo-header and message).
    const SLAAC_BYTES: [u8; 56] = [
        0x86, 0x00, 0x00, 0x00, // type 134, code 0, checksum (filled below)
        0x40, 0x00, 0x07, 0x08, // hop limit 64, flags 0, lifetime 1800
        0, 0, 0, 0, 0, 0, 0, 0, // reachable time, retrans timer
        0x01, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x02, 0x33, // source link-layer address
        0x03, 0x04, 0x40, 0xc0, // prefix information: /64, L and A
        0x00, 0x01, 0x51, 0x80, // valid 86400
        0x00, 0x00, 0x38, 0x40, // preferred 14400
        0, 0, 0, 0, // reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// One's complement sum, written the plain way, to check [`icmpv6_checksum`] against.
    fn reference_checksum(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        let mut words: Vec<u16> = Vec::new();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        let mut m = message.to_vec();
        m[2] = 0;
        m[3] = 0;
        bytes.extend_from_slice(&m);
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        for w in bytes.chunks(2) {
            words.push(u16::from_be_bytes([w[0], w[1]]));
        }
        let mut sum: u64 = words.iter().map(|&w| u64::from(w)).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn encodes_the_handwritten_bytes() {
        let bytes = slaac().encode().expect("encode");
        assert_eq!(bytes, SLAAC_BYTES);
        let checked = slaac().encode_checked(LL, ALL_NODES).expect("encode");
        let sum = reference_checksum(&SLAAC_BYTES, LL, ALL_NODES);
        assert_eq!(&checked[2..4], &sum.to_be_bytes());
        assert_eq!(&checked[4..], &SLAAC_BYTES[4..]);
    }

    #[test]
    fn decodes_what_it_encodes_and_checks_the_checksum() {
        let bytes = slaac().encode_checked(LL, ALL_NODES).expect("encode");
        assert_eq!(
            RouterAdvert::decode_checked(&bytes, LL, ALL_NODES),
            Ok(slaac())
        );
        let mut bad = bytes.clone();
        bad[7] ^= 1;
        assert!(matches!(
            RouterAdvert::decode_checked(&bad, LL, ALL_NODES),
            Err(DecodeError::Checksum { .. })
        ));
        // From another source, the same bytes do not check.
        assert!(
            RouterAdvert::decode_checked(&bytes, "fe80::2".parse().expect("ip"), ALL_NODES)
                .is_err()
        );
    }

    #[test]
    fn preference_is_in_the_flags_byte() {
        for (p, byte) in [
            (Preference::High, 0x08),
            (Preference::Medium, 0x00),
            (Preference::Low, 0x18),
        ] {
            let ra = RouterAdvert {
                preference: p,
                ..slaac()
            };
            let bytes = ra.encode().expect("encode");
            assert_eq!(bytes[5], byte);
            assert_eq!(RouterAdvert::decode(&bytes).expect("decode").preference, p);
        }
        // The reserved value (10) reads as medium.
        let mut bytes = slaac().encode().expect("encode");
        bytes[5] = 0x10;
        assert_eq!(
            RouterAdvert::decode(&bytes).expect("decode").preference,
            Preference::Medium
        );
    }

    #[test]
    fn a_withdrawal_has_router_lifetime_zero() {
        let w = RouterAdvert {
            router_lifetime: 0,
            ..slaac()
        };
        let bytes = w.encode().expect("encode");
        assert_eq!(&bytes[6..8], &[0, 0]);
        assert_eq!(
            RouterAdvert::decode(&bytes)
                .expect("decode")
                .router_lifetime,
            0
        );
    }

    /// An advertisement as radvd sends it (MTU, prefix without A, unknown RDNSS option 25).
    #[test]
    fn skips_unknown_options_and_reads_mtu() {
        let mut bytes = vec![0x86, 0, 0, 0, 64, 0x40, 0x00, 0x1e, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
        bytes.extend_from_slice(&[25, 3, 0, 0, 0, 0, 0x0e, 0x10]);
        bytes.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 53).octets());
        let ra = RouterAdvert::decode(&bytes).expect("decode");
        assert_eq!(ra.mtu, Some(1500));
        assert!(ra.other_config && !ra.managed);
        assert_eq!(ra.router_lifetime, 30);
        assert!(ra.prefixes.is_empty());
        assert_eq!(ra.encode().expect("encode")[..24], bytes[..24]);
    }

    #[test]
    fn every_truncated_prefix_is_refused_without_panic() {
        let bytes = slaac().encode().expect("encode");
        for n in 0..bytes.len() {
            let r = RouterAdvert::decode(&bytes[..n]);
            // A cut at an option boundary is a shorter, valid advertisement.
            if n == HEADER || n == HEADER + 8 {
                assert!(r.is_ok(), "{n}");
            } else {
                assert!(r.is_err(), "{n}: {r:?}");
            }
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let good = slaac().encode().expect("encode");
        let mut zero_len = good.clone();
        zero_len[HEADER + 1] = 0;
        assert_eq!(
            RouterAdvert::decode(&zero_len),
            Err(DecodeError::Ndp("option of length 0"))
        );
        let mut other = good.clone();
        other[0] = ROUTER_SOLICIT;
        assert_eq!(
            RouterAdvert::decode(&other),
            Err(DecodeError::Icmpv6Type(133))
        );
        let mut long_prefix = good;
        long_prefix[HEADER + 8 + 2] = 129;
        assert!(RouterAdvert::decode(&long_prefix).is_err());
    }

    /// An unsolicited neighbour advertisement for fe80::1 at 00:00:5e:00:02:33, by hand
    /// (RFC 4861 §4.4): R and O set, S clear, the target link-layer address option.
    const NA_BYTES: [u8; 32] = [
        0x88, 0x00, 0x00, 0x00, // type 136, code 0, checksum
        0xa0, 0x00, 0x00, 0x00, // R, O
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // target fe80::1
        0x02, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x02, 0x33, // target link-layer address
    ];

    #[test]
    fn neighbour_advertisements_encode_and_decode() {
        let mac = [0x00, 0x00, 0x5e, 0x00, 0x02, 0x33];
        let na = NeighborAdvert::takeover(LL, Some(mac), true);
        assert_eq!(na.encode(), NA_BYTES);
        let checked = na.encode_checked(LL, ALL_NODES);
        assert_eq!(
            &checked[2..4],
            &reference_checksum(&NA_BYTES, LL, ALL_NODES).to_be_bytes()
        );
        assert_eq!(NeighborAdvert::decode(&checked), Ok(na));
        for n in 0..NA_BYTES.len() {
            let r = NeighborAdvert::decode(&NA_BYTES[..n]);
            assert_eq!(r.is_ok(), n == 24, "{n}: {r:?}");
        }
        let mut multicast = NA_BYTES;
        multicast[8] = 0xff;
        assert!(NeighborAdvert::decode(&multicast).is_err());
        assert!(NeighborAdvert::decode(&SLAAC_BYTES).is_err());
    }

    #[test]
    fn router_solicitations_are_recognised() {
        // RS with a source link-layer address option, as Linux sends it.
        let rs = [133, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 1];
        assert!(is_router_solicit(&rs));
        assert!(is_router_solicit(&rs[..8]));
        assert!(!is_router_solicit(&rs[..7]));
        assert!(!is_router_solicit(&rs[..10]));
        assert!(!is_router_solicit(&slaac().encode().expect("encode")));
    }
}
