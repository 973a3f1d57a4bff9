//! VRRPv3 (RFC 5798) for IPv4 and IPv6, sans-I/O: the advertisement codec ([`packet`], and
//! [`packet6`] for what IPv6 adds), the per-virtual-router state machine ([`router`], one per
//! family) and gratuitous ARP frames ([`arp`]). No sockets, no clocks,
//! no randomness: the driver in `kawaii-drivers` feeds received bytes and `Instant`s in and applies
//! the returned [`Action`]s. The IPv6 side of holding a zone's VIPs: router advertisements from
//! its link-local VIP ([`ra`]).
//!
//! Driver loop, per virtual router:
//! 1. `decode_datagram(raw)` on each datagram from the raw IPv4 socket (`decode_payload(payload,
//!    src, dst, hop_limit)` from the raw IPv6 one); apply [`check_ttl`] unless the
//!    peer is a routed unicast peer; hand the result to `handle(now, Input::AdvertReceived{..})`.
//! 2. Sleep until [`VirtualRouter::poll_at`], then `handle(now, Input::Timer)`.
//! 3. Apply every returned [`Action`] in order.

pub mod arp;
pub mod error;
pub mod packet;
pub mod packet6;
pub mod ra;
pub mod router;

pub use arp::{gratuitous_arp, gratuitous_arp_with_target_hw, virtual_mac};
pub use error::{ConfigError, DecodeError, EncodeError};
pub use packet::{
    Advert, AdvertInterval, Ipv4Datagram, Received, check_ttl, checksum, decode_datagram,
    parse_ipv4, verify_checksum,
};
pub use packet6::{HOP_LIMIT, MULTICAST_GROUP6, decode_datagram6, decode_payload, parse_ipv6};
pub use router::{
    Action, Config, Input, Reason, State, Stats, Status, VirtualRouter, master_down_interval,
    skew_time,
};
