//! When each peer's current session began, dated by the device rather than by gotatun.
//!
//! gotatun dates a session by its peer's timer clock, which its timer task advances only for
//! peers that have an endpoint. A peer configured without one (a VPN client, until it first
//! connects, or the instance that calls a failed sibling's peers over) keeps the clock of its
//! last tick, and a session it then establishes is dated back to that tick: to the device's
//! start, for a peer that never had an endpoint. `wg show` and the sessions' ages the HA sync
//! compares would say minutes where it was a moment ago.
//!
//! So the device reads gotatun's age at every reading and keeps its own date: a session that
//! appears, or whose age went back, since the previous reading began between that reading and
//! this one (no earlier than the previous reading, and no later than gotatun's date if that is
//! later). Between readings, a session keeps the date it was given.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// Rounding of gotatun's ages (its timers tick in whole steps): an age that falls short of the
/// expected one by less than this is the same session.
const SLACK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Dated {
    /// gotatun's age of the session at the reading.
    age: Duration,
    /// When that reading was taken, on both clocks.
    read: (Instant, SystemTime),
    /// When the session began.
    began: SystemTime,
}

/// The device's dates of its peers' sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    peers: HashMap<[u8; 32], Dated>,
    /// The previous reading of all peers.
    last_reading: Option<(Instant, SystemTime)>,
}

impl Sessions {
    /// Takes one reading of every peer (`age`: gotatun's time since its session began, None
    /// without a session) at `now`; returns each peer's session start, in the same order.
    pub(crate) fn read(
        &mut self,
        ages: &[([u8; 32], Option<Duration>)],
        now: (Instant, SystemTime),
    ) -> Vec<Option<SystemTime>> {
        let (now_i, now_s) = now;
        let previous = self.last_reading;
        // Only the peers read now, with a session, are kept.
        let mut next = HashMap::with_capacity(ages.len());
        let out = ages
            .iter()
            .map(|(key, age)| {
                let age = (*age)?;
                let theirs = now_s.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
                // No earlier than the reading before this one, when it was not there yet (or
                // was an older session).
                let since = |read_at: SystemTime| theirs.max(read_at);
                let began = match (self.peers.get(key), previous) {
                    (Some(d), _) => {
                        let expected = d.age + now_i.saturating_duration_since(d.read.0);
                        if age + SLACK < expected {
                            since(d.read.1)
                        } else {
                            d.began
                        }
                    }
                    (None, Some((_, read_s))) => since(read_s),
                    // The first reading: gotatun's date is all there is.
                    (None, None) => theirs,
                };
                next.insert(
                    *key,
                    Dated {
                        age,
                        read: now,
                        began,
                    },
                );
                Some(began)
            })
            .collect();
        self.peers = next;
        self.last_reading = Some(now);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    /// Readings `secs` seconds after a start, on both clocks.
    fn clock() -> impl Fn(u64) -> (Instant, SystemTime) {
        let (i0, s0) = (
            Instant::now(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        );
        move |secs| {
            (
                i0 + Duration::from_secs(secs),
                s0 + Duration::from_secs(secs),
            )
        }
    }

    #[test]
    fn a_session_is_dated_by_the_reading_that_first_saw_it_not_by_a_stale_peer_clock() {
        let at = clock();
        let mut s = Sessions::default();
        // t=0: no session; t=100: one, which gotatun dates 95 s back (its clock stopped at the
        // device's start): it began after the reading at 0... and the one at 99.
        assert_eq!(s.read(&[(KEY, None)], at(0)), [None]);
        assert_eq!(s.read(&[(KEY, None)], at(99)), [None]);
        let began = s.read(&[(KEY, Some(Duration::from_secs(95)))], at(100));
        assert_eq!(began, [Some(at(99).1)]);
        // The same session, its age growing with time (or faster, as the clock catches up):
        // the date stays.
        assert_eq!(
            s.read(&[(KEY, Some(Duration::from_secs(96)))], at(101)),
            [Some(at(99).1)]
        );
        assert_eq!(
            s.read(&[(KEY, Some(Duration::from_secs(130)))], at(110)),
            [Some(at(99).1)]
        );
        // A rekey: the age went back; the new session began after the last reading (110), and
        // gotatun's own date (118), being later, is the better one.
        assert_eq!(
            s.read(&[(KEY, Some(Duration::from_secs(2)))], at(120)),
            [Some(at(118).1)]
        );
    }

    #[test]
    fn the_first_reading_trusts_gotatun_and_a_lost_session_is_forgotten() {
        let at = clock();
        let mut s = Sessions::default();
        let other = [9; 32];
        let began = s.read(
            &[(KEY, Some(Duration::from_secs(30))), (other, None)],
            at(50),
        );
        assert_eq!(began, [Some(at(20).1), None]);
        // The session ends, then another comes: dated after the reading that saw none.
        assert_eq!(s.read(&[(KEY, None), (other, None)], at(60)), [None, None]);
        let began = s.read(
            &[(KEY, Some(Duration::from_secs(40))), (other, None)],
            at(61),
        );
        assert_eq!(began, [Some(at(60).1), None]);
        // A peer removed and read again later starts from the reading before.
        assert_eq!(s.read(&[(other, None)], at(70)), [None]);
        let began = s.read(&[(KEY, Some(Duration::from_secs(3)))], at(75));
        assert_eq!(began, [Some(at(72).1)]);
    }
}
