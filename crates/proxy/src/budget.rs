//! The connection budget: how many proxied connections the process may hold at once, derived
//! from its open-file limit (`RLIMIT_NOFILE`), shared by the router's listeners and the pipes.
//! A connection over budget is closed at accept (existing ones are untouched) and counted; the
//! first refusal of a run is logged once with the figures, and so is the recovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use tracing::{info, warn};

/// File descriptors one proxied connection may hold: the client's and the backend's sockets,
/// and a splice pipe pair per direction.
pub const FDS_PER_CONNECTION: u64 = 6;
/// File descriptors kept for everything else (store, netlink, WireGuard, API, logs).
pub const RESERVED_FDS: u64 = 1024;
/// The floor, whatever the limit says.
pub const MIN_CONNECTIONS: u64 = 64;

/// The soft `RLIMIT_NOFILE` of this process (from `/proc/self/limits`); None if unreadable or
/// unlimited.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection budget for an open-file limit of `nofile`.
pub fn max_connections_for(nofile: u64) -> u64 {
    (nofile.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION).max(MIN_CONNECTIONS)
}

/// A count of open connections against a maximum. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct ConnBudget {
    max: u64,
    nofile: Option<u64>,
    used: AtomicU64,
    refused: AtomicU64,
    /// True from the first refusal until a connection is admitted again.
    full: AtomicBool,
}

impl ConnBudget {
    /// A budget of `max` connections (tests, or an operator's override).
    pub fn new(max: u64) -> Arc<ConnBudget> {
        Arc::new(ConnBudget {
            max,
            nofile: None,
            used: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            full: AtomicBool::new(false),
        })
    }

    /// The budget of this process, from its open-file limit (logged once).
    pub fn from_fd_limit() -> Arc<ConnBudget> {
        let nofile = open_file_limit();
        let max = nofile.map_or(u64::MAX, max_connections_for);
        info!(
            max_connections = max,
            open_file_limit = nofile,
            "proxied connection budget (router and pipes) from the open-file limit"
        );
        Arc::new(ConnBudget {
            max,
            nofile,
            used: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            full: AtomicBool::new(false),
        })
    }

    /// The budget the router and the pipes share when none is given: one per process.
    pub fn process() -> Arc<ConnBudget> {
        static PROCESS: std::sync::OnceLock<Arc<ConnBudget>> = std::sync::OnceLock::new();
        PROCESS.get_or_init(ConnBudget::from_fd_limit).clone()
    }

    /// A ticket for one connection, or None (counted, logged once per run) when the budget is
    /// spent. `what` names the listener or pipe in the log.
    pub fn take(self: &Arc<Self>, what: &str) -> Option<Ticket> {
        let admitted = self
            .used
            .fetch_update(Relaxed, Relaxed, |n| (n < self.max).then_some(n + 1))
            .is_ok();
        if admitted {
            if self.full.swap(false, Relaxed) {
                info!(
                    max_connections = self.max,
                    "proxied connections below the budget again; accepting"
                );
            }
            return Some(Ticket(self.clone()));
        }
        self.refused.fetch_add(1, Relaxed);
        if !self.full.swap(true, Relaxed) {
            warn!(
                max_connections = self.max,
                open_file_limit = self.nofile,
                at = what,
                "proxied connection budget reached; closing new connections until some end"
            );
        }
        None
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn in_use(&self) -> u64 {
        self.used.load(Relaxed)
    }

    /// Connections closed at accept because the budget was spent, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }
}

/// One connection's share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Ticket(Arc<ConnBudget>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_follows_the_fd_limit() {
        assert_eq!(max_connections_for(20_000), (20_000 - 1024) / 6);
        assert_eq!(max_connections_for(1024), MIN_CONNECTIONS);
        assert_eq!(max_connections_for(0), MIN_CONNECTIONS);
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn tickets_are_refused_at_the_maximum_and_given_back() {
        let b = ConnBudget::new(2);
        let t1 = b.take("test").expect("first");
        let _t2 = b.take("test").expect("second");
        assert!(b.take("test").is_none());
        assert!(b.take("test").is_none());
        assert_eq!((b.in_use(), b.refused()), (2, 2));
        drop(t1);
        let t3 = b.take("test");
        assert!(t3.is_some());
        assert_eq!(b.in_use(), 2);
    }
}
