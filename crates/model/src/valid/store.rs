//! `[store]`: the audit trail's retention, an age and a count, both with defaults (90 days,
//! 100 000 entries).

use super::primitives::positive_duration;
use crate::error::Errors;
use crate::spec::Gateway;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSpec {
    pub audit_retention: Duration,
    pub audit_max_entries: usize,
}

impl Default for StoreSpec {
    fn default() -> Self {
        StoreSpec {
            audit_retention: Duration::from_secs(90 * 86400),
            audit_max_entries: 100_000,
        }
    }
}

pub(super) fn check_store(g: &Gateway, e: &mut Errors) -> Option<StoreSpec> {
    let d = StoreSpec::default();
    let Some(s) = &g.store else {
        return Some(d);
    };
    let retention = positive_duration(
        e,
        "store.audit_retention",
        &s.audit_retention,
        d.audit_retention,
    );
    let max = match s.audit_max_entries {
        None => Some(d.audit_max_entries),
        Some(0) => {
            e.push("store.audit_max_entries", "must be at least 1");
            None
        }
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    Some(StoreSpec {
        audit_retention: retention?,
        audit_max_entries: max?,
    })
}
