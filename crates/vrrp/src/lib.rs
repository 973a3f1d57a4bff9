//! VRRPv3 (RFC 5798) for IPv4, sans-I/O: the advertisement codec ([`packet`]), the per-virtual-
//! router state machine ([`router`]) and gratuitous ARP frames ([`arp`]). No sockets, no clocks,
//! no randomness: the driver in `kawaii-drivers` feeds received bytes and `Instant`s in and applies
//! the returned [`Action`]s. The IPv6 side of holding a zone's VIPs: router advertisements from
//! its link-local VIP ([`ra`]).
//!
//! Driver loop, per virtual router:
//! 1. `decode_datagram(raw)` on each datagram from the raw socket; apply [`check_ttl`] unless the
//!    peer is a routed unicast peer; hand the result to `handle(now, Input::AdvertReceived{..})`.
//! 2. Sleep until [`VirtualRouter::poll_at`], then `handle(now, Input::Timer)`.
//! 3. Apply every returned [`Action`] in order.

pub mod arp;
pub mod error;
pub mod packet;
pub mod ra;
pub mod router;

pub use arp::{gratuitous_arp, gratuitous_arp_with_target_hw, virtual_mac};
pub use error::{ConfigError, DecodeError, EncodeError};
pub use packet::{
    Advert, AdvertInterval, Ipv4Datagram, Received, check_ttl, checksum, decode_datagram,
    parse_ipv4, verify_checksum,
};
pub use router::{
    Action, Config, Input, Reason, State, Stats, Status, VirtualRouter, master_down_interval,
    skew_time,
};
