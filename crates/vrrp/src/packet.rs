//! VRRPv3 advertisement codec (RFC 5798 §5): `Advert::decode`/`decode6`/`encode`, the checksum
//! over the IPv4 or IPv6 pseudo-header (§5.2.8), and the receive checks of §7.1 that need the
//! IPv4 header (`decode_datagram`, `check_ttl`); the IPv6 ones are in [`crate::packet6`].
//! Decoding never panics, whatever the input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::Serialize;

use crate::error::{DecodeError, EncodeError};

/// IPv4 protocol number of VRRP (RFC 5798 §5.1.1.4).
pub const IP_PROTOCOL: u8 = 112;
/// IPv4 multicast group of VRRP adverts (RFC 5798 §5.1.1.2).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The TTL every advert is sent with and must be received with (RFC 5798 §5.1.1.3, §7.1).
pub const TTL: u8 = 255;
/// VRRP version (RFC 5798 §5.2.1).
pub const VERSION: u8 = 3;
/// The only VRRP packet type, ADVERTISEMENT (RFC 5798 §5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Length of the fixed fields, before the addresses.
pub const HEADER_LEN: usize = 8;
/// Priority of the router that owns the virtual addresses (RFC 5798 §5.2.4).
pub const PRIORITY_OWNER: u8 = 255;
/// Priority of a master that resigns (RFC 5798 §5.2.4).
pub const PRIORITY_RESIGN: u8 = 0;

const CHECKSUM_OFFSET: usize = 6;
const INTERVAL_MASK: u16 = 0x0fff;

/// An advertisement interval in centiseconds, 1 to 4095 (12 bits on the wire, RFC 5798 §5.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AdvertInterval(u16);

impl AdvertInterval {
    /// Largest interval the 12-bit field can carry: 40.95 s.
    pub const MAX_CENTIS: u16 = 4095;
    /// RFC 5798 §5.2.7 default: 1 s.
    pub const DEFAULT: Self = Self(100);

    /// `None` unless `1 <= centis <= 4095`.
    pub const fn from_centis(centis: u16) -> Option<Self> {
        if centis >= 1 && centis <= Self::MAX_CENTIS {
            Some(Self(centis))
        } else {
            None
        }
    }

    /// Whole centiseconds of `duration` (rounded down); `None` outside 10 ms to 40.95 s.
    pub fn from_duration(duration: Duration) -> Option<Self> {
        let centis = duration.as_millis() / 10;
        u16::try_from(centis).ok().and_then(Self::from_centis)
    }

    pub const fn centis(self) -> u16 {
        self.0
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64 * 10)
    }
}

impl Default for AdvertInterval {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A VRRPv3 ADVERTISEMENT (RFC 5798 §5.1, §5.2). Version (3) and type (1) are implied.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    IPv4 Fields or IPv6 Fields                 |
/// ...                                                           ...
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |(rsvd) |     Max Adver Int     |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                       IPvX Address(es)                        |
/// +                                                               +
/// +                                                               +
/// +                                                               +
/// +                                                               +
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Version = 3, Type = 1, rsvd = 0 on transmit and ignored on receipt, Max Adver Int in
/// centiseconds, Count IPvX Addr >= 1. Every address is of the family the advert travels in:
/// IPv4 (4 bytes each) or IPv6 (16 bytes each, the virtual router's link-local address first,
/// RFC 5798 §5.2.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Virtual Rtr ID, 1 to 255.
    pub vrid: u8,
    /// 255 = address owner, 1..=254 = backup priority, 0 = master resigns.
    pub priority: u8,
    pub max_advert_int: AdvertInterval,
    pub addresses: Vec<IpAddr>,
}

/// Wire length of one address of `a`'s family.
const fn address_len(a: &IpAddr) -> usize {
    match a {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

impl Advert {
    /// Wire length of this advert: `8 + 4 * addresses` (IPv4) or `8 + 16 * addresses` (IPv6).
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.addresses.iter().map(address_len).sum::<usize>()
    }

    /// Parses the VRRP message of an IPv4 datagram and checks what the message alone can prove:
    /// version, type, VRID, address count, exact length, non-zero interval. The checksum needs
    /// the IPv4 addresses: use [`Advert::decode_checked`] or [`decode_datagram`] on receive.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_family(bytes, 4)
    }

    /// [`Advert::decode`] for the VRRP message of an IPv6 datagram (16-byte addresses). The
    /// checksum needs the IPv6 addresses: use [`Advert::decode_checked`] or
    /// [`crate::packet6::decode_payload`] on receive.
    pub fn decode6(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_family(bytes, 16)
    }

    fn decode_family(bytes: &[u8], width: usize) -> Result<Self, DecodeError> {
        let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::Incomplete {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        };
        let version = header[0] >> 4;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let kind = header[0] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(DecodeError::Type(kind));
        }
        let vrid = header[1];
        if vrid == 0 {
            return Err(DecodeError::Vrid);
        }
        let priority = header[2];
        let count = usize::from(header[3]);
        if count == 0 {
            return Err(DecodeError::NoAddresses);
        }
        let expected = HEADER_LEN + width * count;
        if bytes.len() < expected {
            return Err(DecodeError::Incomplete {
                needed: expected,
                got: bytes.len(),
            });
        }
        if bytes.len() > expected {
            return Err(DecodeError::LengthMismatch {
                expected,
                got: bytes.len(),
            });
        }
        let centis = u16::from_be_bytes([header[4], header[5]]) & INTERVAL_MASK;
        let max_advert_int =
            AdvertInterval::from_centis(centis).ok_or(DecodeError::ZeroInterval)?;
        let addresses = bytes[HEADER_LEN..]
            .chunks_exact(width)
            .map(|a| match <[u8; 16]>::try_from(a) {
                Ok(v6) => IpAddr::V6(Ipv6Addr::from(v6)),
                Err(_) => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            })
            .collect();
        Ok(Self {
            vrid,
            priority,
            max_advert_int,
            addresses,
        })
    }

    /// [`Advert::decode`] or [`Advert::decode6`] (by the family of `src`), then the checksum
    /// over the pseudo-header of `src` -> `dst`.
    pub fn decode_checked(
        bytes: &[u8],
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
    ) -> Result<Self, DecodeError> {
        let (src, dst) = (src.into(), dst.into());
        let advert = match src {
            IpAddr::V4(_) => Self::decode(bytes)?,
            IpAddr::V6(_) => Self::decode6(bytes)?,
        };
        verify_checksum(bytes, src, dst)?;
        Ok(advert)
    }

    /// The VRRP message (the IP payload) to send from `src` to `dst` (the multicast group or a
    /// unicast peer), checksum included. `src`, `dst` and every address are of one family.
    pub fn encode(
        &self,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
    ) -> Result<Vec<u8>, EncodeError> {
        let (src, dst) = (src.into(), dst.into());
        if self.vrid == 0 {
            return Err(EncodeError::Vrid);
        }
        if let Some(other) = std::iter::once(&dst)
            .chain(&self.addresses)
            .find(|a| a.is_ipv4() != src.is_ipv4())
        {
            return Err(EncodeError::Family(*other));
        }
        let count = u8::try_from(self.addresses.len())
            .ok()
            .filter(|&c| c > 0)
            .ok_or(EncodeError::AddressCount(self.addresses.len()))?;
        let mut out = Vec::with_capacity(self.wire_len());
        out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count);
        out.extend_from_slice(&(self.max_advert_int.centis() & INTERVAL_MASK).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for address in &self.addresses {
            match address {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        let sum = checksum(&out, src, dst);
        out[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].copy_from_slice(&sum.to_be_bytes());
        Ok(out)
    }
}

/// The checksum field value for `message` sent from `src` to `dst` (RFC 5798 §5.2.8): the one's
/// complement of the one's complement sum of the pseudo-header and the message, its checksum
/// field counted as zero. The pseudo-header is IPv4's (source, destination, zero, protocol 112,
/// VRRP length; RFC 768 style) or IPv6's (source, destination, 32-bit upper-layer length, zero,
/// next header 112; RFC 8200 §8.1) by the family of `src`.
pub fn checksum(message: &[u8], src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> u16 {
    let mut sum = pseudo_header_sum(message.len(), src.into(), dst.into());
    for (i, pair) in message.chunks(2).enumerate() {
        if i * 2 == CHECKSUM_OFFSET {
            continue;
        }
        sum += u32::from(word(pair));
    }
    !fold(sum)
}

/// Checks the checksum of a received message: the sum over pseudo-header and message, checksum
/// field included, must be all ones.
pub fn verify_checksum(
    message: &[u8],
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
) -> Result<(), DecodeError> {
    let (src, dst) = (src.into(), dst.into());
    let mut sum = pseudo_header_sum(message.len(), src, dst);
    for pair in message.chunks(2) {
        sum += u32::from(word(pair));
    }
    if fold(sum) == 0xffff {
        return Ok(());
    }
    let got = match message.get(CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2) {
        Some(field) => u16::from_be_bytes([field[0], field[1]]),
        None => 0,
    };
    Err(DecodeError::Checksum {
        got,
        computed: checksum(message, src, dst),
    })
}

fn pseudo_header_sum(len: usize, src: IpAddr, dst: IpAddr) -> u32 {
    let octets = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    // A VRRP message is at most 8 + 16 * 255 bytes, but a hostile length must not overflow
    // either. Both pseudo-headers sum to the same thing for the length and the protocol: IPv4
    // has them as two 16-bit words, IPv6 as a 32-bit length and a zero-padded next header.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let mut sum = u32::from(IP_PROTOCOL) + (len >> 16) + (len & 0xffff);
    for pair in octets(src).chunks(2).chain(octets(dst).chunks(2)) {
        sum += u32::from(word(pair));
    }
    sum
}

fn word(pair: &[u8]) -> u16 {
    match pair {
        [hi, lo] => u16::from_be_bytes([*hi, *lo]),
        [hi] => u16::from_be_bytes([*hi, 0]),
        _ => 0,
    }
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves sum <= 0xffff.
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// RFC 5798 §7.1: an advert received over IPv4 must have TTL 255, which proves it was not
/// routed. Skip it only for unicast peers reached through a router, and then accept adverts from
/// the configured peers only.
pub fn check_ttl(ttl: u8) -> Result<(), DecodeError> {
    if ttl == TTL {
        Ok(())
    } else {
        Err(DecodeError::Ttl(ttl))
    }
}

/// The IPv4 header fields a VRRP receiver needs, and the payload they frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Datagram<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    pub payload: &'a [u8],
}

/// Splits an IPv4 datagram as a Linux raw socket returns it (header included, total length in
/// network byte order). Rejects anything but an unfragmented IPv4 packet that fits in `bytes`.
/// The header checksum is the kernel's business and is not checked.
pub fn parse_ipv4(bytes: &[u8]) -> Result<Ipv4Datagram<'_>, DecodeError> {
    const MIN: usize = 20;
    let Some(h) = bytes.first_chunk::<MIN>() else {
        return Err(DecodeError::Incomplete {
            needed: MIN,
            got: bytes.len(),
        });
    };
    if h[0] >> 4 != 4 {
        return Err(DecodeError::Ipv4("version is not 4"));
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    if header_len < MIN {
        return Err(DecodeError::Ipv4("header length below 20 bytes"));
    }
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total_len < header_len {
        return Err(DecodeError::Ipv4("total length below header length"));
    }
    if bytes.len() < total_len {
        return Err(DecodeError::Incomplete {
            needed: total_len,
            got: bytes.len(),
        });
    }
    let fragment = u16::from_be_bytes([h[6], h[7]]);
    if fragment & 0x3fff != 0 {
        return Err(DecodeError::Ipv4("fragmented"));
    }
    Ok(Ipv4Datagram {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        ttl: h[8],
        protocol: h[9],
        payload: &bytes[header_len..total_len],
    })
}

/// An advert received in an IPv4 or IPv6 datagram, with the header fields the state machine and
/// the TTL (hop limit) policy need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit. Not checked here: apply [`check_ttl`] (both must be 255)
    /// unless the peer is a routed unicast peer.
    pub ttl: u8,
    pub advert: Advert,
}

/// RFC 5798 §7.1 receive checks on a raw IPv4 datagram: protocol 112, complete message, version
/// 3, type 1, checksum. The TTL is returned, not checked; the VRID and owner checks belong to the
/// virtual router ([`crate::VirtualRouter`] applies them).
pub fn decode_datagram(bytes: &[u8]) -> Result<Received, DecodeError> {
    let datagram = parse_ipv4(bytes)?;
    if datagram.protocol != IP_PROTOCOL {
        return Err(DecodeError::Protocol(datagram.protocol));
    }
    let advert = Advert::decode_checked(datagram.payload, datagram.src, datagram.dst)?;
    Ok(Received {
        src: datagram.src.into(),
        dst: datagram.dst.into(),
        ttl: datagram.ttl,
        advert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const VIP1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
    const VIP2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);

    /// `testdata/keepalived-*.bin` layout: source (4 bytes), destination (4 bytes), VRRP message.
    fn split_capture(bytes: &[u8]) -> (Ipv4Addr, Ipv4Addr, &[u8]) {
        let (addrs, message) = bytes.split_at(8);
        (
            Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]),
            Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]),
            message,
        )
    }

    fn master_advert() -> Advert {
        Advert {
            vrid: 51,
            priority: 150,
            max_advert_int: AdvertInterval::from_centis(10).expect("10 cs is in range"),
            addresses: vec![VIP1.into(), VIP2.into()],
        }
    }

    /// Built by hand from RFC 5798 §5.1/§5.2: 0x31 = version 3 type 1, VRID 51 (0x33), priority
    /// 150 (0x96), 2 addresses, interval 10 cs (0x000a), checksum, 192.0.2.100, 192.0.2.101.
    ///
    /// The checksum (0x1161) is worked out word by word in `hand_checksum`.
    const HAND: [u8; 16] = [
        0x31, 0x33, 0x96, 0x02, 0x00, 0x0a, 0x11, 0x61, 192, 0, 2, 100, 192, 0, 2, 101,
    ];

    #[test]
    fn hand_checksum() {
        let words: [u32; 14] = [
            0xc000, 0x0201, 0xe000, 0x0012, 0x0070,
            0x0010, // pseudo-header: src, dst, 0 + 112, length 16
            0x3133, 0x9602, 0x000a, 0x0000, 0xc000, 0x0264, 0xc000,
            0x0265, // checksum field as 0
        ];
        let sum: u32 = words.iter().sum();
        assert_eq!(sum, 0x3ee9b);
        let folded = (sum & 0xffff) + (sum >> 16);
        assert_eq!(folded, 0xee9e);
        assert_eq!(!(folded as u16), 0x1161);
        assert_eq!(checksum(&HAND, SRC, MULTICAST_GROUP), 0x1161);
    }

    #[test]
    fn decode_hand_vector() {
        let advert = Advert::decode_checked(&HAND, SRC, MULTICAST_GROUP).expect("valid vector");
        assert_eq!(advert, master_advert());
    }

    #[test]
    fn encode_hand_vector() {
        let bytes = master_advert()
            .encode(SRC, MULTICAST_GROUP)
            .expect("encodable");
        assert_eq!(bytes, HAND);
    }

    #[test]
    fn keepalived_master_capture() {
        let capture = include_bytes!("../testdata/keepalived-v3.bin");
        let (src, dst, message) = split_capture(capture);
        assert_eq!((src, dst), (SRC, MULTICAST_GROUP));
        let advert = Advert::decode_checked(message, src, dst).expect("keepalived advert");
        assert_eq!(advert, master_advert());
        let again = advert.encode(src, dst).expect("encodable");
        assert_eq!(again, message, "re-encoding reproduces keepalived's bytes");
    }

    #[test]
    fn keepalived_resign_capture() {
        let capture = include_bytes!("../testdata/keepalived-v3-prio0.bin");
        let (src, dst, message) = split_capture(capture);
        let advert = Advert::decode_checked(message, src, dst).expect("keepalived advert");
        assert_eq!(advert.priority, PRIORITY_RESIGN);
        assert_eq!(advert.addresses, vec![VIP1, VIP2]);
        assert_eq!(advert.encode(src, dst).expect("encodable"), message);
    }

    #[test]
    fn keepalived_backup_capture() {
        let capture = include_bytes!("../testdata/keepalived-v3-backup.bin");
        let (src, dst, message) = split_capture(capture);
        assert_eq!(src, Ipv4Addr::new(192, 0, 2, 2));
        let advert = Advert::decode_checked(message, src, dst).expect("keepalived advert");
        assert_eq!(advert.priority, 100);
        assert_eq!(advert.max_advert_int.centis(), 10);
    }

    #[test]
    fn keepalived_datagram() {
        let capture = include_bytes!("../testdata/keepalived-v3-ip.bin");
        let received = decode_datagram(capture).expect("keepalived datagram");
        assert_eq!(received.src, SRC);
        assert_eq!(received.dst, MULTICAST_GROUP);
        assert_eq!(check_ttl(received.ttl), Ok(()));
        assert_eq!(received.advert, master_advert());
    }

    #[test]
    fn checksum_covers_the_pseudo_header() {
        let capture = include_bytes!("../testdata/keepalived-v3.bin");
        let (src, dst, message) = split_capture(capture);
        let other = Ipv4Addr::new(192, 0, 2, 9);
        assert!(matches!(
            Advert::decode_checked(message, other, dst),
            Err(DecodeError::Checksum { got: 0x1161, .. })
        ));
        assert!(Advert::decode_checked(message, src, other).is_err());
        // Unicast adverts carry the peer as destination; their checksum differs.
        let unicast = master_advert().encode(src, other).expect("encodable");
        assert_ne!(unicast[6..8], message[6..8]);
        assert!(Advert::decode_checked(&unicast, src, other).is_ok());
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        let vrrp = include_bytes!("../testdata/keepalived-v3.bin");
        let (src, dst, message) = split_capture(vrrp);
        for n in 0..message.len() {
            assert!(Advert::decode(&message[..n]).is_err(), "prefix {n}");
            assert!(
                Advert::decode_checked(&message[..n], src, dst).is_err(),
                "prefix {n}"
            );
        }
        let ip = include_bytes!("../testdata/keepalived-v3-ip.bin");
        for n in 0..ip.len() {
            assert!(decode_datagram(&ip[..n]).is_err(), "datagram prefix {n}");
        }
    }

    #[test]
    fn decode_never_panics_on_single_byte_corruption() {
        let ip = include_bytes!("../testdata/keepalived-v3-ip.bin");
        for i in 0..ip.len() {
            for value in [0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xf0, 0xff] {
                let mut bytes = ip.to_vec();
                bytes[i] = value;
                let _ = decode_datagram(&bytes);
                let _ = Advert::decode(&bytes[20..]);
            }
        }
    }

    #[test]
    fn rejects_per_rfc_5798() {
        let mut v2 = HAND;
        v2[0] = 0x21;
        assert_eq!(Advert::decode(&v2), Err(DecodeError::Version(2)));
        let mut bad_type = HAND;
        bad_type[0] = 0x32;
        assert_eq!(Advert::decode(&bad_type), Err(DecodeError::Type(2)));
        let mut vrid0 = HAND;
        vrid0[1] = 0;
        assert_eq!(Advert::decode(&vrid0), Err(DecodeError::Vrid));
        let mut count0 = HAND;
        count0[3] = 0;
        assert_eq!(Advert::decode(&count0), Err(DecodeError::NoAddresses));
        let mut interval0 = HAND;
        interval0[4] = 0xf0; // reserved bits set, interval 0
        interval0[5] = 0;
        assert_eq!(Advert::decode(&interval0), Err(DecodeError::ZeroInterval));
        let mut long = HAND.to_vec();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            Advert::decode(&long),
            Err(DecodeError::LengthMismatch {
                expected: 16,
                got: 20
            })
        );
        let mut corrupt = HAND;
        corrupt[2] = 151;
        assert!(matches!(
            Advert::decode_checked(&corrupt, SRC, MULTICAST_GROUP),
            Err(DecodeError::Checksum { .. })
        ));
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt_and_zero_on_transmit() {
        let mut reserved = HAND;
        reserved[4] |= 0xf0;
        let advert = Advert::decode(&reserved).expect("reserved bits ignored");
        assert_eq!(advert.max_advert_int.centis(), 10);
        let bytes = advert.encode(SRC, MULTICAST_GROUP).expect("encodable");
        assert_eq!(bytes[4] & 0xf0, 0);
    }

    #[test]
    fn interval_is_twelve_bits_of_centiseconds() {
        let max = AdvertInterval::from_centis(4095).expect("max");
        let advert = Advert {
            max_advert_int: max,
            ..master_advert()
        };
        let bytes = advert.encode(SRC, MULTICAST_GROUP).expect("encodable");
        assert_eq!(&bytes[4..6], &[0x0f, 0xff]);
        assert_eq!(AdvertInterval::from_centis(4096), None);
        assert_eq!(AdvertInterval::from_centis(0), None);
        assert_eq!(max.as_duration(), Duration::from_millis(40_950));
        assert_eq!(
            AdvertInterval::from_duration(Duration::from_millis(100)),
            AdvertInterval::from_centis(10)
        );
        assert_eq!(
            AdvertInterval::from_duration(Duration::from_millis(9)),
            None
        );
        assert_eq!(AdvertInterval::from_duration(Duration::from_secs(41)), None);
    }

    #[test]
    fn encode_rejects_what_the_wire_cannot_carry() {
        // None, or more than the 8-bit count field holds.
        for n in [0, 256] {
            let advert = Advert {
                addresses: vec![VIP1.into(); n],
                ..master_advert()
            };
            assert_eq!(
                advert.encode(SRC, MULTICAST_GROUP),
                Err(EncodeError::AddressCount(n))
            );
        }
        let full = Advert {
            addresses: vec![VIP1.into(); 255],
            ..master_advert()
        };
        let bytes = full
            .encode(SRC, MULTICAST_GROUP)
            .expect("255 addresses fit");
        assert_eq!(bytes.len(), 8 + 4 * 255);
        assert_eq!(
            Advert::decode_checked(&bytes, SRC, MULTICAST_GROUP).expect("round trip"),
            full
        );
    }

    #[test]
    fn datagram_checks() {
        let ip = include_bytes!("../testdata/keepalived-v3-ip.bin");
        let mut routed = ip.to_vec();
        routed[8] = 254;
        let received = decode_datagram(&routed).expect("TTL is the caller's check");
        assert_eq!(check_ttl(received.ttl), Err(DecodeError::Ttl(254)));
        let mut udp = ip.to_vec();
        udp[9] = 17;
        assert_eq!(decode_datagram(&udp), Err(DecodeError::Protocol(17)));
        let mut fragment = ip.to_vec();
        fragment[6] = 0x20; // more fragments
        assert_eq!(
            decode_datagram(&fragment),
            Err(DecodeError::Ipv4("fragmented"))
        );
        let mut v6 = ip.to_vec();
        v6[0] = 0x65;
        assert!(matches!(decode_datagram(&v6), Err(DecodeError::Ipv4(_))));
        let mut padded = ip.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert!(
            decode_datagram(&padded).is_ok(),
            "bytes past total length ignored"
        );
    }
}
