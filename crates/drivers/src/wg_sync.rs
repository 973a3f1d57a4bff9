//! HA: the zone instances tell each other where their WireGuard peers are, so that the instance
//! taking over a zone's VIP can start handshakes with that zone's peers at once instead of
//! waiting for each client to notice (15 s or more).
//!
//! Every [`INTERVAL`] each instance sends its siblings (their fixed private addresses, UDP
//! [`PORT`]) one message listing the peers it has a session with: public key, endpoint,
//! handshake age, and, for a peer it took over from a failed sibling, that sibling's address
//! (its *home*; 0.0.0.0 for a peer that came by itself). Messages are authenticated with
//! HMAC-SHA256 under a key derived from the WireGuard private key, which every instance shares
//! and nobody else has; a message older than the last one from that sender, or off by more than
//! [`MAX_SKEW`], is dropped. An instance that comes back and takes its zone again starts
//! handshakes with the peers the others report as its own, so they return home.
//!
//! ```text
//!  0      4   5              13     15
//!  +------+---+---------------+------+--------------------------------------------+----------+
//!  | KWES | 3 | unix ms (u64) |  N   | N x (key 32 | ip 16 | port 2 | age ms 4 | home ip 4) | HMAC 32 |
//!  +------+---+---------------+------+--------------------------------------------+----------+
//! ```
//!
//! The endpoint's address is IPv6, an IPv4 endpoint as an IPv4-mapped one (`::ffff:a.b.c.d`,
//! RFC 4291 §2.5.5.2). Version 2 (before IPv6 endpoints) has a 4-byte IPv4 address (46-byte
//! entries), version 1 (0.1.0 before peers came home) no home field either (42 bytes). All are
//! read; each sibling is answered in the newest version it spoke ([`Seen::version_for`]), so
//! zones a release apart keep their peers across a failover during a rolling upgrade (see
//! [`crate::wire`]). Spoken in version 1 or 2, peers at an IPv6 endpoint are left out.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const PORT: u16 = kawaii_plan::WG_SYNC_PORT;
pub const INTERVAL: Duration = Duration::from_millis(500);
pub const MAX_SKEW: Duration = Duration::from_secs(60);
const MAGIC: &[u8; 4] = b"KWES";
/// The versions this build reads and speaks: 1 (no home field), 2 (IPv4 endpoints only) and 3.
pub const VERSIONS: std::ops::RangeInclusive<u8> = 1..=3;
const HEADER: usize = 15;
/// Entry length per version.
fn entry_len(version: u8) -> usize {
    match version {
        ..=1 => 42,
        2 => 46,
        _ => 58,
    }
}
/// Length of the endpoint address per version.
fn ip_len(version: u8) -> usize {
    if version >= 3 { 16 } else { 4 }
}
const TAG: usize = 32;
/// At most this many peers per message (one datagram stays under 64 KiB in every version).
pub const MAX_ENTRIES: usize = 1100;

/// One peer as the sender sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub public_key: [u8; 32],
    /// IPv4 or IPv6 (an IPv4-mapped IPv6 address is kept as IPv4).
    pub endpoint: SocketAddr,
    /// Time since the sender's last handshake with the peer.
    pub handshake_age: Duration,
    /// The sibling the sender took this peer over from, if it did.
    pub home: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's clock, ms since the Unix epoch.
    pub sent_ms: u64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("too short")]
    Truncated,
    #[error("not a kawaii endpoint-sync message")]
    BadMagic,
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("length does not match the entry count")]
    Length,
    #[error("authentication failed")]
    BadTag,
}

/// The HMAC key every instance derives from the shared WireGuard private key.
pub fn sync_key(private_key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"kawaii wireguard endpoint sync v1");
    h.update(private_key);
    h.finalize().into()
}

fn mac(key: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The endpoint's address as one family: an IPv4-mapped IPv6 address is IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Encodes `m` in `version` (one of [`VERSIONS`]; version 1 leaves the homes out, versions 1
/// and 2 the peers at an IPv6 endpoint).
pub fn encode(m: &Message, key: &[u8; 32], version: u8) -> Vec<u8> {
    let entries: Vec<&Entry> = m
        .entries
        .iter()
        .filter(|e| version >= 3 || canonical(e.endpoint.ip()).is_ipv4())
        .take(MAX_ENTRIES)
        .collect();
    let mut out = Vec::with_capacity(HEADER + entries.len() * entry_len(version) + TAG);
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.extend_from_slice(&m.sent_ms.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.public_key);
        match (canonical(e.endpoint.ip()), version >= 3) {
            (IpAddr::V4(ip), false) => out.extend_from_slice(&ip.octets()),
            (IpAddr::V4(ip), true) => out.extend_from_slice(&ip.to_ipv6_mapped().octets()),
            (IpAddr::V6(ip), _) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&e.endpoint.port().to_be_bytes());
        let age = u32::try_from(e.handshake_age.as_millis()).unwrap_or(u32::MAX);
        out.extend_from_slice(&age.to_be_bytes());
        if version >= 2 {
            out.extend_from_slice(&e.home.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
        }
    }
    let mut h = mac(key);
    h.update(&out);
    out.extend_from_slice(&h.finalize().into_bytes());
    out
}

/// Decodes a message of any version in [`VERSIONS`]; returns its version too.
pub fn decode(b: &[u8], key: &[u8; 32]) -> Result<(u8, Message), DecodeError> {
    if b.len() < HEADER + TAG {
        return Err(DecodeError::Truncated);
    }
    if &b[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = b[4];
    if !VERSIONS.contains(&version) {
        return Err(DecodeError::Version(version));
    }
    let entry = entry_len(version);
    let ip = ip_len(version);
    let n = usize::from(u16::from_be_bytes([b[13], b[14]]));
    if b.len() != HEADER + n * entry + TAG {
        return Err(if b.len() < HEADER + n * entry + TAG {
            DecodeError::Truncated
        } else {
            DecodeError::Length
        });
    }
    let (body, tag) = b.split_at(b.len() - TAG);
    let mut h = mac(key);
    h.update(body);
    h.verify_slice(tag).map_err(|_| DecodeError::BadTag)?;
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&b[5..13]);
    let entries = body[HEADER..]
        .chunks_exact(entry)
        .map(|c| {
            let mut public_key = [0u8; 32];
            public_key.copy_from_slice(&c[..32]);
            let (addr, rest) = c[32..].split_at(ip);
            let addr = match <[u8; 16]>::try_from(addr) {
                Ok(v6) => canonical(IpAddr::V6(Ipv6Addr::from(v6))),
                Err(_) => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
            };
            let port = u16::from_be_bytes([rest[0], rest[1]]);
            let age = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
            let home = match rest.get(6..10) {
                Some(h) => Ipv4Addr::new(h[0], h[1], h[2], h[3]),
                None => Ipv4Addr::UNSPECIFIED,
            };
            Entry {
                public_key,
                endpoint: SocketAddr::new(addr, port),
                handshake_age: Duration::from_millis(u64::from(age)),
                home: (!home.is_unspecified()).then_some(home),
            }
        })
        .collect();
    Ok((
        version,
        Message {
            sent_ms: u64::from_be_bytes(sent),
            entries,
        },
    ))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What the siblings said about each peer: where it was and when it last handshook there.
#[derive(Debug, Default)]
pub struct Seen {
    /// Last accepted message time per sender (replay protection).
    last: HashMap<Ipv4Addr, u64>,
    /// Per peer: where a sibling last had a session with it.
    peers: HashMap<[u8; 32], Report>,
    /// The version each sibling last spoke.
    spoken: HashMap<Ipv4Addr, u8>,
}

/// One sibling's latest word about one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub endpoint: SocketAddr,
    /// When the sibling last handshook with the peer.
    pub at: SystemTime,
    /// The sibling that reported it.
    pub from: Ipv4Addr,
    /// The instance the sibling took the peer over from, if it did.
    pub home: Option<Ipv4Addr>,
}

impl Seen {
    /// Takes a datagram from `from` received at `now`, read in versions up to `newest` (see
    /// [`crate::wire`]); returns why it was refused.
    pub fn accept(
        &mut self,
        from: Ipv4Addr,
        b: &[u8],
        key: &[u8; 32],
        now: SystemTime,
        newest: u8,
    ) -> Result<usize, String> {
        let (version, m) = decode(b, key).map_err(|e| e.to_string())?;
        if version > newest {
            return Err(DecodeError::Version(version).to_string());
        }
        let now_ms = unix_ms(now);
        let skew = u64::try_from(MAX_SKEW.as_millis()).unwrap_or(u64::MAX);
        if m.sent_ms.abs_diff(now_ms) > skew {
            return Err(format!("clock off by {} ms", m.sent_ms.abs_diff(now_ms)));
        }
        if self.last.get(&from).is_some_and(|l| m.sent_ms <= *l) {
            return Err("replayed or reordered".into());
        }
        self.last.insert(from, m.sent_ms);
        self.spoken.insert(from, version);
        let sent = UNIX_EPOCH + Duration::from_millis(m.sent_ms);
        for e in &m.entries {
            let at = sent.checked_sub(e.handshake_age).unwrap_or(UNIX_EPOCH);
            let newer = self.peers.get(&e.public_key).is_none_or(|r| r.at <= at);
            if newer {
                self.peers.insert(
                    e.public_key,
                    Report {
                        endpoint: e.endpoint,
                        at,
                        from,
                        home: e.home,
                    },
                );
            }
        }
        Ok(m.entries.len())
    }

    /// Drops what `sibling` said of its peers (this instance took its zone over: those
    /// sessions are over). What it says from now on counts again.
    pub fn forget(&mut self, sibling: Ipv4Addr) {
        self.peers.retain(|_, r| r.from != sibling);
    }

    /// The version to speak to `sibling`: the one it last spoke, else `newest` (a sibling one
    /// release behind drops our first messages, and is answered in its version once heard).
    pub fn version_for(&self, sibling: Ipv4Addr, newest: u8) -> u8 {
        self.spoken
            .get(&sibling)
            .map_or(newest, |v| (*v).min(newest))
    }

    /// What a sibling last said about `key`, if its handshake is younger than `fresh` at `now`.
    pub fn report(&self, key: &[u8; 32], now: SystemTime, fresh: Duration) -> Option<Report> {
        let r = self.peers.get(key)?;
        (now.duration_since(r.at).unwrap_or_default() < fresh).then_some(*r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(sent_ms: u64) -> Message {
        Message {
            sent_ms,
            entries: vec![
                Entry {
                    public_key: [7; 32],
                    endpoint: "192.0.2.2:40000".parse().expect("addr"),
                    handshake_age: Duration::from_millis(1500),
                    home: None,
                },
                Entry {
                    public_key: [9; 32],
                    endpoint: "198.51.100.9:51820".parse().expect("addr"),
                    handshake_age: Duration::from_secs(100),
                    home: Some(Ipv4Addr::new(10, 1, 0, 251)),
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_every_prefix_fails() {
        let key = sync_key(&[1; 32]);
        let m = msg(1_700_000_000_000);
        for version in VERSIONS {
            let b = encode(&m, &key, version);
            assert_eq!(b.len(), HEADER + 2 * entry_len(version) + TAG);
            let mut expect = m.clone();
            if version == 1 {
                // Version 1 carries no homes.
                expect.entries.iter_mut().for_each(|e| e.home = None);
            }
            assert_eq!(decode(&b, &key), Ok((version, expect)));
            for n in 0..b.len() {
                assert!(decode(&b[..n], &key).is_err(), "v{version} prefix {n}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(decode(&longer, &key), Err(DecodeError::Length));
        }
        let mut future = encode(&m, &key, 3);
        future[4] = 4;
        assert_eq!(decode(&future, &key), Err(DecodeError::Version(4)));
    }

    /// Version 3 carries IPv6 endpoints (and IPv4 ones as IPv4-mapped addresses, read back as
    /// IPv4); speaking version 2 to a sibling a release behind leaves the IPv6 peers out.
    #[test]
    fn ipv6_endpoints_travel_in_version_3_only() {
        let key = sync_key(&[1; 32]);
        let mut m = msg(1_700_000_000_000);
        m.entries.push(Entry {
            public_key: [8; 32],
            endpoint: "[2001:db8::5]:51820".parse().expect("addr"),
            handshake_age: Duration::from_millis(300),
            home: Some(Ipv4Addr::new(10, 1, 0, 252)),
        });
        let b = encode(&m, &key, 3);
        assert_eq!(b.len(), HEADER + 3 * 58 + TAG);
        // The first entry's address: ::ffff:192.0.2.2.
        assert_eq!(
            &b[HEADER + 32..HEADER + 48],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 2]
        );
        assert_eq!(decode(&b, &key), Ok((3, m.clone())));
        for n in 0..b.len() {
            assert!(decode(&b[..n], &key).is_err(), "v3 prefix {n}");
        }
        // An IPv4-mapped endpoint (as a dual-stack socket reports one) is an IPv4 one.
        let mut mapped = m.clone();
        mapped.entries[0].endpoint = "[::ffff:192.0.2.2]:40000".parse().expect("addr");
        assert_eq!(encode(&mapped, &key, 3), b);
        assert_eq!(encode(&mapped, &key, 2), encode(&msg(m.sent_ms), &key, 2));
        let (v, old) = decode(&encode(&m, &key, 2), &key).expect("v2");
        assert_eq!((v, old), (2, msg(m.sent_ms)), "the IPv6 peer left out");
        // A sibling reading it keeps the IPv6 endpoint for the takeover.
        let now = UNIX_EPOCH + Duration::from_millis(m.sent_ms);
        let mut seen = Seen::default();
        assert_eq!(
            seen.accept(Ipv4Addr::new(10, 1, 0, 251), &b, &key, now, 3),
            Ok(3)
        );
        let r = seen
            .report(&[8; 32], now, Duration::from_secs(60))
            .expect("reported");
        assert_eq!(r.endpoint, "[2001:db8::5]:51820".parse().expect("addr"));
        assert_eq!(seen.version_for(Ipv4Addr::new(10, 1, 0, 251), 3), 3);
    }

    #[test]
    fn only_holders_of_the_private_key_are_believed() {
        let key = sync_key(&[1; 32]);
        let other = sync_key(&[2; 32]);
        let now = SystemTime::now();
        let b = encode(&msg(unix_ms(now)), &other, 2);
        let mut seen = Seen::default();
        let from = Ipv4Addr::new(10, 1, 0, 251);
        assert!(seen.accept(from, &b, &key, now, 2).is_err());
        let mut flipped = encode(&msg(unix_ms(now)), &key, 2);
        flipped[20] ^= 1;
        assert_eq!(
            seen.accept(from, &flipped, &key, now, 2),
            Err("authentication failed".into())
        );
        assert_eq!(seen.report(&[7; 32], now, Duration::from_secs(180)), None);
    }

    #[test]
    fn replays_and_stale_clocks_are_dropped_fresh_endpoints_kept() {
        let key = sync_key(&[1; 32]);
        let now = SystemTime::now();
        let from = Ipv4Addr::new(10, 1, 0, 251);
        let mut seen = Seen::default();
        let b = encode(&msg(unix_ms(now)), &key, 2);
        assert_eq!(seen.accept(from, &b, &key, now, 2), Ok(2));
        assert!(seen.accept(from, &b, &key, now, 2).is_err(), "replay");
        let old = encode(&msg(unix_ms(now) - 120_000), &key, 2);
        assert!(
            seen.accept(Ipv4Addr::new(10, 1, 0, 252), &old, &key, now, 2)
                .is_err()
        );
        let fresh = Duration::from_secs(60);
        let r = seen.report(&[7; 32], now, fresh).expect("fresh");
        assert_eq!(
            (r.endpoint, r.from, r.home),
            ("192.0.2.2:40000".parse().expect("addr"), from, None),
            "with the sibling that reported it"
        );
        assert_eq!(seen.report(&[9; 32], now, fresh), None, "100 s old");
        let r = seen
            .report(&[9; 32], now, Duration::from_secs(180))
            .expect("within 180 s");
        assert_eq!(r.home, Some(Ipv4Addr::new(10, 1, 0, 251)), "home carried");
    }

    #[test]
    fn a_taken_over_siblings_reports_are_forgotten_and_its_next_word_counts() {
        let key = sync_key(&[1; 32]);
        let now = SystemTime::now();
        let (a, c) = (Ipv4Addr::new(10, 1, 0, 251), Ipv4Addr::new(10, 1, 0, 253));
        let mut seen = Seen::default();
        let fresh = Duration::from_secs(180);
        let mut other = msg(unix_ms(now));
        other.entries.retain(|e| e.public_key == [9; 32]);
        assert_eq!(
            seen.accept(a, &encode(&msg(unix_ms(now)), &key, 2), &key, now, 2),
            Ok(2)
        );
        assert_eq!(
            seen.accept(c, &encode(&other, &key, 2), &key, now, 2),
            Ok(1)
        );
        seen.forget(a);
        assert_eq!(seen.report(&[7; 32], now, fresh), None, "a's word is over");
        assert_eq!(
            seen.report(&[9; 32], now, fresh).map(|r| r.from),
            Some(c),
            "c's stands"
        );
        // a speaks again (it lived, or came back): believed, and not taken for a replay.
        let later = now + Duration::from_millis(500);
        let b = encode(&msg(unix_ms(later)), &key, 2);
        assert_eq!(seen.accept(a, &b, &key, later, 2), Ok(2));
        assert_eq!(seen.report(&[7; 32], later, fresh).map(|r| r.from), Some(a));
    }

    /// Rolling upgrade: a version-1 datagram, laid out by hand as the first release sent it,
    /// is read; each sibling is answered in the version it spoke; an instance held at the
    /// previous version refuses version 2.
    #[test]
    fn version_1_is_read_and_each_sibling_answered_in_its_own_version() {
        let key = sync_key(&[1; 32]);
        let now = SystemTime::now();
        let sent = unix_ms(now);
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"KWES");
        v1.push(1);
        v1.extend_from_slice(&sent.to_be_bytes());
        v1.extend_from_slice(&1u16.to_be_bytes());
        v1.extend_from_slice(&[7; 32]);
        v1.extend_from_slice(&[192, 0, 2, 2]);
        v1.extend_from_slice(&40000u16.to_be_bytes());
        v1.extend_from_slice(&1500u32.to_be_bytes());
        let mut h = mac(&key);
        h.update(&v1);
        v1.extend_from_slice(&h.finalize().into_bytes());
        let (old, new) = (Ipv4Addr::new(10, 1, 0, 251), Ipv4Addr::new(10, 1, 0, 252));
        let mut seen = Seen::default();
        assert_eq!(seen.version_for(old, 2), 2, "unheard: the newest");
        assert_eq!(seen.accept(old, &v1, &key, now, 2), Ok(1));
        let r = seen
            .report(&[7; 32], now, Duration::from_secs(60))
            .expect("v1 report");
        assert_eq!(
            (r.endpoint, r.home),
            ("192.0.2.2:40000".parse().expect("addr"), None)
        );
        let v2 = encode(&msg(sent + 1), &key, 2);
        assert_eq!(seen.accept(new, &v2, &key, now, 2), Ok(2));
        assert_eq!((seen.version_for(old, 2), seen.version_for(new, 2)), (1, 2));
        // Held at the previous version: version 2 is refused, and nobody is spoken to in it.
        let mut held = Seen::default();
        assert!(held.accept(new, &v2, &key, now, 1).is_err());
        assert_eq!(held.version_for(new, 1), 1);
        assert_eq!(crate::wire::newest_with(VERSIONS, true), 2);
    }
}
