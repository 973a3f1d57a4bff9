//! Mutual consent for VPC peerings: the two gateways say hello to each other over the backbone,
//! and a peering with `consent = "mutual"` forwards only while the other side's hellos arrive.
//!
//! A hello is authenticated with HMAC-SHA256 under the peering's `consent_key` (the same secret on
//! both sides: agreeing on it out of band *is* the consent) and carries the subnets each side
//! declared, so a hello only counts when it mirrors our peering exactly. With overlapping
//! subnets those are the aliases (each side's `local_alias` and the other's alias as its
//! `subnet`), so the two gateways agree on how each sees the other; the wire format is the same. Replays are refused
//! (timestamps must grow, be later than the moment this process declared the peering, and be
//! within 30 s of our clock), across restarts too. Removing a peering sends a signed
//! withdraw, so the other side shows `pending` at once; a gateway that just stops is `down` after
//! [`DEAD`] without hellos.
//!
//! Time is an input: the speaker's logic takes `now` (monotonic, for silence) and `wall` (Unix
//! time, for stamps and the skew window); only [`Consent::run`] and [`Consent::set_intents`] read
//! the clocks, so the tests run on fixed times.
//!
//! Dual stack: a peering with IPv6 subnets says so in its hellos (version 2, [`hello`]) and
//! sends them to the peer's IPv6 backbone address; one consent covers both families. The
//! hellos of an IPv4-only peering stay version 1 over IPv4, as before.

mod hello;

pub use hello::{ConsentError, Message, Nets6, Op, VERSIONS};
use ipnet::{Ipv4Net, Ipv6Net};
use kawaii_model::Secret;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// How often each side says hello.
pub const INTERVAL: Duration = Duration::from_millis(300);
/// Silence after which an active peering is `down`.
pub const DEAD: Duration = Duration::from_millis(1200);
const MAX_SKEW_MS: u64 = 30_000;

/// One peering this gateway declares with mutual consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub name: String,
    pub via: Ipv4Addr,
    /// Our private subnet.
    pub ours: Ipv4Net,
    /// Overlapping subnets: how this peer sees our subnet.
    pub local_alias: Option<Ipv4Net>,
    /// The peer's subnet as we see it (its alias, if it has one).
    pub theirs: Ipv4Net,
    /// Dual stack: the peer's IPv6 backbone address, our IPv6 subnet and the peer's.
    pub via6: Option<Ipv6Addr>,
    pub ours6: Option<Ipv6Net>,
    pub theirs6: Option<Ipv6Net>,
    pub key: Secret,
}

impl Intent {
    /// Our subnet as the peer sees it: what the hellos say we are.
    pub fn ours_seen(&self) -> Ipv4Net {
        self.local_alias.unwrap_or(self.ours)
    }

    /// The IPv6 pair our hellos carry (ours, theirs), for a dual-stack peering.
    fn nets6(&self) -> Option<Nets6> {
        Some(Nets6 {
            from: self.ours6?,
            to: self.theirs6?,
        })
    }

    /// Whether `other` declares the same peering on the wire (same peer, same subnets).
    fn same_peering(&self, other: &Intent) -> bool {
        self.name == other.name
            && self.via == other.via
            && self.via6 == other.via6
            && self.theirs == other.theirs
            && self.ours_seen() == other.ours_seen()
            && self.nets6() == other.nets6()
    }

    /// Whether `m`, from `src`, is the mirror of this intent: from one of the peer's backbone
    /// addresses, naming its subnets and ours as we declared them, in both families.
    fn mirrored_by(&self, src: IpAddr, m: &Message) -> bool {
        let from_peer = src == IpAddr::V4(self.via) || Some(src) == self.via6.map(IpAddr::V6);
        let mirror6 = m.v6.map(|n| Nets6 {
            from: n.to,
            to: n.from,
        });
        from_peer && self.theirs == m.from && self.ours_seen() == m.to && self.nets6() == mirror6
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PeeringStatus {
    pub name: String,
    /// The peer's subnet as our hosts see it (its alias, with overlapping subnets).
    #[schema(value_type = String)]
    pub subnet: Ipv4Net,
    /// Our private subnet, and how the peer sees it when translated.
    #[schema(value_type = String)]
    pub local_subnet: Ipv4Net,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub local_alias: Option<Ipv4Net>,
    /// Dual stack: the peer's IPv6 subnet, and ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub subnet6: Option<Ipv6Net>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub local_subnet6: Option<Ipv6Net>,
    /// `pending` (we declared, they did not), `active`, `down` (they stopped answering), or
    /// `failed` (its route or rules could not be applied: `error` says why).
    pub state: &'static str,
    /// When the state last changed (Unix time, seconds).
    pub since: u64,
    /// Why the peering's route or rules could not be applied (the state is then `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct Peer {
    heard: Option<Instant>,
    withdrawn: bool,
    last_time_ms: u64,
    state: &'static str,
    since: u64,
}

#[derive(Debug, Default)]
struct Inner {
    intents: Vec<Intent>,
    peers: BTreeMap<String, Peer>,
    /// Peerings removed here, to be told: (intent, withdraws left to send).
    leaving: Vec<(Intent, u8)>,
    /// The newest hello version spoken and read (1 with `--speak-previous`).
    newest: u8,
}

/// The consent speaker: fed the intents by the reconcile loop, tells it when consent changes.
pub struct Consent {
    inner: Mutex<Inner>,
    changed: crate::Changed,
}

impl std::fmt::Debug for Consent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consent").finish_non_exhaustive()
    }
}

/// `wall` as Unix milliseconds (0 before 1970).
fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `wall` as Unix seconds (0 before 1970).
fn unix_secs(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Consent {
    /// `changed` is called whenever the set of consented peerings changes.
    pub fn new(changed: crate::Changed) -> Arc<Consent> {
        Arc::new(Consent {
            inner: Mutex::new(Inner {
                newest: crate::wire::newest(VERSIONS),
                ..Inner::default()
            }),
            changed,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The peerings this gateway declares now (mutual ones only).
    pub fn set_intents(&self, intents: Vec<Intent>) {
        self.set_intents_at(intents, SystemTime::now());
    }

    /// [`Consent::set_intents`] at wall-clock time `wall`: hellos stamped before it are replays.
    fn set_intents_at(&self, intents: Vec<Intent>, wall: SystemTime) {
        let mut g = self.lock();
        let old = std::mem::take(&mut g.intents);
        for o in old {
            if !intents.iter().any(|n| n.same_peering(&o)) {
                g.leaving.push((o.clone(), 3));
                g.peers.remove(&o.name);
            }
        }
        for i in &intents {
            // Only hellos sent after we declared the peering count: one captured earlier (before
            // a restart, or before the peering was removed and added again) is a replay.
            g.peers.entry(i.name.clone()).or_insert_with(|| Peer {
                state: "pending",
                since: unix_secs(wall),
                last_time_ms: unix_ms(wall).saturating_sub(1),
                ..Default::default()
            });
        }
        g.intents = intents;
    }

    /// Names of the peerings whose other side consents now.
    pub fn consented(&self) -> BTreeSet<String> {
        let g = self.lock();
        g.peers
            .iter()
            .filter(|(_, p)| p.state == "active")
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn status(&self) -> Vec<PeeringStatus> {
        let g = self.lock();
        g.intents
            .iter()
            .filter_map(|i| {
                g.peers.get(&i.name).map(|p| PeeringStatus {
                    name: i.name.clone(),
                    subnet: i.theirs,
                    local_subnet: i.ours,
                    local_alias: i.local_alias,
                    subnet6: i.theirs6,
                    local_subnet6: i.ours6,
                    state: p.state,
                    since: p.since,
                    error: None,
                })
            })
            .collect()
    }

    /// Handles one datagram from `src`, received at `now` (monotonic) and `wall` (Unix time).
    /// Returns whether consent changed.
    fn receive(&self, src: SocketAddr, data: &[u8], now: Instant, wall: SystemTime) -> bool {
        let src = SocketAddr::new(src.ip().to_canonical(), src.port());
        let Ok(head) = Message::peek(data) else {
            return false;
        };
        let mut g = self.lock();
        if head.version() > g.newest {
            debug!(%src, version = head.version(), "hello of a newer version than spoken ignored");
            return false;
        }
        let Some(intent) = g
            .intents
            .iter()
            .find(|i| i.mirrored_by(src.ip(), &head))
            .cloned()
        else {
            debug!(%src, "hello matching no declared peering ignored");
            return false;
        };
        let msg = match Message::decode(data, intent.key.expose().as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                warn!(peering = %intent.name, %src, error = %e, "hello rejected");
                return false;
            }
        };
        let Some(p) = g.peers.get_mut(&intent.name) else {
            return false;
        };
        let skew = msg.time_ms.abs_diff(unix_ms(wall));
        if msg.time_ms <= p.last_time_ms || skew > MAX_SKEW_MS {
            warn!(peering = %intent.name, %src, "stale or replayed hello rejected");
            return false;
        }
        p.last_time_ms = msg.time_ms;
        match msg.op {
            Op::Hello => {
                p.heard = Some(now);
                p.withdrawn = false;
            }
            Op::Withdraw => {
                p.heard = None;
                p.withdrawn = true;
            }
        }
        Self::settle(&mut g, now, wall)
    }

    /// Recomputes every peering's state at `now` (`wall` stamps the changes); true when the
    /// consented set changed.
    fn settle(g: &mut Inner, now: Instant, wall: SystemTime) -> bool {
        let mut changed = false;
        for (name, p) in g.peers.iter_mut() {
            let state = match (p.heard, p.withdrawn) {
                (_, true) => "pending",
                (Some(t), _) if now.duration_since(t) < DEAD => "active",
                (Some(_), _) => "down",
                (None, _) => p.state,
            };
            if state != p.state {
                info!(peering = %name, from = p.state, to = state, "peering consent changed");
                changed |= state == "active" || p.state == "active";
                p.state = state;
                p.since = unix_secs(wall);
            }
        }
        changed
    }

    /// One beat at `now`/`wall`: the hellos (and pending withdraws) to send to each peering's
    /// `port`, and whether consent changed (a peering fell silent).
    fn tick(
        &self,
        port: u16,
        now: Instant,
        wall: SystemTime,
    ) -> (Vec<(SocketAddr, Vec<u8>)>, bool) {
        let mut g = self.lock();
        let mut out = Vec::new();
        let newest = g.newest;
        // A dual-stack peering's hellos go over IPv6 (version 2); an IPv4-only one's, or one
        // held to the previous version, over IPv4 (version 1, without the IPv6 pair, which
        // a dual-stack mirror then does not accept).
        let msg = |op, i: &Intent| {
            let m = Message {
                op,
                time_ms: unix_ms(wall),
                nonce: nonce(wall),
                from: i.ours_seen(),
                to: i.theirs,
                v6: i.nets6().filter(|_| newest >= 2),
            };
            let to = match (m.v6, i.via6) {
                (Some(_), Some(via6)) => SocketAddr::from((via6, port)),
                _ => SocketAddr::from((i.via, port)),
            };
            (to, m.encode(i.key.expose().as_bytes()))
        };
        for i in &g.intents {
            out.push(msg(Op::Hello, i));
        }
        for (i, left) in &mut g.leaving {
            out.push(msg(Op::Withdraw, i));
            *left -= 1;
        }
        g.leaving.retain(|(_, left)| *left > 0);
        let changed = Self::settle(&mut g, now, wall);
        (out, changed)
    }

    /// Runs the speaker on `port` (IPv4, and IPv6 where the host has it) until `stop` is
    /// cancelled.
    pub async fn run(self: Arc<Self>, port: u16, stop: tokio_util::sync::CancellationToken) {
        let sock = loop {
            match tokio::net::UdpSocket::bind(("0.0.0.0", port)).await {
                Ok(s) => break s,
                Err(e) => {
                    warn!(port, error = %e, "cannot bind the peering hello port; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        };
        // IPv6 beside it (IPv6-only, so both can hold the port); bound again when a hello
        // must go over IPv6 and it is missing.
        let mut sock6 = bind6(port)
            .inspect_err(|e| debug!(port, error = %e, "no IPv6 peering hello socket yet"))
            .ok();
        let mut tick = tokio::time::interval(INTERVAL);
        let (mut buf, mut buf6) = ([0u8; 512], [0u8; 512]);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let (out, changed) = self.tick(port, Instant::now(), SystemTime::now());
                    for (to, m) in out {
                        if to.is_ipv6() && sock6.is_none() {
                            sock6 = bind6(port)
                                .inspect_err(|e| warn!(port, error = %e, "cannot bind the IPv6 peering hello port"))
                                .ok();
                        }
                        let sent = match (to, &sock6) {
                            (SocketAddr::V6(_), Some(s6)) => s6.send_to(&m, to).await,
                            (SocketAddr::V6(_), None) => continue,
                            (SocketAddr::V4(_), _) => sock.send_to(&m, to).await,
                        };
                        if let Err(e) = sent {
                            debug!(%to, error = %e, "hello not sent");
                        }
                    }
                    if changed {
                        (self.changed)();
                    }
                }
                r = sock.recv_from(&mut buf) => {
                    if let Ok((n, src)) = r
                        && self.receive(src, &buf[..n], Instant::now(), SystemTime::now())
                    {
                        (self.changed)();
                    }
                }
                r = async {
                    match &sock6 {
                        Some(s6) => s6.recv_from(&mut buf6).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Ok((n, src)) = r
                        && self.receive(src, &buf6[..n], Instant::now(), SystemTime::now())
                    {
                        (self.changed)();
                    }
                }
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// The IPv6 hello socket on `port`, IPv6 only (the IPv4 one holds the port for IPv4).
fn bind6(port: u16) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// A hello's nonce from the time it is sent.
fn nonce(wall: SystemTime) -> u64 {
    // Uniqueness, not secrecy: the MAC and the growing timestamp carry the security.
    let t = wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests;
