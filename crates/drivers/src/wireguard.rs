//! The userspace WireGuard device ([`kawaii_wg::WgDevice`]) driven from the plan: started when
//! `[wireguard]` appears, restarted only when the interface, port or key changes, peers
//! converged live otherwise (unchanged peers keep their sessions), stopped when the section
//! goes. Reads the private key file and refuses one that others may read.

use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName, Effect};
use kawaii_plan::Plan;
use kawaii_plan::wireguard::{KeyPlan, WgPeerPlan, WgPlan};
use kawaii_wg::{DeviceConfig, PeerConfig, PeerStats, SecretKey, WgDevice};
use serde::Serialize;
use std::sync::RwLock;
use std::time::SystemTime;
use tokio::sync::Mutex;
use tracing::{info, warn};

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

    /// HA: the peers whose freshest session is on a sibling (base64 key → the sibling's
    /// private address), for the plan's routes.
    pub fn elsewhere(&self) -> std::collections::BTreeMap<String, std::net::Ipv4Addr> {
        self.elsewhere.read().map(|e| e.clone()).unwrap_or_default()
    }

    /// Sets [`WireGuard::elsewhere`] from this instance's sessions and what the siblings said;
    /// true if it changed.
    fn locate(&self, stats: &[PeerStats], now: SystemTime) -> bool {
        let mut last_rx = self.last_rx.lock().unwrap_or_else(|p| p.into_inner());
        last_rx.retain(|k, _| stats.iter().any(|p| p.public_key == *k));
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let located: std::collections::BTreeMap<String, std::net::Ipv4Addr> = stats
            .iter()
            .filter_map(|p| {
                let rx = last_rx
                    .entry(p.public_key)
                    .or_insert((p.rx_bytes, SystemTime::UNIX_EPOCH));
                if p.rx_bytes > rx.0 {
                    *rx = (p.rx_bytes, now);
                }
                let report = seen.report(&p.public_key, now, FRESH);
                let from = served_by(p.last_handshake, rx.1, report, now)?;
                Some((b64(&p.public_key), from))
            })
            .collect();
        drop((seen, last_rx));
        let mut e = self.elsewhere.write().unwrap_or_else(|p| p.into_inner());
        let changed = *e != located;
        if changed {
            let on: Vec<String> = located.iter().map(|(k, s)| format!("{k}@{s}")).collect();
            info!(elsewhere = %on.join(" "), "wireguard peers served by a sibling changed");
        }
        *e = located;
        changed
    }

    /// HA: every [`crate::wg_sync::INTERVAL`] tells the siblings where this instance's peers
    /// are, and listens to what they say. Idle without HA. Runs until `stop`.
    pub async fn run_sync(
        self: std::sync::Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
        changed: crate::Changed,
    ) {
        use crate::wg_sync;
        let mut sock: Option<tokio::net::UdpSocket> = None;
        let mut tick = tokio::time::interval(wg_sync::INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 65536];
        loop {
            let cfg = self.sync.read().ok().and_then(|s| s.clone());
            let Some(SyncConfig { key, siblings, .. }) = cfg else {
                sock = None;
                tokio::select! {
                    _ = tick.tick() => continue,
                    _ = stop.cancelled() => return,
                }
            };
            if sock.is_none() {
                match tokio::net::UdpSocket::bind(("0.0.0.0", wg_sync::PORT)).await {
                    Ok(s) => sock = Some(s),
                    Err(error) => {
                        warn!(%error, port = wg_sync::PORT, "wireguard endpoint sync cannot listen");
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                            _ = stop.cancelled() => return,
                        }
                    }
                }
            }
            let Some(s) = sock.as_ref() else { continue };
            let addresses: Vec<std::net::Ipv4Addr> = siblings.iter().map(|s| s.address).collect();
            tokio::select! {
                _ = tick.tick() => self.speak(s, &key, &addresses, &changed).await,
                _ = self.speak_now.notified() => self.speak(s, &key, &addresses, &changed).await,
                r = s.recv_from(&mut buf) => {
                    let Ok((n, std::net::SocketAddr::V4(from))) = r else { continue };
                    if !addresses.contains(from.ip()) {
                        continue;
                    }
                    let accepted = self.seen.lock().ok().map(|mut seen| {
                        seen.accept(
                            *from.ip(),
                            &buf[..n],
                            &key,
                            SystemTime::now(),
                            crate::wire::newest(wg_sync::VERSIONS),
                        )
                    });
                    match accepted {
                        Some(Ok(_)) => self.relocate(&changed).await,
                        Some(Err(why)) => {
                            warn!(from = %from, %why, "wireguard endpoint sync message dropped")
                        }
                        None => {}
                    }
                }
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Re-runs [`WireGuard::locate`] on a fresh reading of the device, as soon as a sibling has
    /// spoken: a peer it just called over is routed there at once, not at this instance's next
    /// tick.
    async fn relocate(&self, changed: &crate::Changed) {
        let stats = {
            let running = self.running.lock().await;
            let Some(r) = running.as_ref() else { return };
            let Ok(stats) = r.device.peer_stats().await else {
                return;
            };
            stats
        };
        if self.locate(&stats, SystemTime::now()) {
            changed();
        }
    }

    /// One endpoint-sync message to every sibling: the peers with a session here. Also re-locates
    /// the peers (see [`WireGuard::elsewhere`]) and calls `changed` when that moved.
    async fn speak(
        &self,
        s: &tokio::net::UdpSocket,
        key: &[u8; 32],
        siblings: &[std::net::Ipv4Addr],
        changed: &crate::Changed,
    ) {
        use crate::wg_sync::{self, Entry, Message};
        let now = SystemTime::now();
        let entries: Vec<Entry> = {
            let running = self.running.lock().await;
            let Some(r) = running.as_ref() else { return };
            let Ok(stats) = r.device.peer_stats().await else {
                return;
            };
            let mut guests = self.guests.lock().unwrap_or_else(|p| p.into_inner());
            let entries: Vec<Entry> = stats
                .iter()
                .filter_map(|p| {
                    let age = now.duration_since(p.last_handshake?).ok()?;
                    (age < FRESH).then_some(Entry {
                        public_key: p.public_key,
                        endpoint: p.endpoint?,
                        handshake_age: age,
                        home: guests.get(&p.public_key).copied(),
                    })
                })
                .collect();
            // A guest without a session here any more has gone home (or away).
            guests.retain(|k, _| entries.iter().any(|e| e.public_key == *k));
            drop(guests);
            if self.locate(&stats, now) {
                changed();
            }
            entries
        };
        let sent_ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let message = Message { sent_ms, entries };
        let newest = crate::wire::newest(wg_sync::VERSIONS);
        for sib in siblings {
            // Each sibling in the newest version it spoke (rolling upgrades).
            let version = self
                .seen
                .lock()
                .map_or(newest, |seen| seen.version_for(*sib, newest));
            let datagram = wg_sync::encode(&message, key, version);
            let _ = s.send_to(&datagram, (*sib, wg_sync::PORT)).await;
        }
    }

    /// HA: this instance just started to hold the VIPs of `zones`. For each peer without a
    /// session here it starts a handshake, at the endpoint a sibling reported, when
    /// - the peer's last session was on the instance of one of those zones (it failed): the peer
    ///   is taken over, and remembered as that instance's guest (its home);
    /// - or `zones` holds this instance's own zone and a sibling reports the peer as a guest whose
    ///   home is this instance: the peer comes back home.
    ///
    /// Peers of instances that are up and at home stay where they are.
    pub async fn take_over(
        self: &std::sync::Arc<Self>,
        zones: &std::collections::BTreeSet<String>,
    ) -> TakeOver {
        let Some(sync) = self.sync.read().ok().and_then(|s| s.clone()) else {
            return TakeOver::default();
        };
        let failed: Vec<std::net::Ipv4Addr> = sync
            .siblings
            .iter()
            .filter(|s| zones.contains(&s.zone))
            .map(|s| s.address)
            .collect();
        let home = sync
            .me
            .as_ref()
            .filter(|me| zones.contains(&me.zone))
            .map(|me| me.address);
        let running = self.running.lock().await;
        let Some(r) = running.as_ref() else {
            return TakeOver::default();
        };
        let Ok(stats) = r.device.peer_stats().await else {
            return TakeOver::default();
        };
        let now = SystemTime::now();
        let mut called = Vec::new();
        for p in &stats {
            let ours = p
                .last_handshake
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age < REKEY_AFTER);
            if ours {
                continue;
            }
            let Some(rep) = self
                .seen
                .lock()
                .ok()
                .and_then(|s| s.report(&p.public_key, now, FRESH))
            else {
                continue;
            };
            let (why, guest_of) = if failed.contains(&rep.from) {
                // A guest of the failed instance keeps its first home.
                ("takeover", Some(rep.home.unwrap_or(rep.from)))
            } else if home.is_some() && rep.home == home {
                ("homecoming", None)
            } else {
                continue;
            };
            match r.device.reach(p.public_key, rep.endpoint).await {
                Ok(()) => {
                    called.push(p.public_key);
                    if let Ok(mut g) = self.guests.lock() {
                        match guest_of {
                            Some(h) if Some(h) != sync.me.as_ref().map(|m| m.address) => {
                                g.insert(p.public_key, h);
                            }
                            _ => {
                                g.remove(&p.public_key);
                            }
                        }
                    }
                    info!(peer = %b64(&p.public_key), endpoint = %rep.endpoint, "{why}: handshake started");
                }
                Err(error) => {
                    warn!(peer = %b64(&p.public_key), %error, "{why} handshake failed")
                }
            }
        }
        // What the failed siblings said of their sessions is over: their peers are served here
        // from now on, and their routes come back onto the interface at once (the device holds
        // the packets until the handshake is done) instead of at the next sync tick, up to 0.5 s
        // later, still pointing at the dead instance. A sibling that lives speaks again within
        // 0.5 s. (Its reports are dropped rather than dated: a session's start as WireGuard
        // counts it is rounded by up to seconds, too coarse to compare with the takeover.)
        if let Ok(mut seen) = self.seen.lock() {
            for f in &failed {
                seen.forget(*f);
            }
        }
        let relocated = !failed.is_empty() && self.locate(&stats, now);
        drop(running);
        let started = called.len();
        if started > 0 {
            tokio::spawn(std::sync::Arc::clone(self).tell_when_called(called, now));
        }
        TakeOver { started, relocated }
    }

    /// After a takeover or a homecoming: as soon as every peer called at `since` has its session
    /// here (or after 2 s), the siblings are told at once, not at the next tick up to 0.5 s
    /// later. A third zone routes its hosts' answers to those peers by what it hears.
    async fn tell_when_called(
        self: std::sync::Arc<Self>,
        called: Vec<[u8; 32]>,
        since: SystemTime,
    ) {
        // The peers called had no session younger than REKEY_AFTER here: one dated within a
        // second of the call is the new one (dates are a reading's, taken just before `since`).
        let since = since - std::time::Duration::from_secs(1);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let stats = {
                let running = self.running.lock().await;
                let Some(r) = running.as_ref() else { return };
                r.device.peer_stats().await.unwrap_or_default()
            };
            let here = |k: &[u8; 32]| {
                stats
                    .iter()
                    .any(|p| p.public_key == *k && p.last_handshake.is_some_and(|t| t >= since))
            };
            if called.iter().all(here) {
                break;
            }
        }
        self.speak_now.notify_one();
    }
}

/// What [`WireGuard::take_over`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TakeOver {
    /// Handshakes started (peers called over, or called home).
    pub started: usize,
    /// [`WireGuard::elsewhere`] changed: the routes to the peers must be planned again.
    pub relocated: bool,
}

/// Which sibling serves a peer, if not this instance: the one that reported the fresher session,
/// unless bytes from the peer arrived here within [`ARRIVING`] (the peer is here, whatever the
/// clocks say).
fn served_by(
    last_handshake: Option<SystemTime>,
    last_arrival: SystemTime,
    report: Option<crate::wg_sync::Report>,
    now: SystemTime,
) -> Option<std::net::Ipv4Addr> {
    if now.duration_since(last_arrival).unwrap_or_default() < ARRIVING {
        return None;
    }
    let r = report?;
    let here = last_handshake.filter(|t| now.duration_since(*t).unwrap_or_default() < FRESH);
    here.is_none_or(|t| r.at > t).then_some(r.from)
}

/// Bytes received from a peer within this long: the peer is served here.
const ARRIVING: std::time::Duration = std::time::Duration::from_secs(3);
/// A session younger than this is alive (WireGuard rekeys every 2 minutes while in use).
const FRESH: std::time::Duration = std::time::Duration::from_secs(180);
/// A handshake younger than this here means this instance already serves the peer.
const REKEY_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

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

    #[test]
    fn a_peer_is_served_by_the_fresher_session_unless_its_bytes_arrive_here() {
        use std::time::Duration;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let b: std::net::Ipv4Addr = "10.1.0.252".parse().expect("ip");
        let report = |handshake| {
            Some(crate::wg_sync::Report {
                endpoint: "192.0.2.2:51820".parse().expect("endpoint"),
                at: handshake,
                from: b,
                home: None,
            })
        };
        let quiet = SystemTime::UNIX_EPOCH;
        // A sibling's session newer than ours (or ours absent): the peer is there.
        assert_eq!(
            served_by(Some(at(10)), quiet, report(at(20)), at(30)),
            Some(b)
        );
        assert_eq!(served_by(None, quiet, report(at(20)), at(30)), Some(b));
        // Ours is fresher, nobody reported it, or its bytes arrive here: it is here.
        assert_eq!(served_by(Some(at(25)), quiet, report(at(20)), at(30)), None);
        assert_eq!(served_by(None, quiet, None, at(30)), None);
        assert_eq!(served_by(None, at(29), report(at(20)), at(30)), None);
    }

    fn hex_bytes(k: &[u8]) -> String {
        k.iter().map(|b| format!("{b:02x}")).collect()
    }
}
