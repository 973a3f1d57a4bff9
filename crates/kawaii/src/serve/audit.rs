//! Prunes the audit trail to `[store]`'s retention (an age and a count) at start and hourly.
//! Several instances sharing an etcd store may all prune: deleting what is gone is a no-op.

use super::app::App;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

const EVERY: Duration = Duration::from_secs(3600);

pub async fn prune(app: Arc<App>, stop: CancellationToken) {
    loop {
        let spec = app
            .store
            .current()
            .ok()
            .and_then(|s| kawaii_model::validate(&s.gateway).ok())
            .map(|r| r.desired.store)
            .unwrap_or_default();
        let before = SystemTime::now()
            .checked_sub(spec.audit_retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let store = app.store.clone();
        let done = tokio::task::spawn_blocking(move || {
            store.prune_audit(&kawaii_store::rfc3339(before), spec.audit_max_entries)
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(
                pruned = n,
                retention_s = spec.audit_retention.as_secs(),
                max_entries = spec.audit_max_entries,
                "audit trail pruned"
            ),
            Ok(Err(error)) => warn!(%error, "audit trail not pruned; trying again later"),
            Err(error) => warn!(%error, "audit pruning panicked"),
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}
