//! HA for the WireGuard device: the endpoint sync between the zones' instances (where each
//! peer's session is, see [`crate::wg_sync`]), the routes to peers served by a sibling, and the
//! takeover and homecoming handshakes.

use super::{SyncConfig, WireGuard, b64};
use kawaii_wg::PeerStats;
use std::time::SystemTime;
use tracing::{info, warn};

impl WireGuard {
    /// HA: the peers whose freshest session is on a sibling (base64 key → the sibling's
    /// private address), for the plan's routes.
    pub fn elsewhere(&self) -> std::collections::BTreeMap<String, std::net::Ipv4Addr> {
        self.elsewhere.read().map(|e| e.clone()).unwrap_or_default()
    }

    /// Sets [`WireGuard::elsewhere`] from this instance's sessions and what the siblings said;
    /// true if it changed.
    fn locate(&self, stats: &[PeerStats], now: SystemTime) -> bool {
        let mut last_rx = self.last_rx.lock().unwrap_or_else(|p| p.into_inner());
        // Only the peers read now are kept.
        let before = std::mem::take(&mut *last_rx);
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let located: std::collections::BTreeMap<String, std::net::Ipv4Addr> = stats
            .iter()
            .filter_map(|p| {
                let mut rx = before
                    .get(&p.public_key)
                    .copied()
                    .unwrap_or((p.rx_bytes, SystemTime::UNIX_EPOCH));
                if p.rx_bytes > rx.0 {
                    rx = (p.rx_bytes, now);
                }
                last_rx.insert(p.public_key, rx);
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
        if let Some(stats) = self.read_peers().await
            && self.locate(&stats, SystemTime::now())
        {
            changed();
        }
    }

    /// The device's peers as it reads them now (None: no device, or it did not answer).
    async fn read_peers(&self) -> Option<Vec<PeerStats>> {
        let running = self.running.lock().await;
        running.as_ref()?.device.peer_stats().await.ok()
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
            let Some(stats) = self.read_peers().await else {
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
            let stats = self.read_peers().await.unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
