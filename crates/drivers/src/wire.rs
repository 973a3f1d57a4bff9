//! Versions of what kawaii instances say to each other (the WireGuard endpoint sync, the consent
//! hellos; the connection-sync settings are versioned in the plan). Zones are upgraded one at a
//! time, so each protocol reads its current version N and the previous one, N-1, and an
//! instance answers each sibling in the newest version that sibling spoke.
//!
//! `kawaii serve --speak-previous` (hidden; `KAWAII_SPEAK_PREVIOUS=1`) makes this instance
//! behave on the wire like the release before: it speaks and reads at most N-1. The rolling
//! upgrade test runs one zone like that; an operator may too, to hold a newer release back while
//! an older one still runs somewhere. Set once at start, before any speaker runs.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};

static PREVIOUS: AtomicBool = AtomicBool::new(false);

/// Speak (and read) at most the previous version of every protocol.
pub fn speak_previous(on: bool) {
    PREVIOUS.store(on, Ordering::SeqCst);
}

pub fn speaking_previous() -> bool {
    PREVIOUS.load(Ordering::SeqCst)
}

/// The newest version this instance speaks of a protocol whose versions are `known`.
pub fn newest(known: RangeInclusive<u8>) -> u8 {
    newest_with(known, speaking_previous())
}

/// [`newest`] for a given setting (pure, for the codecs' tests).
pub fn newest_with(known: RangeInclusive<u8>, previous: bool) -> u8 {
    let (oldest, current) = (*known.start(), *known.end());
    if previous {
        current.saturating_sub(1).max(oldest)
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_is_one_back_but_never_below_the_oldest() {
        assert_eq!(newest_with(1..=2, false), 2);
        assert_eq!(newest_with(1..=2, true), 1);
        assert_eq!(newest_with(1..=1, true), 1);
    }
}
