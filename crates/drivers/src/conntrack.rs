//! The connection-tracking table of this network namespace: its fill read from
//! `/proc/sys/net/netfilter`, and the guard that tells the planner when flows opened from the
//! public side have used up their share ([`kawaii_plan::flood::pressure`] decides, with
//! hysteresis). The guard is watched every second; a change wakes the reconcile loop.

use crate::{Changed, DriverError};
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
/// How often the table's fill is read.
pub const WATCH: Duration = Duration::from_secs(1);

/// Entries in the table and its size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Fill {
    pub count: u64,
    pub max: u64,
}

/// Reads the table's fill; None when conntrack is not loaded (nothing tracked yet).
pub fn read() -> Result<Option<Fill>, DriverError> {
    let num = |path: &str| -> Result<Option<u64>, DriverError> {
        match std::fs::read_to_string(path) {
            Ok(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| DriverError::transient_from(path.to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DriverError::transient_from(path.to_string(), e)),
        }
    };
    Ok(match (num(COUNT)?, num(MAX)?) {
        (Some(count), Some(max)) => Some(Fill { count, max }),
        _ => None,
    })
}

/// What `/v1/status` shows under `details.conntrack`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GuardStatus {
    pub count: u64,
    pub max: u64,
    /// `count / max`, 0..=1.
    pub fill: f64,
    /// Flows from the public side the table may hold before new ones are dropped.
    pub public_cap: u64,
    /// New flows from the public side are being dropped.
    pub engaged: bool,
}

/// The guard's state, shared by the watcher, the reconcile loop and the metrics.
#[derive(Debug, Default)]
pub struct Guard {
    /// The public side's share as a percentage of the table (from the desired state; 0: none
    /// planned yet).
    percent: AtomicU64,
    /// The configured table size, when `[ingress] conntrack_max` sets one.
    configured_max: AtomicU64,
    engaged: AtomicBool,
    last: Mutex<Fill>,
}

impl Guard {
    /// The desired state's share and table size (each reconcile pass).
    pub fn configure(&self, percent: u8, configured_max: Option<u32>) {
        self.percent.store(u64::from(percent), Relaxed);
        self.configured_max
            .store(configured_max.map_or(0, u64::from), Relaxed);
    }

    pub fn engaged(&self) -> bool {
        self.engaged.load(Relaxed)
    }

    fn cap(&self, fill: Fill) -> u64 {
        // A configured size is what the kernel was told (where it could be set).
        let max = match self.configured_max.load(Relaxed) {
            0 => fill.max,
            n => n,
        };
        (max * self.percent.load(Relaxed) / 100).max(1)
    }

    pub fn status(&self) -> GuardStatus {
        let fill = self.last.lock().map(|f| *f).unwrap_or_default();
        GuardStatus {
            count: fill.count,
            max: fill.max,
            fill: if fill.max == 0 {
                0.0
            } else {
                fill.count as f64 / fill.max as f64
            },
            public_cap: if fill.max == 0 { 0 } else { self.cap(fill) },
            engaged: self.engaged(),
        }
    }

    /// One reading: updates the fill and the guard; true when the guard changed.
    pub fn observe(&self, fill: Fill) -> bool {
        if let Ok(mut l) = self.last.lock() {
            *l = fill;
        }
        if self.percent.load(Relaxed) == 0 {
            return false;
        }
        let was = self.engaged();
        let now = kawaii_plan::flood::pressure(was, fill.count, self.cap(fill));
        self.engaged.store(now, Relaxed);
        now != was
    }

    /// Reads the table every [`WATCH`] until `stop`; `changed` is called when the guard
    /// engages or releases.
    pub async fn watch(&self, stop: CancellationToken, changed: Changed) {
        loop {
            match read() {
                Ok(Some(fill)) => {
                    if self.observe(fill) {
                        tracing::warn!(
                            count = fill.count,
                            max = fill.max,
                            engaged = self.engaged(),
                            "conntrack guard changed"
                        );
                        changed();
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "reading the conntrack table's fill"),
            }
            tokio::select! {
                _ = tokio::time::sleep(WATCH) => {}
                _ = stop.cancelled() => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of_100(count: u64) -> Fill {
        Fill { count, max: 100 }
    }

    #[test]
    fn the_guard_engages_at_the_public_share_and_releases_below_it() {
        let g = Guard::default();
        // Nothing planned yet: never engaged.
        assert!(!g.observe(of_100(99)));
        g.configure(50, None);
        assert!(!g.observe(of_100(49)));
        assert!(g.observe(of_100(50)));
        assert!(g.engaged());
        // Hysteresis: it stays engaged until the table drains below 90 % of the cap.
        assert!(!g.observe(of_100(46)));
        assert!(g.observe(of_100(44)));
        assert!(!g.engaged());
        let s = g.status();
        assert_eq!((s.count, s.max, s.public_cap), (44, 100, 50));
        // A configured size smaller than the kernel's is what the share is taken of.
        g.configure(50, Some(40));
        assert_eq!(g.status().public_cap, 20);
    }
}
