//! The desired-state store: one revisioned gateway document, an audit trail, and small
//! key/value metadata (address allocations, the hash of the last applied config file).
//!
//! [`SqliteStore`] is the embedded backend: one SQLite file under the state directory, WAL with
//! `synchronous = FULL`, so a write is on disk before [`Store::commit`] returns and kill -9 at any
//! moment loses nothing acknowledged. Other backends (etcd) implement the same [`Store`] trait.

mod audit;
mod sqlite;
pub use sqlite::now_rfc3339;

pub use audit::{AuditEntry, Change, diff};
pub use sqlite::SqliteStore;

use kawaii_model::Gateway;
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
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("stored document is unreadable: {0}")]
    Corrupt(String),
}

/// Who made a change and how, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Token name, `file:<path>`, or `system`.
    pub name: String,
    /// What was done, e.g. `PUT /v1/gateway`, `file reload`.
    pub action: String,
}

pub trait Store: Send + Sync + 'static {
    fn current(&self) -> Result<Snapshot, StoreError>;
    /// Replaces the desired state if `expected` (when given) is still the current revision.
    /// Returns the new revision; a document equal to the current one commits nothing and returns
    /// the current revision.
    fn commit(
        &self,
        expected: Option<u64>,
        gateway: &Gateway,
        actor: &Actor,
    ) -> Result<u64, StoreError>;
    /// The newest `limit` audit entries, newest first.
    fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Notified with the new revision after every commit.
    fn watch(&self) -> watch::Receiver<u64>;
}
