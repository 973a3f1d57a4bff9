//! VRRPv3 over IPv6 (RFC 5798 §5.1.2): adverts go from the sender's link-local address to
//! ff02::12 (or a unicast peer) with next header 112 and hop limit 255, and carry the virtual
//! router's IPv6 addresses, its link-local address first (§5.2.9). The message itself and its
//! checksum are [`crate::packet`]'s (the pseudo-header follows the family of the addresses).
//!
//! A Linux raw IPv6 socket hands over the payload only; the source comes with `recvfrom` and the
//! destination and hop limit with ancillary data (`IPV6_PKTINFO`, `IPV6_HOPLIMIT`):
//! [`decode_payload`] takes them as arguments. [`parse_ipv6`] and [`decode_datagram6`] read a
//! whole datagram (captures, packet sockets).

use std::net::{IpAddr, Ipv6Addr};

use crate::error::DecodeError;
use crate::packet::{Advert, IP_PROTOCOL, Received};

/// IPv6 multicast group of VRRP adverts (RFC 5798 §5.1.2.2).
pub const MULTICAST_GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The hop limit every advert is sent with and must be received with (RFC 5798 §5.1.2.3, §7.1).
pub const HOP_LIMIT: u8 = 255;

/// Whether `a` is an IPv6 link-local unicast address (fe80::/10).
pub const fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// RFC 5798 §7.1 receive checks on a VRRP message carried over IPv6, given the header fields the
/// socket reported: complete message, version 3, type 1, IPv6 addresses, checksum over the IPv6
/// pseudo-header of `src` -> `dst`. Multicast adverts (to ff02::12) must come from a link-local
/// source (§5.1.2.1); unicast adverts may come from a peer's global address. The hop limit is
/// returned, not checked (apply [`crate::check_ttl`]); the VRID and owner checks belong to the
/// virtual router.
pub fn decode_payload(
    payload: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
) -> Result<Received, DecodeError> {
    if dst == MULTICAST_GROUP6 && !is_link_local(&src) {
        return Err(DecodeError::Source(src));
    }
    let advert = Advert::decode_checked(payload, src, dst)?;
    Ok(Received {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        ttl: hop_limit,
        advert,
    })
}

/// The IPv6 header fields a VRRP receiver needs, and the payload they frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Datagram<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub next_header: u8,
    pub payload: &'a [u8],
}

/// Splits an IPv6 datagram (fixed 40-byte header, payload length in network byte order). Bytes
/// past the payload length are ignored; a shorter buffer is an error.
pub fn parse_ipv6(bytes: &[u8]) -> Result<Ipv6Datagram<'_>, DecodeError> {
    const HEADER: usize = 40;
    let Some(h) = bytes.first_chunk::<HEADER>() else {
        return Err(DecodeError::Incomplete {
            needed: HEADER,
            got: bytes.len(),
        });
    };
    if h[0] >> 4 != 6 {
        return Err(DecodeError::Ipv6("version is not 6"));
    }
    let total = HEADER + usize::from(u16::from_be_bytes([h[4], h[5]]));
    if bytes.len() < total {
        return Err(DecodeError::Incomplete {
            needed: total,
            got: bytes.len(),
        });
    }
    let address = |at: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&h[at..at + 16]);
        Ipv6Addr::from(o)
    };
    Ok(Ipv6Datagram {
        src: address(8),
        dst: address(24),
        hop_limit: h[7],
        next_header: h[6],
        payload: &bytes[HEADER..total],
    })
}

/// [`decode_payload`] on a whole IPv6 datagram whose next header is VRRP (112). Extension
/// headers are not followed: VRRP adverts carry none.
pub fn decode_datagram6(bytes: &[u8]) -> Result<Received, DecodeError> {
    let d = parse_ipv6(bytes)?;
    if d.next_header != IP_PROTOCOL {
        return Err(DecodeError::Protocol(d.next_header));
    }
    decode_payload(d.payload, d.src, d.dst, d.hop_limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EncodeError;
    use crate::packet::{AdvertInterval, PRIORITY_RESIGN, checksum};
    use crate::{check_ttl, decode_datagram};

    const LL_VIP: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const GLOBAL_VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    /// keepalived's source in the captures: the EUI-64 link-local address of 02:00:00:00:00:0a.
    const KEEPALIVED: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0x0a);
    const HAND_SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

    /// Built by hand from RFC 5798 §5.1.2/§5.2: 0x31 = version 3 type 1, VRID 1, priority 100
    /// (0x64), 1 address, interval 5 cs, checksum, fe80::1. Sent from fe80::2 to ff02::12.
    const HAND: [u8; 24] = [
        0x31, 0x01, 0x64, 0x01, 0x00, 0x05, 0x6e, 0x56, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 1,
    ];

    fn hand_advert() -> Advert {
        Advert {
            vrid: 1,
            priority: 100,
            max_advert_int: AdvertInterval::from_centis(5).expect("5 cs is in range"),
            addresses: vec![LL_VIP.into()],
        }
    }

    fn keepalived_advert(priority: u8) -> Advert {
        Advert {
            vrid: 61,
            priority,
            max_advert_int: AdvertInterval::from_centis(10).expect("10 cs is in range"),
            addresses: vec![LL_VIP.into(), GLOBAL_VIP.into()],
        }
    }

    #[test]
    fn hand_checksum_over_the_ipv6_pseudo_header() {
        // RFC 8200 §8.1 pseudo-header: source, destination, upper-layer length (24), three zero
        // bytes and next header 112; then the message with its checksum field as zero. Only the
        // non-zero 16-bit words are listed.
        let words: [u32; 11] = [
            0xfe80, 0x0002, // fe80::2
            0xff02, 0x0012, // ff02::12
            0x0018, 0x0070, // length 24, next header 112
            0x3101, 0x6401, 0x0005, // version/type, VRID, priority, count, interval
            0xfe80, 0x0001, // fe80::1
        ];
        let sum: u32 = words.iter().sum();
        assert_eq!(sum, 0x391a6);
        let folded = (sum & 0xffff) + (sum >> 16);
        assert_eq!(!(folded as u16), 0x6e56);
        assert_eq!(checksum(&HAND, HAND_SRC, MULTICAST_GROUP6), 0x6e56);
    }

    #[test]
    fn hand_vector_round_trips() {
        let bytes = hand_advert()
            .encode(HAND_SRC, MULTICAST_GROUP6)
            .expect("encodable");
        assert_eq!(bytes, HAND);
        let r = decode_payload(&HAND, HAND_SRC, MULTICAST_GROUP6, HOP_LIMIT).expect("valid");
        assert_eq!(r.advert, hand_advert());
        assert_eq!(hand_advert().wire_len(), 24);
    }

    #[test]
    fn keepalived_ipv6_capture() {
        let ip = include_bytes!("../testdata/keepalived-v3-ip6.bin");
        let d = parse_ipv6(ip).expect("IPv6 datagram");
        assert_eq!((d.src, d.dst), (KEEPALIVED, MULTICAST_GROUP6));
        assert_eq!((d.next_header, d.hop_limit), (IP_PROTOCOL, HOP_LIMIT));
        let r = decode_datagram6(ip).expect("keepalived advert");
        assert_eq!(check_ttl(r.ttl), Ok(()));
        assert_eq!(r.advert, keepalived_advert(150));
        assert_eq!(
            r.advert
                .encode(KEEPALIVED, MULTICAST_GROUP6)
                .expect("encodable"),
            d.payload,
            "re-encoding reproduces keepalived's bytes"
        );
    }

    #[test]
    fn keepalived_ipv6_resign_capture() {
        let ip = include_bytes!("../testdata/keepalived-v3-ip6-prio0.bin");
        let r = decode_datagram6(ip).expect("keepalived advert");
        assert_eq!(r.advert, keepalived_advert(PRIORITY_RESIGN));
        let d = parse_ipv6(ip).expect("IPv6 datagram");
        assert_eq!(r.advert.encode(d.src, d.dst).expect("encodable"), d.payload);
    }

    #[test]
    fn the_checksum_covers_the_ipv6_addresses() {
        let ip = include_bytes!("../testdata/keepalived-v3-ip6.bin");
        let d = parse_ipv6(ip).expect("IPv6 datagram");
        let other = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9);
        assert!(matches!(
            decode_payload(d.payload, other, d.dst, 255),
            Err(DecodeError::Checksum { got: 0x0f41, .. })
        ));
        let peer = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x22);
        assert!(decode_payload(d.payload, d.src, peer, 255).is_err());
        // Unicast to a peer: another checksum, and a global source is fine then.
        let global = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x21);
        let unicast = keepalived_advert(150)
            .encode(global, peer)
            .expect("encodable");
        let r = decode_payload(&unicast, global, peer, 255).expect("unicast advert");
        assert_eq!(r.src, IpAddr::V6(global));
    }

    #[test]
    fn receive_checks_of_rfc_5798_for_ipv6() {
        let ip = include_bytes!("../testdata/keepalived-v3-ip6.bin");
        // Hop limit below 255: routed, so the caller drops it.
        let mut routed = ip.to_vec();
        routed[7] = 254;
        let r = decode_datagram6(&routed).expect("hop limit is the caller's check");
        assert_eq!(check_ttl(r.ttl), Err(DecodeError::Ttl(254)));
        // Not VRRP.
        let mut udp = ip.to_vec();
        udp[6] = 17;
        assert_eq!(decode_datagram6(&udp), Err(DecodeError::Protocol(17)));
        // A multicast advert from a global address (the checksum matches: only the source check
        // can reject it).
        let global = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x21);
        let bytes = keepalived_advert(150)
            .encode(global, MULTICAST_GROUP6)
            .expect("encodable");
        assert_eq!(
            decode_payload(&bytes, global, MULTICAST_GROUP6, 255),
            Err(DecodeError::Source(global))
        );
        // IPv4-sized addresses in an IPv6 packet: the length gives it away.
        let v4 = include_bytes!("../testdata/keepalived-v3.bin");
        assert!(decode_payload(&v4[8..], KEEPALIVED, MULTICAST_GROUP6, 255).is_err());
        // Not IPv6 at all; and an IPv6 datagram is not IPv4.
        let mut v4ver = ip.to_vec();
        v4ver[0] = 0x45;
        assert!(matches!(
            decode_datagram6(&v4ver),
            Err(DecodeError::Ipv6(_))
        ));
        assert!(matches!(decode_datagram(ip), Err(DecodeError::Ipv4(_))));
        let mut padded = ip.to_vec();
        padded.extend_from_slice(&[0; 4]);
        assert!(
            decode_datagram6(&padded).is_ok(),
            "bytes past the payload length ignored"
        );
    }

    #[test]
    fn every_truncated_or_corrupted_datagram_is_handled() {
        let ip = include_bytes!("../testdata/keepalived-v3-ip6.bin");
        for n in 0..ip.len() {
            assert!(decode_datagram6(&ip[..n]).is_err(), "prefix {n}");
        }
        for i in 0..ip.len() {
            for value in [0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xf0, 0xff] {
                let mut bytes = ip.to_vec();
                bytes[i] = value;
                let _ = decode_datagram6(&bytes);
                let _ = Advert::decode6(&bytes[40..]);
            }
        }
    }

    #[test]
    fn encode_keeps_to_one_family() {
        let v4 = std::net::Ipv4Addr::new(192, 0, 2, 1);
        let mixed = Advert {
            addresses: vec![LL_VIP.into(), v4.into()],
            ..hand_advert()
        };
        assert_eq!(
            mixed.encode(HAND_SRC, MULTICAST_GROUP6),
            Err(EncodeError::Family(v4.into()))
        );
        assert_eq!(
            hand_advert().encode(v4, crate::packet::MULTICAST_GROUP),
            Err(EncodeError::Family(LL_VIP.into()))
        );
        let full = Advert {
            addresses: vec![LL_VIP.into(); 255],
            ..hand_advert()
        };
        let bytes = full.encode(HAND_SRC, MULTICAST_GROUP6).expect("255 fit");
        assert_eq!(bytes.len(), 8 + 16 * 255);
        assert_eq!(
            Advert::decode_checked(&bytes, HAND_SRC, MULTICAST_GROUP6).expect("round trip"),
            full
        );
    }
}
