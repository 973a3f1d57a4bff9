//! The VRRPv3 speaker: a dedicated OS thread (not the tokio runtime, so that a saturated runtime
//! cannot delay adverts) that owns raw IP sockets (protocol 112) on the private interface, joins
//! 224.0.0.18 and ff02::12 there (or sends to unicast peers), feeds the pure `kawaii_vrrp` state
//! machines (per zone one for IPv4 and, with IPv6 VIPs, one for IPv6) and publishes which zones'
//! VIPs this node holds, per family ([`Speaker::owned`], [`Speaker::owned6`]). The daemon re-plans on every change (addresses,
//! SNAT, openings follow the VIPs) and then calls [`Speaker::announce`] for gratuitous ARP.
//! Two inputs lower its priorities: data-plane health ([`Speaker::set_healthy`]) and, for
//! instances planned with `sync_gate`, connection-state sync not ready yet
//! ([`Speaker::set_sync_ready`]): a node that has not got its siblings' flows must not take VIPs
//! from a live sibling (it still takes them when nobody else holds them).

mod garp;
mod io6;
mod sockets;

use kawaii_plan::vrrp::Instance;
use kawaii_vrrp::{Action, AdvertInterval, Config, Input, VirtualRouter};
pub use kawaii_vrrp::{Reason, State};
use serde::Serialize;
use sockets::Pair;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// Priority drop while this node's data plane failed to apply (health tracking).
pub const UNHEALTHY_PENALTY: u8 = 80;
/// While the connection-state sync is not ready, a router that is not master advertises its
/// priority divided by this (150 -> 15, 100 -> 10): below every synced sibling, same order.
pub const SYNC_HOLD_DIVISOR: u8 = 10;
/// The longest the thread sleeps before checking its command queue.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// Timers due this close together fire in one pass (as if at the later one): a zone's IPv4 and
/// IPv6 routers, armed by the same master's adverts microseconds apart, change state together
/// and are published in one update, so the daemon replans once for both families.
const COALESCE: Duration = Duration::from_millis(2);

/// The address family of a virtual router (RFC 5798 runs one per family, each with its own VRID
/// space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// One virtual router's status, for `/v1/status` (details "vrrp") and `kawaii status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RouterStatus {
    pub zone: String,
    pub vrid: u8,
    /// IPv4 or IPv6: a zone with IPv6 VIPs has one virtual router per family.
    pub family: Family,
    pub state: State,
    pub priority: u8,
    pub configured_priority: u8,
    /// This node's source address when master, else the master last heard.
    #[schema(value_type = Option<String>)]
    pub master: Option<IpAddr>,
    #[schema(value_type = Vec<String>)]
    pub vips: Vec<IpAddr>,
    /// Unix milliseconds of the last state change, and why.
    pub last_transition_ms: Option<u64>,
    pub last_reason: Option<Reason>,
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Priority held down until the connection-state sync has the siblings' flows.
    pub held_for_sync: bool,
}

enum Cmd {
    Configure(Vec<Instance>),
    Healthy(bool),
    SyncReady(bool),
    Shutdown(mpsc::Sender<()>),
}

#[derive(Debug, Default)]
struct Shared {
    status: Mutex<Vec<RouterStatus>>,
    /// Zones whose GARP went out for the current mastership.
    announced: Mutex<BTreeSet<String>>,
    /// Interfaces per zone's VIPs: (private if, private VIP), (public if, public VIP).
    vips: Mutex<BTreeMap<String, Vec<(String, Ipv4Addr)>>>,
    garp: Mutex<Option<garp::Garp>>,
}

/// Handle to the speaker thread.
#[derive(Debug)]
pub struct Speaker {
    cmd: Mutex<mpsc::Sender<Cmd>>,
    owned: tokio::sync::watch::Receiver<BTreeSet<String>>,
    owned6: tokio::sync::watch::Receiver<BTreeSet<String>>,
    shared: Arc<Shared>,
}

/// The senders of the held zones, IPv4 and IPv6 virtual routers apart.
struct Owned {
    v4: tokio::sync::watch::Sender<BTreeSet<String>>,
    v6: tokio::sync::watch::Sender<BTreeSet<String>>,
}

impl Speaker {
    /// Starts the thread (idle until [`Speaker::configure`] gives it instances).
    pub fn start() -> std::io::Result<Speaker> {
        let (tx, rx) = mpsc::channel();
        let (v4, owned) = tokio::sync::watch::channel(BTreeSet::new());
        let (v6, owned6) = tokio::sync::watch::channel(BTreeSet::new());
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::Builder::new()
            .name("kawaii-vrrp".into())
            .spawn(move || Thread::new(rx, Owned { v4, v6 }, s).run())?;
        Ok(Speaker {
            cmd: Mutex::new(tx),
            owned,
            owned6,
            shared,
        })
    }

    fn send(&self, c: Cmd) {
        if let Ok(tx) = self.cmd.lock() {
            let _ = tx.send(c);
        }
    }

    /// Sets the virtual routers (from the plan); unchanged ones keep running undisturbed.
    pub fn configure(&self, instances: Vec<Instance>) {
        if let Ok(mut v) = self.shared.vips.lock() {
            *v = instances
                .iter()
                .map(|i| {
                    let mut list = Vec::new();
                    if let Some(p) = i.addresses.first() {
                        list.push((i.interface.clone(), *p));
                    }
                    if let Some(p) = i.addresses.get(1) {
                        list.push((i.public_interface.clone(), *p));
                    }
                    (i.zone.clone(), list)
                })
                .collect();
        }
        self.send(Cmd::Configure(instances));
    }

    /// Health tracking: a node whose data plane failed to apply advertises a lower priority.
    pub fn set_healthy(&self, ok: bool) {
        self.send(Cmd::Healthy(ok));
    }

    /// Connection-state sync: whether this node has its siblings' flows (false at start). Until
    /// it is true, routers planned with `sync_gate` that are not master advertise a priority
    /// below every sibling's, so a returning node does not preempt before its resync.
    pub fn set_sync_ready(&self, ready: bool) {
        self.send(Cmd::SyncReady(ready));
    }

    /// The zones whose (IPv4) VIPs this node holds; changes wake the daemon.
    pub fn owned(&self) -> tokio::sync::watch::Receiver<BTreeSet<String>> {
        self.owned.clone()
    }

    /// The zones whose IPv6 VIPs this node holds (master of their IPv6 virtual router). Updated
    /// before [`Speaker::owned`] when both change together, so one wake sees both.
    pub fn owned6(&self) -> tokio::sync::watch::Receiver<BTreeSet<String>> {
        self.owned6.clone()
    }

    /// Gratuitous ARP for the VIPs of `zones` not yet announced since this node took them
    /// (call after the addresses are applied). Returns the zones announced.
    pub fn announce(&self, zones: &BTreeSet<String>) -> Vec<String> {
        let Ok(mut done) = self.shared.announced.lock() else {
            return Vec::new();
        };
        done.retain(|z| zones.contains(z));
        let vips = self
            .shared
            .vips
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        let fresh: Vec<&String> = zones.iter().filter(|z| !done.contains(*z)).collect();
        if fresh.is_empty() {
            return Vec::new();
        }
        let Ok(mut sock) = self.shared.garp.lock() else {
            return Vec::new();
        };
        if sock.is_none() {
            match garp::Garp::open() {
                Ok(g) => *sock = Some(g),
                Err(error) => warn!(%error, "gratuitous ARP socket failed"),
            }
        }
        for z in fresh {
            for (dev, ip) in vips.get(z).into_iter().flatten() {
                // Twice: one lost frame must not leave a neighbour with a stale entry.
                for _ in 0..2 {
                    if let Some(Err(error)) = sock.as_ref().map(|g| g.send(dev, &[*ip])) {
                        warn!(%error, dev = %dev, vip = %ip, "gratuitous ARP failed");
                    }
                }
            }
            done.insert(z.clone());
            out.push(z.clone());
        }
        out
    }

    /// The zones whose VIPs are on this node's interfaces and announced (see
    /// [`Speaker::announce`]) for the current mastership.
    pub fn announced(&self) -> BTreeSet<String> {
        self.shared
            .announced
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    pub fn status(&self) -> Vec<RouterStatus> {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// RFC 5798 §6.4.3: as master, send priority 0 so a backup takes over after Skew_Time.
    /// Blocks until the thread has sent it (at most ~1 s).
    pub fn shutdown(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Cmd::Shutdown(tx));
        let _ = rx.recv_timeout(Duration::from_secs(1));
    }
}

/// Whether an IPv6 takeover is announced the moment it happens, before the reconcile pass puts
/// the VIPs on. Only when nobody forwards for the zone any more (the master went silent or
/// resigned): hosts that follow at once lose nothing, and this node already forwards what is not
/// addressed to the VIPs themselves. A preemption waits for the pass, which announces once the
/// VIPs are on: until it, the old master still forwards (it keeps its own route to the private
/// prefix), while this node, back from a restart, may have no route to that prefix before its
/// VIP is on; hosts that followed early lost the answers (50-200 ms gaps under load).
fn announce_at_once(reason: Reason) -> bool {
    matches!(reason, Reason::MasterDown | Reason::MasterResigned)
}

/// Where `i`'s IPv6 VIPs live: the link-local VIP and `private_vip6` on the private interface,
/// `public_vip6` (third, if any) on the public one.
fn neighbours6(i: &Instance) -> Vec<(String, Ipv6Addr)> {
    let Some(v6) = &i.v6 else {
        return Vec::new();
    };
    v6.addresses
        .iter()
        .enumerate()
        .map(|(n, a)| {
            let dev = if n < 2 {
                &i.interface
            } else {
                &i.public_interface
            };
            (dev.clone(), *a)
        })
        .collect()
}

/// A virtual router by family and VRID.
type Key = (Family, u8);

struct Router {
    instance: Instance,
    /// The advert source: the instance's IPv4 address, or the IPv6 one found for it.
    source: IpAddr,
    /// Where adverts go: unicast peers, else the family's multicast group.
    dsts: Vec<IpAddr>,
    vips: Vec<IpAddr>,
    vr: VirtualRouter,
    last: Option<(u64, Reason)>,
}

struct Thread {
    cmd: mpsc::Receiver<Cmd>,
    owned_tx: Owned,
    shared: Arc<Shared>,
    routers: BTreeMap<Key, Router>,
    v4: Option<Pair>,
    v6: Option<Pair>,
    healthy: bool,
    sync_ready: bool,
    /// A state changed and is not published yet.
    dirty: bool,
    /// The instances last configured: the IPv6 routers retry with them until their interface
    /// has a (settled) link-local address.
    configured: Vec<Instance>,
    retried: Instant,
}

/// How often the IPv6 routers look for their source address while they have none.
const RETRY6: Duration = Duration::from_millis(100);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Thread {
    fn new(cmd: mpsc::Receiver<Cmd>, owned_tx: Owned, shared: Arc<Shared>) -> Thread {
        Thread {
            cmd,
            owned_tx,
            shared,
            routers: BTreeMap::new(),
            v4: None,
            v6: None,
            healthy: true,
            sync_ready: false,
            dirty: false,
            configured: Vec::new(),
            retried: Instant::now(),
        }
    }

    fn run(mut self) {
        if let Err(error) = garp::realtime() {
            debug!(%error, "VRRP thread keeps normal scheduling");
        }
        let mut buf = vec![0u8; 65536];
        let mut snapshot = Instant::now();
        loop {
            // Counters in the status snapshot stay fresh (about once a second).
            if snapshot.elapsed() >= Duration::from_secs(1) {
                snapshot = Instant::now();
                self.status();
            }
            // IPv6 routers still without a source (the link just came up) try again.
            if self.v6.is_none()
                && self.retried.elapsed() >= RETRY6
                && self.configured.iter().any(|i| i.v6.is_some())
            {
                self.retried = Instant::now();
                self.configure(self.configured.clone());
            }
            // Commands first.
            loop {
                match self.cmd.try_recv() {
                    Ok(Cmd::Configure(list)) => self.configure(list),
                    Ok(Cmd::Healthy(ok)) => self.health(ok),
                    Ok(Cmd::SyncReady(ok)) => self.sync(ok),
                    Ok(Cmd::Shutdown(done)) => {
                        self.stop_all();
                        let _ = done.send(());
                        return;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.stop_all();
                        return;
                    }
                }
            }
            // Timers that are due (or about to be: see COALESCE).
            let now = Instant::now();
            let due: Vec<(Key, Instant)> = self
                .routers
                .iter()
                .filter_map(|(k, r)| Some((*k, r.vr.poll_at()?)))
                .filter(|(_, t)| *t <= now + COALESCE)
                .collect();
            if due.iter().any(|(_, t)| *t <= now) {
                for (key, at) in due {
                    self.input(key, at.max(now), Input::Timer);
                }
            }
            self.flush();
            // Wait for an advert until the next timer (or MAX_WAIT).
            let next = self.routers.values().filter_map(|r| r.vr.poll_at()).min();
            let wait = next
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(MAX_WAIT)
                .clamp(Duration::from_micros(200), MAX_WAIT);
            let fds: Vec<_> = [&self.v4, &self.v6]
                .iter()
                .map(|p| p.as_ref().map(|p| p.rx.as_raw_fd()))
                .collect();
            let open: Vec<_> = fds.iter().flatten().copied().collect();
            if open.is_empty() {
                std::thread::sleep(wait);
                continue;
            }
            let ready = match io6::wait(&open, wait) {
                Ok(r) => r,
                Err(error) => {
                    warn!(%error, "VRRP wait failed");
                    std::thread::sleep(wait);
                    continue;
                }
            };
            let mut ready = ready.into_iter();
            let v4_ready = fds[0].is_some() && ready.next().unwrap_or(false);
            let v6_ready = fds[1].is_some() && ready.next().unwrap_or(false);
            if v4_ready {
                self.drain4(&mut buf);
            }
            if v6_ready {
                self.drain6(&mut buf);
            }
            self.flush();
        }
    }

    /// Publishes the held zones if a state changed since the last time.
    fn flush(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.publish();
        }
    }

    /// Every queued IPv4 datagram.
    fn drain4(&mut self, buf: &mut [u8]) {
        loop {
            let Some(p) = &self.v4 else { return };
            match (&p.rx).read(buf) {
                Ok(n) => {
                    let r = kawaii_vrrp::decode_datagram(&buf[..n]);
                    self.received(r);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    warn!(%error, "VRRP receive failed");
                    return;
                }
            }
        }
    }

    /// Every queued IPv6 datagram, with the destination and hop limit the kernel reported.
    fn drain6(&mut self, buf: &mut [u8]) {
        loop {
            let Some(p) = &self.v6 else { return };
            match io6::recv(&p.rx, buf) {
                Ok(d) => {
                    let r = kawaii_vrrp::decode_payload(&buf[..d.len], d.src, d.dst, d.hop_limit);
                    self.received(r);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    debug!(%error, "VRRP (IPv6) datagram dropped");
                }
            }
        }
    }

    fn received(&mut self, r: Result<kawaii_vrrp::Received, kawaii_vrrp::DecodeError>) {
        let r = match r {
            Ok(r) => r,
            Err(error) => {
                debug!(%error, "VRRP datagram dropped");
                return;
            }
        };
        let family = if r.src.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        };
        let key = (family, r.advert.vrid);
        let Some(router) = self.routers.get(&key) else {
            return;
        };
        let peers: Vec<IpAddr> = match family {
            Family::Ipv4 => router.instance.peers.iter().map(|p| (*p).into()).collect(),
            Family::Ipv6 => router
                .instance
                .v6
                .iter()
                .flat_map(|v| &v.peers)
                .map(|p| (*p).into())
                .collect(),
        };
        if peers.is_empty() {
            // RFC 5798 §7.1: TTL 255 proves the sender is on this link.
            if let Err(error) = kawaii_vrrp::check_ttl(r.ttl) {
                debug!(%error, src = %r.src, "VRRP advert dropped");
                return;
            }
        } else if !peers.contains(&r.src) {
            debug!(src = %r.src, "VRRP advert from a non-peer dropped");
            return;
        }
        self.input(
            key,
            Instant::now(),
            Input::AdvertReceived {
                src: r.src,
                advert: r.advert,
            },
        );
    }

    fn input(&mut self, key: Key, now: Instant, input: Input) {
        let Some(router) = self.routers.get_mut(&key) else {
            return;
        };
        let actions = router.vr.handle(now, input);
        self.apply(key, actions);
    }

    fn apply(&mut self, key: Key, actions: Vec<Action>) {
        let (family, vrid) = key;
        let mut changed = false;
        let reason = actions.iter().find_map(|a| match a {
            Action::StateChanged { reason, .. } => Some(*reason),
            _ => None,
        });
        for a in actions {
            match a {
                Action::SendAdvert { advert } => {
                    let Some(r) = self.routers.get(&key) else {
                        continue;
                    };
                    let pair = match family {
                        Family::Ipv4 => &self.v4,
                        Family::Ipv6 => &self.v6,
                    };
                    let Some(s) = pair else { continue };
                    for dst in &r.dsts {
                        match advert.encode(r.source, *dst) {
                            Ok(bytes) => {
                                if let Err(error) = sockets::send(s, &bytes, *dst) {
                                    debug!(%error, vrid, %dst, "VRRP send failed");
                                }
                            }
                            Err(error) => warn!(%error, vrid, "VRRP encode failed"),
                        }
                    }
                }
                Action::TakeVips { .. } => {
                    if family == Family::Ipv6
                        && reason.is_some_and(announce_at_once)
                        && let Some(r) = self.routers.get(&key)
                    {
                        crate::ra::announce_takeover(&neighbours6(&r.instance));
                    }
                    changed = true;
                }
                Action::ReleaseVips { .. } => changed = true,
                Action::StateChanged { from, to, reason } => {
                    if let Some(r) = self.routers.get_mut(&key) {
                        info!(zone = %r.instance.zone, vrid, family = family.label(), ?from, ?to, ?reason, "VRRP transition");
                        r.last = Some((unix_ms(), reason));
                    }
                    changed = true;
                }
            }
        }
        if changed {
            // The sync hold depends on the state (a master keeps its priority).
            self.reprioritize();
            // Published once the pass over due timers or received adverts is done.
            self.dirty = true;
        }
    }

    fn publish(&mut self) {
        self.dirty = false;
        let held = |family: Family| -> BTreeSet<String> {
            self.routers
                .iter()
                .filter(|((f, _), r)| *f == family && r.vr.state() == State::Master)
                .map(|(_, r)| r.instance.zone.clone())
                .collect()
        };
        let (owned, owned6) = (held(Family::Ipv4), held(Family::Ipv6));
        // IPv6 first: the daemon wakes on either, and then reads both.
        for (tx, set) in [(&self.owned_tx.v6, owned6), (&self.owned_tx.v4, owned)] {
            tx.send_if_modified(|o| {
                if *o != set {
                    *o = set;
                    true
                } else {
                    false
                }
            });
        }
        self.status();
    }

    fn status(&self) {
        let list = self
            .routers
            .iter()
            .map(|((family, _), r)| {
                let s = r.vr.status();
                RouterStatus {
                    zone: r.instance.zone.clone(),
                    vrid: s.vrid,
                    family: *family,
                    state: s.state,
                    priority: s.priority,
                    configured_priority: s.configured_priority,
                    master: if s.state == State::Master {
                        Some(r.source)
                    } else {
                        s.master
                    },
                    vips: r.vips.clone(),
                    last_transition_ms: r.last.map(|l| l.0),
                    last_reason: r.last.map(|l| l.1),
                    transitions: s.stats.master_transitions,
                    adverts_sent: s.stats.adverts_sent,
                    adverts_received: s.stats.adverts_received,
                    held_for_sync: self.held(r),
                }
            })
            .collect();
        if let Ok(mut s) = self.shared.status.lock() {
            *s = list;
        }
    }

    /// Whether `r`'s priority is held down for the connection-state sync.
    fn held(&self, r: &Router) -> bool {
        r.instance.sync_gate && !self.sync_ready && r.vr.state() != State::Master
    }

    /// `r`'s priority given health and the sync hold.
    fn priority(&self, r: &Router) -> u8 {
        let mut p = r.instance.priority;
        if !self.healthy {
            p = p.saturating_sub(UNHEALTHY_PENALTY).max(1);
        }
        if self.held(r) {
            p = (p / SYNC_HOLD_DIVISOR).max(1);
        }
        p
    }

    /// Tells every router whose priority should differ from what it advertises.
    fn reprioritize(&mut self) {
        let now = Instant::now();
        let changes: Vec<(Key, u8)> = self
            .routers
            .iter()
            .map(|(k, r)| (*k, self.priority(r)))
            .filter(|(k, p)| self.routers.get(k).is_some_and(|r| r.vr.priority() != *p))
            .collect();
        for (key, priority) in changes {
            self.input(key, now, Input::PriorityChanged { priority });
        }
    }

    fn configure(&mut self, list: Vec<Instance>) {
        self.configured.clone_from(&list);
        // The IPv4 socket follows the (interface, source) of the instances; the IPv6 one the
        // interface and its link-local address (or the unicast source).
        let want4 = list
            .first()
            .map(|i| (i.interface.clone(), IpAddr::V4(i.source)));
        let ll_vips: Vec<Ipv6Addr> = list
            .iter()
            .filter_map(|i| i.v6.as_ref()?.addresses.first().copied())
            .collect();
        let want6 = list.iter().find_map(|i| {
            let v6 = i.v6.as_ref()?;
            let src = match v6.source {
                Some(s) => Ok(s),
                None => sockets::link_local_source(&i.interface, &ll_vips),
            };
            Some((i.interface.clone(), src))
        });
        let want6 = match want6 {
            Some((dev, Ok(src))) => Some((dev, IpAddr::V6(src))),
            Some((dev, Err(error))) => {
                warn!(%error, dev = %dev, "VRRP (IPv6) has no source yet; retrying");
                None
            }
            None => None,
        };
        let wanted: BTreeMap<Key, Router> = list
            .iter()
            .flat_map(|i| {
                let v4 = want4
                    .as_ref()
                    .map(|(_, src)| ((Family::Ipv4, i.vrid), *src));
                let v6 = want6
                    .as_ref()
                    .filter(|_| i.v6.is_some())
                    .map(|(_, src)| ((Family::Ipv6, i.vrid), *src));
                v4.into_iter()
                    .chain(v6)
                    .filter_map(|(k, src)| Self::router(i, k.0, src).map(|r| (k, r)))
            })
            .collect();
        // Stop what changed or went away.
        let stale: Vec<Key> = self
            .routers
            .iter()
            .filter(|(k, r)| {
                wanted
                    .get(k)
                    .is_none_or(|w| w.instance != r.instance || w.source != r.source)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            self.input(key, Instant::now(), Input::Shutdown);
            self.routers.remove(&key);
        }
        Self::reopen(&mut self.v4, want4, |dev, src| match src {
            IpAddr::V4(s) => sockets::open4(dev, s),
            IpAddr::V6(_) => Err(std::io::Error::other("not IPv4")),
        });
        Self::reopen(&mut self.v6, want6, |dev, src| match src {
            IpAddr::V6(s) => sockets::open6(dev, s),
            IpAddr::V4(_) => Err(std::io::Error::other("not IPv6")),
        });
        for (key, router) in wanted {
            let open = match key.0 {
                Family::Ipv4 => self.v4.is_some(),
                Family::Ipv6 => self.v6.is_some(),
            };
            if !open || self.routers.contains_key(&key) {
                continue;
            }
            self.routers.insert(key, router);
            self.input(key, Instant::now(), Input::Startup);
            self.reprioritize();
        }
        self.publish();
    }

    /// The socket pair `slot` holds, reopened if it is not for `want`'s (interface, source).
    fn reopen(
        slot: &mut Option<Pair>,
        want: Option<(String, IpAddr)>,
        open: impl Fn(&str, IpAddr) -> std::io::Result<Pair>,
    ) {
        if slot.as_ref().map(|s| &s.key) == want.as_ref() {
            return;
        }
        *slot = match &want {
            Some((dev, src)) => match open(dev, *src) {
                Ok(s) => Some(s),
                Err(error) => {
                    warn!(%error, dev = %dev, %src, "VRRP socket failed; retrying on the next apply");
                    None
                }
            },
            None => None,
        };
    }

    /// Instance `i`'s virtual router for `family`, advertising from `source`.
    fn router(i: &Instance, family: Family, source: IpAddr) -> Option<Router> {
        let (vips, dsts): (Vec<IpAddr>, Vec<IpAddr>) = match (family, &i.v6) {
            (Family::Ipv4, _) => (
                i.addresses.iter().map(|a| (*a).into()).collect(),
                if i.peers.is_empty() {
                    vec![kawaii_vrrp::packet::MULTICAST_GROUP.into()]
                } else {
                    i.peers.iter().map(|a| (*a).into()).collect()
                },
            ),
            (Family::Ipv6, Some(v6)) => (
                v6.addresses.iter().map(|a| (*a).into()).collect(),
                if v6.peers.is_empty() {
                    vec![kawaii_vrrp::MULTICAST_GROUP6.into()]
                } else {
                    v6.peers.iter().map(|a| (*a).into()).collect()
                },
            ),
            (Family::Ipv6, None) => return None,
        };
        let config = Config {
            vrid: i.vrid,
            priority: i.priority,
            primary_address: source,
            addresses: vips.clone(),
            advert_interval: AdvertInterval::from_centis(i.advert_interval_cs).unwrap_or_default(),
            preempt: i.preempt,
            preempt_delay: Duration::from_millis(i.preempt_delay_ms),
        };
        match VirtualRouter::new(config) {
            Ok(vr) => Some(Router {
                instance: i.clone(),
                source,
                dsts,
                vips,
                vr,
                last: None,
            }),
            Err(error) => {
                warn!(%error, vrid = i.vrid, zone = %i.zone, family = family.label(), "VRRP instance rejected");
                None
            }
        }
    }

    fn health(&mut self, ok: bool) {
        if ok == self.healthy {
            return;
        }
        self.healthy = ok;
        warn!(
            healthy = ok,
            "data plane health changed; adjusting VRRP priorities"
        );
        self.reprioritize();
        self.status();
    }

    fn sync(&mut self, ready: bool) {
        if ready == self.sync_ready {
            return;
        }
        self.sync_ready = ready;
        info!(
            ready,
            "connection-state sync readiness changed; adjusting VRRP priorities"
        );
        self.reprioritize();
        self.status();
    }

    fn stop_all(&mut self) {
        let all: Vec<Key> = self.routers.keys().copied().collect();
        for key in all {
            self.input(key, Instant::now(), Input::Shutdown);
        }
        self.routers.clear();
        self.publish();
    }
}
