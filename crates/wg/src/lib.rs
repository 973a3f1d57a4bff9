//! kawaii-wg: a userspace WireGuard interface (TUN + UDP + the standard UAPI socket) built on
//! gotatun, driven programmatically by the daemon. See `docs/architecture-wireguard.md`.
//!
//! The device owns its interface and UAPI socket (`/var/run/wireguard/<ifname>.sock`, so `wg
//! show` works); addresses and routes on the interface are the caller's business.

mod device;
mod diff;
mod key;
mod offload;
mod sessions;
mod tun;
mod udp;

use std::net::SocketAddr;
use std::time::SystemTime;

use ipnet::IpNet;

pub use device::{DEFAULT_MTU, UAPI_DIR, WgDevice};
pub use key::{PublicKey, SecretKey, decode_key, encode_key};
pub use offload::fuzz_offload;
pub use tun::OFFLOAD_ENV;

/// Settings of the interface itself.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Interface name, 1 to 15 bytes, e.g. `kawaii-wg0`.
    pub ifname: String,
    /// UDP listen port; 0 picks a free one (see [`WgDevice::listen_port`]).
    pub listen_port: u16,
    /// This device's private key.
    pub private_key: SecretKey,
    /// `SO_MARK` on the UDP socket, to keep tunnel traffic out of policy routes.
    pub fwmark: Option<u32>,
    /// Interface MTU; `None` means [`DEFAULT_MTU`] (1420).
    pub mtu: Option<u16>,
}

/// Desired settings of one peer. Identity is the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's identity.
    pub public_key: PublicKey,
    /// An optional symmetric key mixed into the handshake (post-quantum resistance).
    pub preshared_key: Option<SecretKey>,
    /// Source addresses accepted from, and destinations routed to, this peer.
    pub allowed_ips: Vec<IpNet>,
    /// Where to send handshakes first; updated by roaming when the peer moves.
    pub endpoint: Option<SocketAddr>,
    /// Seconds between keepalives; `None` or `Some(0)` means off.
    pub persistent_keepalive: Option<u16>,
}

/// Counters of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub public_key: PublicKey,
    /// The current (possibly roamed) endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Bytes received from and sent to the peer, as `wg show ... transfer` counts them.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Time of the last completed handshake, if any.
    pub last_handshake: Option<SystemTime>,
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WgError {
    /// Invalid input: an interface name the kernel or the UAPI path would refuse.
    #[error("invalid interface name {0:?}")]
    InvalidIfname(String),
    /// Invalid input: a key that is not 32 bytes of base64.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// Invalid input: two peers with the same public key (base64 shown).
    #[error("duplicate peer {0}")]
    DuplicatePeer(String),
    /// Creating the TUN interface failed (no /dev/net/tun, no CAP_NET_ADMIN, name busy).
    #[error("creating TUN interface {ifname}: {reason}")]
    Tun { ifname: String, reason: String },
    /// Serving the UAPI socket failed.
    #[error("UAPI socket: {0}")]
    Uapi(String),
    /// The device's runtime could not be created.
    #[error("starting device runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The WireGuard device refused an operation (e.g. UDP port in use).
    #[error("wireguard device: {0}")]
    Device(#[from] gotatun::device::Error),
    /// A device task panicked or was cancelled.
    #[error("device task failed")]
    TaskFailed,
    /// The device was shut down.
    #[error("device is shut down")]
    ShutDown,
}
