//! The crate's error types: why a received packet was discarded, why an advert cannot be encoded,
//! why a virtual router configuration is rejected. All of them are "invalid input"; none is
//! transient.

use std::net::IpAddr;

/// Why a received datagram or VRRP message was discarded (RFC 5798 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed fields and the announced addresses need.
    #[error("incomplete packet: need {needed} bytes, have {got}")]
    Incomplete { needed: usize, got: usize },
    /// More bytes than `8 + 4 * count` (VRRPv3 over IPv4 has no trailing data).
    #[error(
        "packet length {got} does not match the {expected} bytes announced by its address count"
    )]
    LengthMismatch { expected: usize, got: usize },
    /// RFC 5798 §5.2.1: only version 3 is accepted.
    #[error("unsupported VRRP version {0}, expected 3")]
    Version(u8),
    /// RFC 5798 §5.2.2: a packet with an unknown type must be discarded.
    #[error("unknown VRRP packet type {0}, expected 1 (advertisement)")]
    Type(u8),
    /// RFC 5798 §5.2.3: VRID 0 is not a virtual router.
    #[error("virtual router id 0 is invalid")]
    Vrid,
    /// RFC 5798 §5.2.5: at least one address.
    #[error("advertisement carries no address")]
    NoAddresses,
    /// A max advert interval of 0 would make every backup take over at once.
    #[error("max advert interval is 0")]
    ZeroInterval,
    /// RFC 5798 §5.2.8: checksum over the pseudo-header and the message.
    #[error("bad checksum: packet has {got:#06x}, computed {computed:#06x}")]
    Checksum { got: u16, computed: u16 },
    /// RFC 5798 §7.1: the IPv4 TTL or IPv6 hop limit must be 255 (proves the sender is on the
    /// link).
    #[error("TTL (hop limit) {0} is not 255")]
    Ttl(u8),
    /// The datagram is not a well-formed, unfragmented IPv4 packet.
    #[error("malformed IPv4 header: {0}")]
    Ipv4(&'static str),
    /// The IPv4 protocol field is not 112.
    #[error("IPv4 protocol {0} is not VRRP (112)")]
    Protocol(u8),
    /// The datagram is not a well-formed IPv6 packet carrying VRRP directly (no extension
    /// header, next header 112).
    #[error("malformed IPv6 datagram: {0}")]
    Ipv6(&'static str),
    /// RFC 5798 §5.1.2.1: an advert over IPv6 comes from a link-local address.
    #[error("IPv6 advert source {0} is not link-local")]
    Source(std::net::Ipv6Addr),
    /// Not the ICMPv6 message expected (router advertisement 134, neighbour advertisement 136).
    #[error("ICMPv6 type {0} is not the neighbour discovery message expected")]
    Icmpv6Type(u8),
    /// A malformed neighbour discovery message or option (RFC 4861 §4.6).
    #[error("malformed neighbour discovery message: {0}")]
    Ndp(&'static str),
}

/// Why an advert cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The address count field is 8 bits wide, and it must be at least 1.
    #[error("an advertisement carries 1 to 255 addresses, not {0}")]
    AddressCount(usize),
    /// VRID 0 is not a virtual router.
    #[error("virtual router id 0 is invalid")]
    Vrid,
    /// The source, the destination and every virtual address must be of one family.
    #[error("{0} is not of the family of the advert's source")]
    Family(IpAddr),
    /// An IPv6 prefix is at most 128 bits long.
    #[error("prefix length {0} is over 128")]
    PrefixLength(u8),
}

/// Why a virtual router configuration is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("vrid: must be 1 to 255")]
    Vrid,
    #[error("priority: must be 1 to 255 (0 is reserved for a master that resigns)")]
    Priority,
    #[error("addresses: a virtual router needs 1 to 255 virtual addresses, not {0}")]
    AddressCount(usize),
    #[error("addresses: {0} is listed twice")]
    DuplicateAddress(IpAddr),
    #[error("primary_address: must be a unicast address, not {0}")]
    PrimaryAddress(IpAddr),
    #[error("addresses: {0} is not of the family of primary_address")]
    Family(IpAddr),
    #[error(
        "addresses: an IPv6 virtual router's first address must be its link-local address (RFC 5798 §5.2.9), not {0}"
    )]
    FirstNotLinkLocal(IpAddr),
}
