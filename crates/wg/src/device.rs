//! [`WgDevice`]: one userspace WireGuard interface (TUN + UDP socket + UAPI socket) running on
//! its own small tokio runtime. Addresses and routes on the interface belong to the caller.
//! Dropping the device (or [`WgDevice::shutdown`]) removes the interface and the UAPI socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gotatun::device::uapi::UapiServer;
use gotatun::device::{Device, DeviceBuilder, Peer};
use gotatun::udp::socket::UdpSocketFactory;
use gotatun::x25519;
use ipnet::IpNet;
use ipnetwork::IpNetwork;
use tokio::runtime::Runtime;
use tracing::{debug, info};

use crate::diff::{self, ActualPeer};
use crate::tun::{TunRx, TunTx, create_tun, offload_wanted};
use crate::udp::UdpFactory;
use crate::{DeviceConfig, PeerConfig, PeerStats, PublicKey, SecretKey, WgError, encode_key};

type Transports = (UdpFactory, TunTx, TunRx);

/// Where the standard cross-platform UAPI socket lives (shared by all network namespaces).
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// Default MTU of a WireGuard interface (1500 minus the IPv6 + UDP + WireGuard overhead).
pub const DEFAULT_MTU: u16 = 1420;

/// Socket buffers large enough for a burst of full-size datagrams at several Gbit/s.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// A running userspace WireGuard interface.
///
/// All methods may be called from any tokio runtime or none; the device's own tasks run on a
/// private two-thread runtime so that a busy caller cannot starve the data path.
pub struct WgDevice {
    ifname: String,
    public_key: PublicKey,
    inner: Option<Inner>,
}

struct Inner {
    rt: Runtime,
    device: Arc<Device<Transports>>,
    /// Endpoints we last asked for, per peer (endpoints roam, so we diff against intent).
    last_endpoints: Arc<tokio::sync::Mutex<HashMap<PublicKey, Option<SocketAddr>>>>,
    /// When each peer's session began, as the device dates it (see [`crate::sessions`]).
    sessions: std::sync::Mutex<crate::sessions::Sessions>,
}

impl std::fmt::Debug for WgDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgDevice")
            .field("ifname", &self.ifname)
            .field("public_key", &encode_key(&self.public_key))
            .field("running", &self.inner.is_some())
            .finish()
    }
}

/// Interface names: 1..=15 bytes (IFNAMSIZ - 1), no '/', whitespace or ':' (the UAPI socket
/// path and `ip` both use the name).
fn validate_ifname(name: &str) -> Result<(), WgError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(WgError::InvalidIfname(name.to_owned()))
    }
}

fn uapi_path(ifname: &str) -> PathBuf {
    PathBuf::from(format!("{UAPI_DIR}/{ifname}.sock"))
}

fn to_ipnetwork(net: &IpNet) -> IpNetwork {
    let net = net.trunc();
    IpNetwork::new(net.addr(), net.prefix_len())
        .expect("an IpNet prefix length is always valid for its family")
}

fn to_ipnet(net: &IpNetwork) -> IpNet {
    IpNet::new(net.ip(), net.prefix())
        .expect("an IpNetwork prefix length is always valid for its family")
        .trunc()
}

fn to_gotatun_peer(p: &PeerConfig) -> Peer {
    let mut peer = Peer::new(x25519::PublicKey::from(p.public_key))
        .with_allowed_ips(p.allowed_ips.iter().map(to_ipnetwork));
    if let Some(endpoint) = p.endpoint {
        peer = peer.with_endpoint(endpoint);
    }
    if let Some(psk) = &p.preshared_key {
        peer = peer.with_preshared_key(*psk.expose());
    }
    peer.keepalive = p.persistent_keepalive.filter(|&s| s != 0);
    peer
}

/// Shuts a runtime down without blocking, also when dropped inside another runtime.
struct RuntimeGuard(Option<Runtime>);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl WgDevice {
    /// Creates the TUN interface `cfg.ifname` (up, MTU `cfg.mtu` or 1420), binds the UDP port,
    /// serves the UAPI socket and starts with no peers.
    ///
    /// # Errors
    /// Invalid name, TUN creation (no `/dev/net/tun`, no CAP_NET_ADMIN, name in use), UAPI
    /// socket, or UDP bind (port in use).
    pub async fn start(cfg: DeviceConfig) -> Result<Self, WgError> {
        validate_ifname(&cfg.ifname)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("wg-{}", cfg.ifname))
            .enable_all()
            .build()
            .map_err(WgError::Runtime)?;
        let mut guard = RuntimeGuard(Some(rt));
        let rt = guard.0.as_ref().expect("just created");
        let ifname = cfg.ifname.clone();
        let public_key = cfg.private_key.public_key();

        let device = rt
            .spawn(build_device(cfg))
            .await
            .map_err(|_| WgError::TaskFailed)?;
        let device = match device {
            Ok(device) => device,
            Err(error) => {
                let _ = std::fs::remove_file(uapi_path(&ifname));
                return Err(error);
            }
        };
        info!(ifname, public_key = %encode_key(&public_key), "wireguard device started");
        Ok(Self {
            ifname,
            public_key,
            inner: Some(Inner {
                rt: guard.0.take().expect("runtime still owned by the guard"),
                device: Arc::new(device),
                last_endpoints: Arc::default(),
                sessions: Default::default(),
            }),
        })
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// This device's public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn inner(&self) -> Result<&Inner, WgError> {
        self.inner.as_ref().ok_or(WgError::ShutDown)
    }

    /// The UDP port actually bound (useful when the config said 0).
    pub async fn listen_port(&self) -> Result<u16, WgError> {
        let inner = self.inner()?;
        let device = Arc::clone(&inner.device);
        inner
            .rt
            .spawn(async move { device.read(async |d| d.listen_port()).await })
            .await
            .map_err(|_| WgError::TaskFailed)
    }

    /// Converges the peer set to exactly `peers`: new peers are added, changed ones updated in
    /// place, missing ones removed (their sessions and in-flight handshakes are dropped at
    /// once). Peers whose settings did not change are not touched. A list with a duplicate
    /// public key is rejected before anything changes.
    ///
    /// A changed preshared key applies from the next handshake; a desired endpoint is pushed
    /// only when it differs from the one last set here (the peer may have roamed since).
    pub async fn set_peers(&self, peers: Vec<PeerConfig>) -> Result<(), WgError> {
        diff::validate(&peers)?;
        let inner = self.inner()?;
        let device = Arc::clone(&inner.device);
        let last_endpoints = Arc::clone(&inner.last_endpoints);
        inner
            .rt
            .spawn(async move {
                // Held across the whole apply: concurrent set_peers calls are serialised.
                let mut last = last_endpoints.lock().await;
                let last_ref = &*last;
                let desired = &peers;
                let (added, updated, removed) = device
                    .write(async move |w| {
                        let actual: Vec<ActualPeer> = w
                            .peers()
                            .await
                            .into_iter()
                            .map(|s| ActualPeer {
                                public_key: s.peer.public_key.to_bytes(),
                                preshared_key: s.peer.preshared_key.map(SecretKey::from_bytes),
                                allowed_ips: s.peer.allowed_ips.iter().map(to_ipnet).collect(),
                                keepalive: s.peer.keepalive,
                            })
                            .collect();
                        let plan = diff::plan(desired, &actual, last_ref);
                        let counts = (plan.add.len(), plan.update.len(), plan.remove.len());
                        for key in &plan.remove {
                            w.remove_peer(&x25519::PublicKey::from(*key)).await;
                            debug!(peer = %encode_key(key), "peer removed");
                        }
                        for (key, update) in plan.update {
                            w.modify_peer(&x25519::PublicKey::from(key), |m| {
                                if let Some(psk) = update.preshared_key {
                                    m.set_preshared_key(psk.map(|k| *k.expose()));
                                }
                                if let Some(keepalive) = update.keepalive {
                                    m.set_keepalive(keepalive);
                                }
                                if let Some(endpoint) = update.endpoint {
                                    m.set_endpoint(Some(endpoint));
                                }
                                if let Some(ips) = update.allowed_ips {
                                    m.clear_allowed_ips();
                                    m.add_allowed_ips(ips.iter().map(to_ipnetwork));
                                }
                            })
                            .await;
                            debug!(peer = %encode_key(&key), "peer updated");
                        }
                        for peer in &plan.add {
                            w.add_peer(to_gotatun_peer(peer));
                            debug!(peer = %encode_key(&peer.public_key), "peer added");
                        }
                        counts
                    })
                    .await?;
                *last = peers.iter().map(|p| (p.public_key, p.endpoint)).collect();
                info!(
                    added,
                    updated,
                    removed,
                    total = peers.len(),
                    "wireguard peers converged"
                );
                Ok(())
            })
            .await
            .map_err(|_| WgError::TaskFailed)?
    }

    /// Points the peer at `endpoint` and starts a handshake towards it unless a valid session
    /// exists (HA takeover: this instance answers for a VIP whose peers had sessions with
    /// another instance). Returns once the initiation is sent; completion is seen in
    /// [`WgDevice::peer_stats`].
    pub async fn reach(&self, public_key: PublicKey, endpoint: SocketAddr) -> Result<(), WgError> {
        let inner = self.inner()?;
        let device = Arc::clone(&inner.device);
        inner
            .rt
            .spawn(async move {
                let key = x25519::PublicKey::from(public_key);
                device
                    .write(async |w| {
                        w.modify_peer(&key, |m| m.set_endpoint(Some(endpoint)))
                            .await
                    })
                    .await?;
                // force_handshake waits for completion, which may never come: leave it running
                // for a while in the background.
                let d = Arc::clone(&device);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), d.force_handshake(&key))
                        .await;
                });
                Ok::<(), WgError>(())
            })
            .await
            .map_err(|_| WgError::TaskFailed)?
    }

    /// Per-peer counters and endpoints, as `wg show` reports them.
    pub async fn peer_stats(&self) -> Result<Vec<PeerStats>, WgError> {
        let inner = self.inner()?;
        let device = Arc::clone(&inner.device);
        let stats = inner
            .rt
            .spawn(async move { device.peers().await })
            .await
            .map_err(|_| WgError::TaskFailed)?;
        let ages: Vec<([u8; 32], Option<Duration>)> = stats
            .iter()
            .map(|s| (s.peer.public_key.to_bytes(), s.stats.last_handshake))
            .collect();
        let began = inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(&ages, (std::time::Instant::now(), SystemTime::now()));
        Ok(stats
            .into_iter()
            .zip(began)
            .map(|(s, last_handshake)| PeerStats {
                public_key: s.peer.public_key.to_bytes(),
                endpoint: s.peer.endpoint,
                rx_bytes: s.stats.rx_bytes as u64,
                tx_bytes: s.stats.tx_bytes as u64,
                last_handshake,
            })
            .collect())
    }

    /// Stops the device, removes the UAPI socket and waits (up to 1 s) for the interface to
    /// disappear.
    pub async fn shutdown(mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let Inner { rt, device, .. } = inner;
        if let Ok(device) = Arc::try_unwrap(device) {
            let _ = rt.spawn(device.stop()).await;
        }
        let _ = std::fs::remove_file(uapi_path(&self.ifname));
        rt.shutdown_background();
        let sys = PathBuf::from(format!("/sys/class/net/{}", self.ifname));
        for _ in 0..100 {
            if !sys.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        info!(ifname = %self.ifname, "wireguard device stopped");
    }
}

impl Drop for WgDevice {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let _ = std::fs::remove_file(uapi_path(&self.ifname));
            {
                // gotatun's Device::drop schedules its stop on the current runtime: ours.
                let _enter = inner.rt.enter();
                drop(inner.device);
            }
            // Dropping every task closes the TUN fd, which deletes the interface.
            inner.rt.shutdown_background();
            info!(ifname = %self.ifname, "wireguard device dropped");
        }
    }
}

async fn build_device(cfg: DeviceConfig) -> Result<Device<Transports>, WgError> {
    let mtu = cfg.mtu.unwrap_or(DEFAULT_MTU);
    let (tun_tx, tun_rx) = create_tun(&cfg.ifname, mtu)?;
    let uapi = UapiServer::default_unix_socket(&cfg.ifname, None, None)
        .map_err(|e| WgError::Uapi(e.to_string()))?;
    let mut builder = DeviceBuilder::new()
        .with_udp(UdpFactory {
            inner: UdpSocketFactory {
                recv_buffer_size: Some(UDP_BUFFER_BYTES),
                send_buffer_size: Some(UDP_BUFFER_BYTES),
            },
            gso: offload_wanted(),
        })
        .with_ip_pair(tun_tx, tun_rx)
        .with_listen_port(cfg.listen_port)
        .with_uapi(uapi);
    if let Some(mark) = cfg.fwmark {
        builder = builder.with_fwmark(mark);
    }
    let device = builder.build().await?;
    // Setting the key after build brings the connection (UDP socket, tasks) up even with no
    // peers, so the port is bound from the start and later peer additions need no restart.
    device
        .set_private_key(x25519::StaticSecret::from(*cfg.private_key.expose()))
        .await?;
    Ok(device)
}
