//! The desired-state store: one revisioned gateway document, an audit trail, and small
//! key/value metadata (address allocations, the hash of the last applied config file).
//!
//! [`SqliteStore`] is the embedded backend: one SQLite file under the state directory, WAL with
//! `synchronous = FULL`, so a write is on disk before [`Store::commit`] returns and kill -9 at any
//! moment loses nothing acknowledged. [`EtcdStore`] lets every zone instance of a gateway share
//! one document, one revision and one audit trail; it answers reads from memory and keeps the
//! last state it saw in the state directory, so the data plane never waits for etcd.

mod audit;
mod etcd;
pub mod files;
pub mod schema;
mod sqlite;
pub use sqlite::{now_rfc3339, rfc3339};

pub use audit::{AuditEntry, Change, diff, redacted_changes};
pub use etcd::{EtcdOptions, EtcdStore, EtcdTls};
pub use sqlite::SqliteStore;

use kawaii_model::Gateway;
use std::collections::BTreeMap;
use tokio::sync::watch;

/// The current desired state and its revision (0: nothing committed yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub revision: u64,
    pub gateway: Gateway,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller's expected revision is not the current one (optimistic concurrency).
    #[error("revision {expected} is stale; the current revision is {current}")]
    Stale { expected: u64, current: u64 },
    /// The store cannot be reached (etcd down, partitioned, without quorum); nothing changed,
    /// or the outcome is unknown and the write was not acknowledged.
    #[error("store unreachable: {0}")]
    Unavailable(String),
    /// `import` into a store that already holds a document or an audit trail.
    #[error("the target store is not empty ({0}); use --force to overwrite it")]
    NotEmpty(String),
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("stored document is unreadable: {0}")]
    Corrupt(String),
    /// The disk (or the etcd quota) is full: the write was rolled back, nothing changed.
    #[error("no space left for the write: {0}")]
    Full(String),
    /// The store was written by a newer kawaii; it was left as it is.
    #[error(
        "{store} has schema {found}, written by a newer kawaii; this kawaii {} reads up to schema {supported}. Upgrade kawaii, or restore the backup the upgrade kept; nothing was changed",
        env!("CARGO_PKG_VERSION")
    )]
    TooNew {
        store: String,
        found: u32,
        supported: u32,
    },
}

/// Who made a change and how, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Token name, `file:<path>`, or `system`.
    pub name: String,
    /// What was done, e.g. `PUT /v1/gateway`, `file reload`.
    pub action: String,
}

/// Whether this instance is in touch with its store, and how stale its copy may be.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct StoreHealth {
    /// `sqlite` or `etcd`.
    pub backend: String,
    pub up: bool,
    /// Seconds since this instance last confirmed it holds the store's current revision
    /// (always 0 for the embedded store; none: not once since it started).
    pub seconds_since_sync: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything a store holds, for `kawaii store copy`.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub snapshot: Snapshot,
    /// Oldest first.
    pub audit: Vec<AuditEntry>,
    pub meta: BTreeMap<String, String>,
}

pub trait Store: Send + Sync + 'static {
    /// The desired state this instance holds (for etcd: the last one it synced; never blocks
    /// on the network).
    fn current(&self) -> Result<Snapshot, StoreError>;
    /// The store's current state, read through to the shared store (what a write bases on).
    fn latest(&self) -> Result<Snapshot, StoreError> {
        self.current()
    }
    /// Replaces the desired state if `expected` (when given) is still the current revision.
    /// Returns the new revision; a document equal to the current one commits nothing and returns
    /// the current revision.
    fn commit(
        &self,
        expected: Option<u64>,
        gateway: &Gateway,
        actor: &Actor,
    ) -> Result<u64, StoreError> {
        self.commit_with_meta(expected, gateway, actor, &[])
    }
    /// [`Store::commit`] and metadata writes that belong to it (the config file's hash), in one
    /// transaction: both land or neither does. The metadata is written even when the document
    /// is unchanged.
    fn commit_with_meta(
        &self,
        expected: Option<u64>,
        gateway: &Gateway,
        actor: &Actor,
        meta: &[(&str, &str)],
    ) -> Result<u64, StoreError>;
    /// The newest `limit` audit entries, newest first.
    fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Deletes the audit entries written before `before` (RFC 3339 UTC, see [`rfc3339`]) and
    /// all but the newest `keep`; returns how many it deleted.
    fn prune_audit(&self, before: &str, keep: usize) -> Result<usize, StoreError>;
    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Notified with the new revision after every commit (for etcd: every revision synced,
    /// whichever instance wrote it).
    fn watch(&self) -> watch::Receiver<u64>;
    fn health(&self) -> StoreHealth;
    /// The document, the whole audit trail and the metadata.
    fn export(&self) -> Result<Export, StoreError>;
    /// Replaces everything with `data` (revision and audit ids kept). Refuses a store that holds
    /// a document or an audit entry unless `force`.
    fn import(&self, data: &Export, force: bool) -> Result<(), StoreError>;
}
