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
//! ```text
//!  0      4    5    6              14             22         27         32                 64
//!  | KWPH | v1 | op | unix time ms | random nonce | from/len  | to/len    | HMAC-SHA256 (32) |
//! ```

use hmac::{Hmac, Mac};
use ipnet::Ipv4Net;
use kawaii_model::Secret;
use serde::Serialize;
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// How often each side says hello.
pub const INTERVAL: Duration = Duration::from_millis(300);
/// Silence after which an active peering is `down`.
pub const DEAD: Duration = Duration::from_millis(1200);
const MAX_SKEW_MS: u64 = 30_000;
const MAGIC: &[u8; 4] = b"KWPH";
const LEN: usize = 64;
/// The hello versions this build reads (byte 4). A later layout adds its version here and
/// keeps reading the previous one, so gateways a release apart keep their consent during a
/// rolling upgrade (see [`crate::wire`]).
pub const VERSIONS: std::ops::RangeInclusive<u8> = 1..=1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Hello = 1,
    Withdraw = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub op: Op,
    pub time_ms: u64,
    pub nonce: u64,
    /// The sender's private subnet as the receiver sees it (the sender's `local_alias`, if any).
    pub from: Ipv4Net,
    /// The subnet the sender peers with, as the sender sees it (ours or our alias, if it
    /// mirrors us).
    pub to: Ipv4Net,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("not a kawaii peering hello")]
    NotHello,
    #[error("malformed hello")]
    Malformed,
    #[error("bad authentication code")]
    BadMac,
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().into()
}

impl Message {
    pub fn encode(&self, key: &[u8]) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4] = crate::wire::newest(VERSIONS);
        b[5] = self.op as u8;
        b[6..14].copy_from_slice(&self.time_ms.to_be_bytes());
        b[14..22].copy_from_slice(&self.nonce.to_be_bytes());
        b[22..26].copy_from_slice(&self.from.addr().octets());
        b[26] = self.from.prefix_len();
        b[27..31].copy_from_slice(&self.to.addr().octets());
        b[31] = self.to.prefix_len();
        let m = mac(key, &b[..32]);
        b[32..].copy_from_slice(&m);
        b
    }

    /// Parses the unauthenticated header (to find the peering), without trusting it.
    pub fn peek(b: &[u8]) -> Result<Message, ConsentError> {
        if b.len() != LEN || &b[..4] != MAGIC {
            return Err(ConsentError::NotHello);
        }
        if !VERSIONS.contains(&b[4]) {
            return Err(ConsentError::Malformed);
        }
        let op = match b[5] {
            1 => Op::Hello,
            2 => Op::Withdraw,
            _ => return Err(ConsentError::Malformed),
        };
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let net = |i: usize| {
            let ip = Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
            Ipv4Net::new(ip, b[i + 4]).map_err(|_| ConsentError::Malformed)
        };
        Ok(Message {
            op,
            time_ms: u64_at(6),
            nonce: u64_at(14),
            from: net(22)?,
            to: net(27)?,
        })
    }

    /// Parses and checks the authentication code under `key`.
    pub fn decode(b: &[u8], key: &[u8]) -> Result<Message, ConsentError> {
        let m = Message::peek(b)?;
        let want = mac(key, &b[..32]);
        // Constant time is not critical for a MAC check on a one-shot datagram, but cheap.
        let diff = want
            .iter()
            .zip(&b[32..])
            .fold(0u8, |acc, (a, c)| acc | (a ^ c));
        if diff != 0 {
            return Err(ConsentError::BadMac);
        }
        Ok(m)
    }
}

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
    pub key: Secret,
}

impl Intent {
    /// Our subnet as the peer sees it: what the hellos say we are.
    pub fn ours_seen(&self) -> Ipv4Net {
        self.local_alias.unwrap_or(self.ours)
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
            inner: Mutex::new(Inner::default()),
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
            if !intents.iter().any(|n| {
                n.name == o.name
                    && n.via == o.via
                    && n.theirs == o.theirs
                    && n.ours_seen() == o.ours_seen()
            }) {
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
        let SocketAddr::V4(src) = src else {
            return false;
        };
        let Ok(head) = Message::peek(data) else {
            return false;
        };
        let mut g = self.lock();
        let Some(intent) = g
            .intents
            .iter()
            .find(|i| i.via == *src.ip() && i.theirs == head.from && i.ours_seen() == head.to)
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
    ) -> (Vec<(SocketAddr, [u8; LEN])>, bool) {
        let mut g = self.lock();
        let mut out = Vec::new();
        let msg = |op, i: &Intent| {
            Message {
                op,
                time_ms: unix_ms(wall),
                nonce: nonce(wall),
                from: i.ours_seen(),
                to: i.theirs,
            }
            .encode(i.key.expose().as_bytes())
        };
        for i in &g.intents {
            out.push((SocketAddr::from((i.via, port)), msg(Op::Hello, i)));
        }
        for (i, left) in &mut g.leaving {
            out.push((SocketAddr::from((i.via, port)), msg(Op::Withdraw, i)));
            *left -= 1;
        }
        g.leaving.retain(|(_, left)| *left > 0);
        let changed = Self::settle(&mut g, now, wall);
        (out, changed)
    }

    /// Runs the speaker on `port` until `stop` is cancelled.
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
        let mut tick = tokio::time::interval(INTERVAL);
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let (out, changed) = self.tick(port, Instant::now(), SystemTime::now());
                    for (to, m) in out {
                        if let Err(e) = sock.send_to(&m, to).await {
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
                _ = stop.cancelled() => return,
            }
        }
    }
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
        }
        .encode(key.as_bytes())
        .to_vec()
    }

    #[test]
    fn codec_round_trip_and_every_prefix() {
        let b = hello_from_them("k", 42);
        let m = Message::decode(&b, b"k").expect("valid");
        assert_eq!((m.op, m.time_ms, m.nonce), (Op::Hello, 42, 7));
        assert_eq!(Message::decode(&b, b"other"), Err(ConsentError::BadMac));
        for n in 0..b.len() {
            assert!(Message::decode(&b[..n], b"k").is_err());
        }
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
}
