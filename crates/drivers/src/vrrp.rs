//! The VRRPv3 speaker: a dedicated OS thread (not the tokio runtime, so that a saturated runtime
//! cannot delay adverts) that owns a raw IP socket (protocol 112) on the private interface, joins
//! 224.0.0.18 there (or sends to unicast peers), feeds the pure `kawaii_vrrp` state machines and
//! publishes which zones' VIPs this node holds. The daemon re-plans on every change (addresses,
//! SNAT, openings follow the VIPs) and then calls [`Speaker::announce`] for gratuitous ARP.
//! Two inputs lower its priorities: data-plane health ([`Speaker::set_healthy`]) and, for
//! instances planned with `sync_gate`, connection-state sync not ready yet
//! ([`Speaker::set_sync_ready`]): a node that has not got its siblings' flows must not take VIPs
//! from a live sibling (it still takes them when nobody else holds them).

mod garp;

use kawaii_plan::vrrp::Instance;
use kawaii_vrrp::{Action, AdvertInterval, Config, Input, VirtualRouter};
pub use kawaii_vrrp::{Reason, State};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
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

/// One virtual router's status, for `/v1/status` (details "vrrp") and `kawaii status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RouterStatus {
    pub zone: String,
    pub vrid: u8,
    pub state: State,
    pub priority: u8,
    pub configured_priority: u8,
    /// This node's source address when master, else the master last heard.
    #[schema(value_type = Option<String>)]
    pub master: Option<Ipv4Addr>,
    #[schema(value_type = Vec<String>)]
    pub vips: Vec<Ipv4Addr>,
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
    shared: Arc<Shared>,
}

impl Speaker {
    /// Starts the thread (idle until [`Speaker::configure`] gives it instances).
    pub fn start() -> std::io::Result<Speaker> {
        let (tx, rx) = mpsc::channel();
        let (owned_tx, owned) = tokio::sync::watch::channel(BTreeSet::new());
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::Builder::new()
            .name("kawaii-vrrp".into())
            .spawn(move || Thread::new(rx, owned_tx, s).run())?;
        Ok(Speaker {
            cmd: Mutex::new(tx),
            owned,
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

    /// The zones whose VIPs this node holds; changes wake the daemon.
    pub fn owned(&self) -> tokio::sync::watch::Receiver<BTreeSet<String>> {
        self.owned.clone()
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

struct Router {
    instance: Instance,
    vr: VirtualRouter,
    last: Option<(u64, Reason)>,
}

struct Sockets {
    key: (String, Ipv4Addr),
    /// Bound to the source address: sends adverts from it.
    tx: Socket,
    /// Bound to the interface only: receives multicast and unicast adverts.
    rx: Socket,
}

struct Thread {
    cmd: mpsc::Receiver<Cmd>,
    owned_tx: tokio::sync::watch::Sender<BTreeSet<String>>,
    shared: Arc<Shared>,
    routers: BTreeMap<u8, Router>,
    sockets: Option<Sockets>,
    healthy: bool,
    sync_ready: bool,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn open(dev: &str, source: Ipv4Addr) -> std::io::Result<Sockets> {
    let proto = Some(Protocol::from(i32::from(kawaii_vrrp::packet::IP_PROTOCOL)));
    let tx = Socket::new(Domain::IPV4, Type::RAW, proto)?;
    tx.bind_device(Some(dev.as_bytes()))?;
    tx.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
    tx.set_multicast_if_v4(&source)?;
    tx.set_multicast_ttl_v4(u32::from(kawaii_vrrp::packet::TTL))?;
    tx.set_ttl_v4(u32::from(kawaii_vrrp::packet::TTL))?;
    tx.set_multicast_loop_v4(false)?;
    // The send socket never reads: keep what it may queue small (the kernel's minimum).
    tx.set_recv_buffer_size(0)?;
    let rx = Socket::new(Domain::IPV4, Type::RAW, proto)?;
    rx.bind_device(Some(dev.as_bytes()))?;
    rx.join_multicast_v4(&kawaii_vrrp::packet::MULTICAST_GROUP, &source)?;
    rx.set_multicast_loop_v4(false)?;
    Ok(Sockets {
        key: (dev.to_string(), source),
        tx,
        rx,
    })
}

impl Thread {
    fn new(
        cmd: mpsc::Receiver<Cmd>,
        owned_tx: tokio::sync::watch::Sender<BTreeSet<String>>,
        shared: Arc<Shared>,
    ) -> Thread {
        Thread {
            cmd,
            owned_tx,
            shared,
            routers: BTreeMap::new(),
            sockets: None,
            healthy: true,
            sync_ready: false,
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
            // Timers that are due.
            let now = Instant::now();
            let due: Vec<u8> = self
                .routers
                .iter()
                .filter(|(_, r)| r.vr.poll_at().is_some_and(|t| t <= now))
                .map(|(v, _)| *v)
                .collect();
            for vrid in due {
                self.input(vrid, now, Input::Timer);
            }
            // Wait for an advert until the next timer (or MAX_WAIT).
            let next = self.routers.values().filter_map(|r| r.vr.poll_at()).min();
            let wait = next
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(MAX_WAIT)
                .clamp(Duration::from_micros(200), MAX_WAIT);
            let Some(s) = &self.sockets else {
                std::thread::sleep(wait);
                continue;
            };
            if s.rx.set_read_timeout(Some(wait)).is_err() {
                std::thread::sleep(wait);
                continue;
            }
            let n = match (&s.rx).read(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(error) => {
                    warn!(%error, "VRRP receive failed");
                    std::thread::sleep(wait);
                    continue;
                }
            };
            self.received(&buf[..n]);
        }
    }

    fn received(&mut self, bytes: &[u8]) {
        let r = match kawaii_vrrp::decode_datagram(bytes) {
            Ok(r) => r,
            Err(error) => {
                debug!(%error, "VRRP datagram dropped");
                return;
            }
        };
        let Some(router) = self.routers.get(&r.advert.vrid) else {
            return;
        };
        let peers = &router.instance.peers;
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
        let vrid = r.advert.vrid;
        self.input(
            vrid,
            Instant::now(),
            Input::AdvertReceived {
                src: r.src,
                advert: r.advert,
            },
        );
    }

    fn input(&mut self, vrid: u8, now: Instant, input: Input) {
        let Some(router) = self.routers.get_mut(&vrid) else {
            return;
        };
        let actions = router.vr.handle(now, input);
        self.apply(vrid, actions);
    }

    fn apply(&mut self, vrid: u8, actions: Vec<Action>) {
        let mut changed = false;
        for a in actions {
            match a {
                Action::SendAdvert { advert } => {
                    let Some(r) = self.routers.get(&vrid) else {
                        continue;
                    };
                    let Some(s) = &self.sockets else { continue };
                    let dsts = if r.instance.peers.is_empty() {
                        vec![kawaii_vrrp::packet::MULTICAST_GROUP]
                    } else {
                        r.instance.peers.clone()
                    };
                    for dst in dsts {
                        match advert.encode(r.instance.source, dst) {
                            Ok(bytes) => {
                                let to = SockAddr::from(SocketAddrV4::new(dst, 0));
                                if let Err(error) = s.tx.send_to(&bytes, &to) {
                                    debug!(%error, vrid, %dst, "VRRP send failed");
                                }
                            }
                            Err(error) => warn!(%error, vrid, "VRRP encode failed"),
                        }
                    }
                }
                Action::TakeVips { .. } | Action::ReleaseVips { .. } => changed = true,
                Action::StateChanged { from, to, reason } => {
                    if let Some(r) = self.routers.get_mut(&vrid) {
                        info!(zone = %r.instance.zone, vrid, ?from, ?to, ?reason, "VRRP transition");
                        r.last = Some((unix_ms(), reason));
                    }
                    changed = true;
                }
            }
        }
        if changed {
            // The sync hold depends on the state (a master keeps its priority).
            self.reprioritize();
            self.publish();
        }
    }

    fn publish(&mut self) {
        let owned: BTreeSet<String> = self
            .routers
            .values()
            .filter(|r| r.vr.state() == State::Master)
            .map(|r| r.instance.zone.clone())
            .collect();
        self.owned_tx.send_if_modified(|o| {
            if *o != owned {
                *o = owned;
                true
            } else {
                false
            }
        });
        self.status();
    }

    fn status(&self) {
        let list = self
            .routers
            .values()
            .map(|r| {
                let s = r.vr.status();
                RouterStatus {
                    zone: r.instance.zone.clone(),
                    vrid: s.vrid,
                    state: s.state,
                    priority: s.priority,
                    configured_priority: s.configured_priority,
                    master: if s.state == State::Master {
                        Some(r.instance.source)
                    } else {
                        s.master
                    },
                    vips: r.instance.addresses.clone(),
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
        let changes: Vec<(u8, u8)> = self
            .routers
            .iter()
            .map(|(v, r)| (*v, self.priority(r)))
            .filter(|(v, p)| self.routers.get(v).is_some_and(|r| r.vr.priority() != *p))
            .collect();
        for (vrid, priority) in changes {
            self.input(vrid, now, Input::PriorityChanged { priority });
        }
    }

    fn configure(&mut self, list: Vec<Instance>) {
        let wanted: BTreeMap<u8, Instance> = list.into_iter().map(|i| (i.vrid, i)).collect();
        // Stop what changed or went away.
        let stale: Vec<u8> = self
            .routers
            .iter()
            .filter(|(v, r)| wanted.get(v) != Some(&r.instance))
            .map(|(v, _)| *v)
            .collect();
        for vrid in stale {
            self.input(vrid, Instant::now(), Input::Shutdown);
            self.routers.remove(&vrid);
        }
        // The socket follows the (interface, source) of the instances.
        let key = wanted
            .values()
            .next()
            .map(|i| (i.interface.clone(), i.source));
        if self.sockets.as_ref().map(|s| &s.key) != key.as_ref() {
            self.sockets = match &key {
                Some((dev, src)) => match open(dev, *src) {
                    Ok(s) => Some(s),
                    Err(error) => {
                        warn!(%error, dev = %dev, "VRRP socket failed; retrying on the next apply");
                        None
                    }
                },
                None => None,
            };
        }
        if self.sockets.is_none() {
            self.publish();
            return;
        }
        for (vrid, i) in wanted {
            if self.routers.contains_key(&vrid) {
                continue;
            }
            let config = Config {
                vrid,
                priority: i.priority,
                primary_address: i.source,
                addresses: i.addresses.clone(),
                advert_interval: AdvertInterval::from_centis(i.advert_interval_cs)
                    .unwrap_or_default(),
                preempt: i.preempt,
                preempt_delay: Duration::from_millis(i.preempt_delay_ms),
            };
            match VirtualRouter::new(config) {
                Ok(vr) => {
                    self.routers.insert(
                        vrid,
                        Router {
                            instance: i.clone(),
                            vr,
                            last: None,
                        },
                    );
                    self.input(vrid, Instant::now(), Input::Startup);
                    self.reprioritize();
                }
                Err(error) => warn!(%error, vrid, zone = %i.zone, "VRRP instance rejected"),
            }
        }
        self.publish();
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
        let all: Vec<u8> = self.routers.keys().copied().collect();
        for vrid in all {
            self.input(vrid, Instant::now(), Input::Shutdown);
        }
        self.routers.clear();
        self.publish();
    }
}
