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
mod tests {
    use super::*;

    fn intent(key: &str) -> Intent {
        Intent {
            name: "marvelous".into(),
            via: Ipv4Addr::new(198, 51, 100, 2),
            ours: "10.1.0.0/24".parse().expect("net"),
            local_alias: None,
            theirs: "10.2.0.0/24".parse().expect("net"),
            via6: None,
            ours6: None,
            theirs6: None,
            key: Secret::new(key),
        }
    }

    fn hello_from_them(key: &str, time_ms: u64) -> Vec<u8> {
        let i = intent(key);
        Message {
            op: Op::Hello,
            time_ms,
            nonce: 7,
            from: i.theirs,
            to: i.ours,
            v6: None,
        }
        .encode(key.as_bytes())
    }

    /// A fixed wall clock: 2027-01-15 08:00:00 UTC.
    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn ms(t: SystemTime) -> u64 {
        unix_ms(t)
    }

    #[test]
    fn consent_needs_a_valid_mirror_hello_and_fades() {
        let c = Consent::new(Arc::new(|| {}));
        c.set_intents_at(vec![intent("shared-secret-123456")], t0());
        let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
        let now = Instant::now();
        let wall = t0() + Duration::from_millis(300);
        // Forged: wrong key; wrong source; replay.
        assert!(!c.receive(
            src,
            &hello_from_them("guessed-key-000000", ms(wall)),
            now,
            wall
        ));
        assert!(!c.receive(
            "198.51.100.66:7781".parse().expect("addr"),
            &hello_from_them("shared-secret-123456", ms(wall)),
            now,
            wall
        ));
        assert!(c.consented().is_empty());
        let t = ms(wall);
        assert!(c.receive(src, &hello_from_them("shared-secret-123456", t), now, wall));
        assert_eq!(c.consented().len(), 1);
        assert_eq!(c.status()[0].since, 1_800_000_000);
        assert!(
            !c.receive(src, &hello_from_them("shared-secret-123456", t), now, wall),
            "replay"
        );
        // Silence: down.
        let mut g = c.lock();
        assert!(Consent::settle(
            &mut g,
            now + DEAD + Duration::from_millis(1),
            wall + DEAD + Duration::from_millis(1)
        ));
        assert_eq!(g.peers["marvelous"].state, "down");
    }

    /// A hello recorded before this process declared the peering (say, before a restart) is a
    /// replay even inside the clock-skew window; the peer's next hello counts.
    #[test]
    fn a_hello_from_before_the_declaration_is_refused() {
        let c = Consent::new(Arc::new(|| {}));
        let captured = hello_from_them("shared-secret-123456", ms(t0()) - 5_000);
        c.set_intents_at(vec![intent("shared-secret-123456")], t0());
        let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
        let now = Instant::now();
        let wall = t0() + Duration::from_millis(2);
        assert!(
            !c.receive(src, &captured, now, wall),
            "replayed after a restart"
        );
        assert!(c.consented().is_empty());
        assert!(c.receive(
            src,
            &hello_from_them("shared-secret-123456", ms(wall)),
            now,
            wall
        ));
        assert_eq!(c.consented().len(), 1);
    }

    /// At a given time, a genuine hello stamped more than 30 s from our clock, in the past or in
    /// the future, is refused even though it is newer than the declaration; one inside the
    /// window counts.
    #[test]
    fn a_hello_outside_the_skew_window_is_refused() {
        let c = Consent::new(Arc::new(|| {}));
        c.set_intents_at(vec![intent("shared-secret-123456")], t0());
        let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
        let now = Instant::now();
        let wall = t0() + Duration::from_secs(60);
        let key = "shared-secret-123456";
        let stale = ms(wall) - MAX_SKEW_MS - 1;
        assert!(stale > ms(t0()), "newer than the declaration");
        assert!(
            !c.receive(src, &hello_from_them(key, stale), now, wall),
            "too old"
        );
        let future = ms(wall) + MAX_SKEW_MS + 1;
        assert!(
            !c.receive(src, &hello_from_them(key, future), now, wall),
            "from the future"
        );
        assert!(c.consented().is_empty());
        assert!(c.receive(
            src,
            &hello_from_them(key, ms(wall) - MAX_SKEW_MS),
            now,
            wall
        ));
        assert_eq!(c.consented().len(), 1);
    }

    /// Overlapping subnets: both sides are 10.1.0.0/24. Our hellos say we are our alias, and
    /// only a hello that agrees on both aliases counts (not one naming the real subnets).
    #[test]
    fn aliased_hellos_carry_the_aliases_and_must_agree() {
        let c = Consent::new(Arc::new(|| {}));
        let key = "shared-secret-123456";
        let mut i = intent(key);
        i.local_alias = Some("10.201.0.0/24".parse().expect("net"));
        i.theirs = "10.202.0.0/24".parse().expect("net");
        c.set_intents_at(vec![i.clone()], t0());
        let wall = t0() + Duration::from_millis(300);
        let (out, _) = c.tick(7781, Instant::now(), wall);
        let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
        assert_eq!((m.from, m.to), (i.local_alias.expect("alias"), i.theirs));
        let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
        let hello = |from: &str, to: &str, t: u64| {
            Message {
                op: Op::Hello,
                time_ms: t,
                nonce: 1,
                from: from.parse().expect("net"),
                to: to.parse().expect("net"),
                v6: None,
            }
            .encode(key.as_bytes())
        };
        let now = Instant::now();
        assert!(
            !c.receive(
                src,
                &hello("10.202.0.0/24", "10.1.0.0/24", ms(wall)),
                now,
                wall
            ),
            "the peer does not see us as our alias"
        );
        assert!(c.consented().is_empty());
        assert!(c.receive(
            src,
            &hello("10.202.0.0/24", "10.201.0.0/24", ms(wall) + 1),
            now,
            wall
        ));
        let st = &c.status()[0];
        assert_eq!(
            (st.subnet, st.local_subnet, st.local_alias),
            (i.theirs, i.ours, i.local_alias)
        );
    }

    /// Each beat says hello to every declared peering with the wall time it is given, and a
    /// removed peering is told three times with a withdraw.
    #[test]
    fn a_tick_stamps_its_hellos_and_withdraws_with_the_time_given() {
        let c = Consent::new(Arc::new(|| {}));
        let key = "shared-secret-123456";
        c.set_intents_at(vec![intent(key)], t0());
        let wall = t0() + Duration::from_secs(1);
        let (out, changed) = c.tick(7781, Instant::now(), wall);
        assert!(!changed);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "198.51.100.2:7781".parse().expect("addr"));
        let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
        assert_eq!((m.op, m.time_ms), (Op::Hello, ms(wall)));
        c.set_intents_at(Vec::new(), wall);
        for beat in 1..=4u64 {
            let wall = wall + Duration::from_millis(300 * beat);
            let (out, _) = c.tick(7781, Instant::now(), wall);
            if beat <= 3 {
                let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
                assert_eq!((out.len(), m.op, m.time_ms), (1, Op::Withdraw, ms(wall)));
            } else {
                assert!(out.is_empty(), "withdrawn three times, then silent");
            }
        }
    }

    /// acme's dual-stack intent towards marvelous: 2001:db8:1::/64 here, 2001:db8:2::/64
    /// there, marvelous's gateway 2001:db8:ff::2 on the IPv6 backbone.
    fn dual(key: &str) -> Intent {
        Intent {
            via6: Some("2001:db8:ff::2".parse().expect("addr")),
            ours6: Some("2001:db8:1::/64".parse().expect("net")),
            theirs6: Some("2001:db8:2::/64".parse().expect("net")),
            ..intent(key)
        }
    }

    /// marvelous's hello to acme, with the IPv6 pair `v6` (from marvelous's view).
    fn dual_hello(key: &str, time_ms: u64, v6: Option<(&str, &str)>) -> Vec<u8> {
        Message {
            op: Op::Hello,
            time_ms,
            nonce: 9,
            from: "10.2.0.0/24".parse().expect("net"),
            to: "10.1.0.0/24".parse().expect("net"),
            v6: v6.map(|(from, to)| Nets6 {
                from: from.parse().expect("net"),
                to: to.parse().expect("net"),
            }),
        }
        .encode(key.as_bytes())
    }

    /// A dual-stack peering's hellos are version 2 and go to the peer's IPv6 backbone address;
    /// consent needs the mirror of both families, from the peer's IPv6 (or IPv4) address.
    #[test]
    fn a_dual_stack_peering_consents_over_ipv6_with_both_families() {
        let key = "shared-secret-123456";
        let c = Consent::new(Arc::new(|| {}));
        c.set_intents_at(vec![dual(key)], t0());
        let wall = t0() + Duration::from_millis(300);
        let (out, _) = c.tick(7781, Instant::now(), wall);
        assert_eq!(out[0].0, "[2001:db8:ff::2]:7781".parse().expect("addr"));
        let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
        assert_eq!(m.version(), 2);
        assert_eq!(
            m.v6,
            Some(Nets6 {
                from: "2001:db8:1::/64".parse().expect("net"),
                to: "2001:db8:2::/64".parse().expect("net"),
            })
        );
        let src6: SocketAddr = "[2001:db8:ff::2]:7781".parse().expect("addr");
        let now = Instant::now();
        let t = ms(wall);
        // IPv4 only, the IPv6 pair of someone else, or from a stranger: not the mirror.
        assert!(!c.receive(src6, &dual_hello(key, t, None), now, wall));
        let other = Some(("2001:db8:3::/64", "2001:db8:1::/64"));
        assert!(!c.receive(src6, &dual_hello(key, t, other), now, wall));
        let mirror = Some(("2001:db8:2::/64", "2001:db8:1::/64"));
        let stranger: SocketAddr = "[2001:db8:ff::66]:7781".parse().expect("addr");
        assert!(!c.receive(stranger, &dual_hello(key, t, mirror), now, wall));
        assert!(!c.receive(
            src6,
            &dual_hello("guessed-key-000000", t, mirror),
            now,
            wall
        ));
        assert!(c.consented().is_empty());
        assert!(c.receive(src6, &dual_hello(key, t, mirror), now, wall));
        assert_eq!(c.consented().len(), 1);
        let st = &c.status()[0];
        assert_eq!(
            (st.subnet6, st.local_subnet6),
            (dual(key).theirs6, dual(key).ours6)
        );
        // Also from its IPv4 backbone address (IPv4-mapped, as a dual-stack socket says it).
        let c = Consent::new(Arc::new(|| {}));
        c.set_intents_at(vec![dual(key)], t0());
        let mapped: SocketAddr = "[::ffff:198.51.100.2]:7781".parse().expect("addr");
        assert!(c.receive(mapped, &dual_hello(key, t, mirror), now, wall));
        assert_eq!(c.consented().len(), 1);
    }

    /// Held to the previous version (`--speak-previous`), a dual-stack peering speaks version
    /// 1 over IPv4 (the release before could not declare IPv6) and reads no version 2, so
    /// its dual-stack mirror stays pending; an IPv4-only peering is unaffected.
    #[test]
    fn speaking_the_previous_version_keeps_ipv6_out_of_the_hellos() {
        let key = "shared-secret-123456";
        let c = Consent::new(Arc::new(|| {}));
        c.lock().newest = 1;
        c.set_intents_at(vec![dual(key)], t0());
        let wall = t0() + Duration::from_millis(300);
        let (out, _) = c.tick(7781, Instant::now(), wall);
        assert_eq!(out[0].0, "198.51.100.2:7781".parse().expect("addr"));
        let m = Message::decode(&out[0].1, key.as_bytes()).expect("signed");
        assert_eq!((m.version(), m.v6), (1, None));
        let mirror = Some(("2001:db8:2::/64", "2001:db8:1::/64"));
        let src6: SocketAddr = "[2001:db8:ff::2]:7781".parse().expect("addr");
        assert!(!c.receive(
            src6,
            &dual_hello(key, ms(wall), mirror),
            Instant::now(),
            wall
        ));
        assert!(c.consented().is_empty());
        // The IPv4-only peering of the release before: version 1 both ways, consent as ever.
        let c = Consent::new(Arc::new(|| {}));
        c.lock().newest = 1;
        c.set_intents_at(vec![intent(key)], t0());
        let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
        assert!(c.receive(src, &hello_from_them(key, ms(wall)), Instant::now(), wall));
        assert_eq!(c.consented().len(), 1);
    }

    /// Adding IPv6 to a peering changes what it declares: the old declaration is withdrawn
    /// (the peer's consent to the IPv4-only peering does not carry over) and it starts over.
    #[test]
    fn adding_ipv6_to_a_peering_is_a_new_declaration() {
        let key = "shared-secret-123456";
        let c = Consent::new(Arc::new(|| {}));
        c.set_intents_at(vec![intent(key)], t0());
        let src: SocketAddr = "198.51.100.2:7781".parse().expect("addr");
        let wall = t0() + Duration::from_millis(300);
        assert!(c.receive(src, &hello_from_them(key, ms(wall)), Instant::now(), wall));
        c.set_intents_at(vec![dual(key)], wall);
        assert!(c.consented().is_empty());
        let (out, _) = c.tick(7781, Instant::now(), wall + Duration::from_millis(300));
        let ops: Vec<Op> = out
            .iter()
            .map(|(_, b)| Message::decode(b, key.as_bytes()).expect("signed").op)
            .collect();
        assert_eq!(ops, [Op::Hello, Op::Withdraw]);
    }
}
