//! The userspace WireGuard device ([`kawaii_wg::WgDevice`]) driven from the plan: started when
//! `[wireguard]` appears, restarted only when the interface, port or key changes, peers
//! converged live otherwise (unchanged peers keep their sessions), stopped when the section
//! goes. Reads the private key file and refuses one that others may read.

use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName, Effect};
use kawaii_plan::Plan;
use kawaii_plan::wireguard::{KeyPlan, WgPeerPlan, WgPlan};
use kawaii_wg::{DeviceConfig, PeerConfig, SecretKey, WgDevice};
use serde::Serialize;
use std::sync::RwLock;
use std::time::SystemTime;
use tokio::sync::Mutex;
use tracing::{info, warn};

mod ha;
pub use ha::TakeOver;

/// Reads a WireGuard private key file: base64 of 32 bytes, readable by its owner only.
/// Errors are one line and never contain the file's content.
pub fn load_key(path: &str) -> Result<SecretKey, String> {
    let text = crate::secret_file::read("wireguard.private_key_file", path)?;
    SecretKey::from_base64(text.trim()).map_err(|_| {
        format!(
            "wireguard.private_key_file {path}: is not a WireGuard private key (base64 of 32 bytes, as `kawaii wg genkey` writes)"
        )
    })
}

/// The key a plan names.
pub fn plan_key(k: &KeyPlan) -> Result<SecretKey, String> {
    match k {
        KeyPlan::File(path) => load_key(path),
        KeyPlan::Inline(s) => SecretKey::from_base64(s.expose())
            .map_err(|_| "wireguard.private_key: is not a WireGuard key".to_string()),
        KeyPlan::Missing => Err(
            "wireguard: no private key; set private_key_file (create one with `kawaii wg genkey`)"
                .into(),
        ),
    }
}

struct Running {
    device: WgDevice,
    interface: String,
    listen_port: u16,
    key: SecretKey,
    peers: Vec<WgPeerPlan>,
}

/// What `/v1/status` and `/metrics` show per peer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PeerStatus {
    pub name: String,
    pub public_key: String,
    pub allowed_ips: Vec<String>,
    pub endpoint: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds since the Unix epoch of the last completed handshake.
    pub last_handshake: Option<u64>,
    /// Seconds since then, at the time of the reading.
    pub last_handshake_ago: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DeviceStatus {
    pub interface: String,
    pub listen_port: u16,
    pub public_key: String,
    pub peers: Vec<PeerStatus>,
}

/// HA endpoint-sync settings from the plan.
#[derive(Clone)]
struct SyncConfig {
    key: [u8; 32],
    siblings: Vec<kawaii_plan::wireguard::Sibling>,
    me: Option<kawaii_plan::wireguard::Sibling>,
}

/// The HMAC key is derived from the gateway's private key: it never leaves in `Debug`.
impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("key", &kawaii_model::secret::REDACTED)
            .field("siblings", &self.siblings)
            .field("me", &self.me)
            .finish()
    }
}

#[derive(Default)]
pub struct WireGuard {
    running: Mutex<Option<Running>>,
    /// HA: the endpoint-sync key and the siblings to tell (None: no HA, nothing sent).
    sync: RwLock<Option<SyncConfig>>,
    /// HA: peers this instance took over from a failed sibling, with that sibling's address
    /// (their home), told to the others so that the home instance can call them back.
    guests: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::net::Ipv4Addr>>,
    /// HA: peers (base64 key) whose freshest session is on a sibling, and which sibling.
    elsewhere: RwLock<std::collections::BTreeMap<String, std::net::Ipv4Addr>>,
    /// Per peer: bytes received so far, and when that last grew (traffic arriving here).
    last_rx: std::sync::Mutex<std::collections::HashMap<[u8; 32], (u64, SystemTime)>>,
    /// What the siblings told us.
    seen: std::sync::Mutex<crate::wg_sync::Seen>,
    /// HA: tell the siblings now, not at the next tick (a peer called over has its session).
    speak_now: tokio::sync::Notify,
    public_key: RwLock<Option<String>>,
    status: RwLock<Option<DeviceStatus>>,
}

impl std::fmt::Debug for WireGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireGuard").finish_non_exhaustive()
    }
}

fn b64(k: &[u8; 32]) -> String {
    kawaii_wg::encode_key(k)
}

async fn peer_config(p: &WgPeerPlan) -> Result<PeerConfig, DriverError> {
    let public_key = kawaii_wg::decode_key(&p.public_key)
        .map_err(|_| DriverError::rejected(format!("peer {:?}: invalid public key", p.name)))?;
    let preshared_key = match &p.preshared_key {
        Some(k) => Some(SecretKey::from_base64(k.expose()).map_err(|_| {
            DriverError::rejected(format!("peer {:?}: invalid preshared key", p.name))
        })?),
        None => None,
    };
    // An endpoint that does not resolve now is left out (the peer can still connect to us);
    // the next apply tries again.
    let endpoint = match &p.endpoint {
        Some(e) => match tokio::net::lookup_host(e.as_str()).await {
            Ok(mut addrs) => addrs.next(),
            Err(error) => {
                warn!(peer = %p.name, endpoint = %e, %error, "peer endpoint does not resolve");
                None
            }
        },
        None => None,
    };
    Ok(PeerConfig {
        public_key,
        preshared_key,
        allowed_ips: p.allowed_ips.clone(),
        endpoint,
        persistent_keepalive: p.persistent_keepalive,
    })
}

impl WireGuard {
    pub fn new() -> WireGuard {
        WireGuard::default()
    }

    /// The device's public key (base64), while it runs.
    pub fn public_key(&self) -> Option<String> {
        self.public_key.read().ok().and_then(|k| k.clone())
    }

    /// The last reading of the device and its peers.
    pub fn status(&self) -> Option<DeviceStatus> {
        self.status.read().ok().and_then(|s| s.clone())
    }

    /// Reads the peers' counters from the device (for status and metrics).
    pub async fn refresh(&self) {
        let running = self.running.lock().await;
        let Some(r) = running.as_ref() else {
            if let Ok(mut s) = self.status.write() {
                *s = None;
            }
            return;
        };
        let Ok(stats) = r.device.peer_stats().await else {
            return;
        };
        let now = SystemTime::now();
        let peers = r
            .peers
            .iter()
            .map(|p| {
                let s = stats.iter().find(|s| b64(&s.public_key) == p.public_key);
                let hs = s.and_then(|s| s.last_handshake);
                PeerStatus {
                    name: p.name.clone(),
                    public_key: p.public_key.clone(),
                    allowed_ips: p.allowed_ips.iter().map(ToString::to_string).collect(),
                    endpoint: s.and_then(|s| s.endpoint).map(|e| e.to_string()),
                    rx_bytes: s.map_or(0, |s| s.rx_bytes),
                    tx_bytes: s.map_or(0, |s| s.tx_bytes),
                    last_handshake: hs
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    last_handshake_ago: hs
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_secs()),
                }
            })
            .collect();
        let status = DeviceStatus {
            interface: r.interface.clone(),
            listen_port: r.listen_port,
            public_key: b64(&r.device.public_key()),
            peers,
        };
        if let Ok(mut s) = self.status.write() {
            *s = Some(status);
        }
    }

    /// Stops the device (daemon shutdown).
    pub async fn shutdown(&self) {
        if let Some(r) = self.running.lock().await.take() {
            r.device.shutdown().await;
        }
    }

    /// Converges the device; a device started anew is reported as [`Effect::LinkRecreated`].
    async fn converge(&self, want: Option<&WgPlan>) -> Result<Applied, DriverError> {
        let mut running = self.running.lock().await;
        let Some(w) = want else {
            if let Some(r) = running.take() {
                info!(interface = %r.interface, "wireguard removed from the config: stopping the device");
                r.device.shutdown().await;
            }
            if let Ok(mut k) = self.public_key.write() {
                *k = None;
            }
            return Ok(Applied::quiet());
        };
        let key = plan_key(&w.private_key).map_err(DriverError::rejected)?;
        // Resolve and check every peer before anything changes.
        let mut peers = Vec::with_capacity(w.peers.len());
        for p in &w.peers {
            peers.push(peer_config(p).await?);
        }
        let mut applied = Applied::quiet();
        let same_device = running.as_ref().is_some_and(|r| {
            r.interface == w.interface && r.listen_port == w.listen_port && r.key == key
        });
        if !same_device {
            // The interface, port or key changed: a new device (peers re-handshake).
            if let Some(old) = running.take() {
                info!(interface = %old.interface, "wireguard device settings changed: restarting it");
                old.device.shutdown().await;
            }
            let device = WgDevice::start(DeviceConfig {
                ifname: w.interface.clone(),
                listen_port: w.listen_port,
                private_key: key.clone(),
                fwmark: None,
                mtu: None,
            })
            .await
            .map_err(|e| DriverError::rejected_from("wireguard device", e))?;
            *running = Some(Running {
                device,
                interface: w.interface.clone(),
                listen_port: w.listen_port,
                key: key.clone(),
                peers: Vec::new(),
            });
            applied = Applied::with(Effect::LinkRecreated(w.interface.clone()));
        }
        let r = running.as_mut().expect("running: just ensured");
        if !same_device || r.peers != w.peers {
            r.device
                .set_peers(peers)
                .await
                .map_err(|e| DriverError::rejected_from("wireguard peers", e))?;
            r.peers = w.peers.clone();
        }
        if let Ok(mut k) = self.public_key.write() {
            *k = Some(b64(&key.public_key()));
        }
        if let Ok(mut s) = self.sync.write() {
            *s = (!w.siblings.is_empty()).then(|| SyncConfig {
                key: crate::wg_sync::sync_key(key.expose()),
                siblings: w.siblings.clone(),
                me: w.me.clone(),
            });
        }
        Ok(applied)
    }
}

impl Driver for WireGuard {
    fn name(&self) -> DriverName {
        DriverName::WireGuard
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move { self.converge(plan.wireguard.as_ref()).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_files_readable_by_others_are_refused_without_their_content() {
        let dir = std::env::temp_dir().join(format!("kawaii-wgkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("wg.key");
        let key = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        std::fs::write(&path, format!("{key}\n")).expect("write");
        let p = path.to_str().expect("utf-8");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_key(p).expect_err("0644 refused");
        assert!(
            err.contains("mode 0644") && err.contains("chmod 600"),
            "{err}"
        );
        assert!(!err.contains(key) && !err.contains('\n'), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let k = load_key(p).expect("0600 accepted");
        assert_eq!(kawaii_wg::encode_key(k.expose()), key);
        std::fs::write(&path, "not a key at all\n").expect("write");
        let err = load_key(p).expect_err("garbage refused");
        assert!(err.contains("not a WireGuard private key") && !err.contains("not a key at all"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_sync_key_stays_out_of_debug() {
        let key = [0xAB; 32];
        let c = SyncConfig {
            key,
            siblings: Vec::new(),
            me: None,
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("(redacted)"), "{shown}");
        for leak in [hex_bytes(&key), format!("{:?}", key), b64(&key)] {
            assert!(!shown.contains(&leak), "{shown}");
        }
        assert!(!shown.contains("171"), "{shown}");
    }

    fn hex_bytes(k: &[u8]) -> String {
        k.iter().map(|b| format!("{b:02x}")).collect()
    }
}
