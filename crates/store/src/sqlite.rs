//! Embedded SQLite backend. Chosen over redb because operators can inspect and repair the file
//! with the ordinary `sqlite3` tool, and SQLite's crash safety under WAL + `synchronous=FULL` is
//! the most exercised there is (see docs/architecture.md).

use crate::audit::{AuditEntry, redacted_changes};
use crate::{Actor, Export, Snapshot, Store, StoreError, StoreHealth};
use kawaii_model::{Format, Gateway, Secret};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    notify: watch::Sender<u64>,
}

fn io(e: rusqlite::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) `DIR/kawaii.db`. The directory is made 0700 and its files
    /// 0600 (the database holds secrets in clear); SQLite gives its `-wal` and `-shm` files the
    /// database file's mode.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        crate::files::secure_dir(dir)?;
        let db = dir.join("kawaii.db");
        crate::files::create_private(&db)?;
        let conn = Connection::open(&db).map_err(io)?;
        let store = Self::init(conn)?;
        // The WAL and shm files exist now; a umask or an older version may have made them wider.
        crate::files::secure_dir(dir)?;
        Ok(store)
    }

    /// A store that lives in memory only (tests, `kawaii render`).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(io)?)
    }

    /// An in-memory store holding `gateway` as revision 1, committed as a first commit would
    /// be (rule ids and VPN addresses filled in) by the actor `seed`.
    pub fn in_memory_with(gateway: &Gateway) -> Result<SqliteStore, StoreError> {
        let store = Self::in_memory()?;
        let mut g = gateway.clone();
        g.prepare_commit(&Gateway::default());
        let actor = Actor {
            name: "seed".into(),
            action: "seed".into(),
        };
        store.commit(None, &g, &actor)?;
        Ok(store)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS state (
                 revision INTEGER PRIMARY KEY,
                 document TEXT NOT NULL,
                 at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS audit (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 at TEXT NOT NULL,
                 revision INTEGER NOT NULL,
                 actor TEXT NOT NULL,
                 action TEXT NOT NULL,
                 changes TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(io)?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            notify: watch::channel(0).0,
        };
        let rev = store.current()?.revision;
        store.notify.send_replace(rev);
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_current(conn: &Connection) -> Result<Snapshot, StoreError> {
    let row: Option<(u64, String)> = conn
        .query_row(
            "SELECT revision, document FROM state ORDER BY revision DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(io)?;
    match row {
        None => Ok(Snapshot {
            revision: 0,
            gateway: Gateway::default(),
        }),
        Some((revision, doc)) => {
            let gateway = Gateway::parse(&doc, Format::Json)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(Snapshot { revision, gateway })
        }
    }
}

/// RFC 3339 UTC timestamp, second precision, without a date crate.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as RFC 3339 UTC, second precision (the audit trail's `at`: these sort as the times do).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Store for SqliteStore {
    fn current(&self) -> Result<Snapshot, StoreError> {
        read_current(&self.lock())
    }

    fn commit(
        &self,
        expected: Option<u64>,
        gateway: &Gateway,
        actor: &Actor,
    ) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(io)?;
        let cur = read_current(&tx)?;
        if let Some(expected) = expected
            && expected != cur.revision
        {
            return Err(StoreError::Stale {
                expected,
                current: cur.revision,
            });
        }
        if cur.gateway == *gateway && cur.revision > 0 {
            return Ok(cur.revision);
        }
        let stored = Secret::reveal(|| serde_json::to_string(gateway))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let changes = redacted_changes(&cur.gateway, gateway);
        let changes =
            serde_json::to_string(&changes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let revision = cur.revision + 1;
        let at = now_rfc3339();
        tx.execute(
            "INSERT INTO state (revision, document, at) VALUES (?1, ?2, ?3)",
            params![revision, stored, at],
        )
        .map_err(io)?;
        // Keep a bounded history of full documents; the audit trail keeps every change.
        tx.execute(
            "DELETE FROM state WHERE revision <= ?1",
            params![revision.saturating_sub(100)],
        )
        .map_err(io)?;
        tx.execute(
            "INSERT INTO audit (at, revision, actor, action, changes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at, revision, actor.name, actor.action, changes],
        )
        .map_err(io)?;
        tx.commit().map_err(io)?;
        drop(conn);
        self.notify.send_replace(revision);
        Ok(revision)
    }

    fn prune_audit(&self, before: &str, keep: usize) -> Result<usize, StoreError> {
        let conn = self.lock();
        // The subquery is NULL (nothing matches) while there are at most `keep` entries.
        conn.execute(
            "DELETE FROM audit WHERE at < ?1 OR id <= \
             (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![before, i64::try_from(keep).unwrap_or(i64::MAX)],
        )
        .map_err(io)
    }

    fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id, at, revision, actor, action, changes FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(io)?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok((
                    r.get::<_, u64>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(io)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, revision, actor, action, changes) = row.map_err(io)?;
            let changes =
                serde_json::from_str(&changes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(AuditEntry {
                id,
                at,
                revision,
                actor,
                action,
                changes,
            });
        }
        Ok(out)
    }

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(io)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map(|_| ())
            .map_err(io)
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            backend: "sqlite".into(),
            up: true,
            seconds_since_sync: Some(0.0),
            error: None,
        }
    }

    fn export(&self) -> Result<Export, StoreError> {
        let snapshot = self.current()?;
        let mut audit = self.audit(usize::MAX >> 1)?;
        audit.reverse();
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT key, value FROM meta ORDER BY key")
            .map_err(io)?;
        let meta = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(io)?
            .collect::<Result<BTreeMap<String, String>, _>>()
            .map_err(io)?;
        Ok(Export {
            snapshot,
            audit,
            meta,
        })
    }

    fn import(&self, data: &Export, force: bool) -> Result<(), StoreError> {
        let stored = Secret::reveal(|| serde_json::to_string(&data.snapshot.gateway))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(io)?;
        let count = |table: &str| -> Result<u64, StoreError> {
            tx.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .map_err(io)
        };
        let (docs, entries) = (count("state")?, count("audit")?);
        if !force && (docs > 0 || entries > 0) {
            return Err(StoreError::NotEmpty(format!(
                "{docs} documents, {entries} audit entries"
            )));
        }
        tx.execute_batch("DELETE FROM state; DELETE FROM audit; DELETE FROM meta;")
            .map_err(io)?;
        if data.snapshot.revision > 0 {
            tx.execute(
                "INSERT INTO state (revision, document, at) VALUES (?1, ?2, ?3)",
                params![data.snapshot.revision, stored, now_rfc3339()],
            )
            .map_err(io)?;
        }
        for e in &data.audit {
            let changes = serde_json::to_string(&e.changes)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO audit (id, at, revision, actor, action, changes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.id, e.at, e.revision, e.actor, e.action, changes],
            )
            .map_err(io)?;
        }
        for (k, v) in &data.meta {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(io)?;
        }
        tx.commit().map_err(io)?;
        drop(conn);
        self.notify.send_replace(data.snapshot.revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kawaii_model::{Ipsec, Secret};

    fn actor() -> Actor {
        Actor {
            name: "ops".into(),
            action: "test".into(),
        }
    }

    fn with_psk(psk: &str) -> Gateway {
        let mut g = Gateway::default();
        g.ipsec.push(Ipsec {
            name: "ACME Office".into(),
            description: None,
            remote_peer: "198.51.100.8".into(),
            remote_subnet: "172.16.1.0/24".into(),
            pre_shared_key: Some(Secret::new(psk)),
            pre_shared_key_file: None,
            phase1_dh_group_number: 14,
            phase1_integrity_algorithm: "SHA512".into(),
            phase1_encryption_algorithm: "AES256".into(),
            phase2_dh_group_number: 14,
            phase2_integrity_algorithm: "SHA512".into(),
            phase2_encryption_algorithm: "AES256".into(),
            dpd_timeout: "240s".into(),
            dpd_action: "restart".into(),
            start_action: "start".into(),
            rekey: "1h".into(),
            phase1_lifetime: "4h".into(),
            phase2_lifetime: "1h30m".into(),
            ingress_rules: vec![],
            zone: None,
        });
        g
    }

    /// The oldest entries go: past the newest `keep`, or written before the cutoff.
    #[test]
    fn audit_pruning_keeps_the_newest_and_the_recent() {
        let s = SqliteStore::in_memory().expect("store");
        for i in 0..6 {
            s.commit(None, &with_psk(&format!("psk-number-{i}")), &actor())
                .expect("commit");
        }
        let revisions = |s: &SqliteStore| -> Vec<u64> {
            s.audit(100)
                .expect("audit")
                .iter()
                .map(|e| e.revision)
                .collect()
        };
        assert_eq!(revisions(&s), [6, 5, 4, 3, 2, 1]);
        let long_ago = rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(86400));
        assert_eq!(long_ago, "1970-01-02T00:00:00Z");
        assert_eq!(s.prune_audit(&long_ago, 100).expect("prune"), 0);
        assert_eq!(s.prune_audit(&long_ago, 4).expect("prune"), 2);
        assert_eq!(revisions(&s), [6, 5, 4, 3]);
        // Back-date two entries: the age rule takes them, the count rule is already met.
        s.lock()
            .execute(
                "UPDATE audit SET at = '2001-01-01T00:00:00Z' WHERE revision <= 4",
                [],
            )
            .expect("back-date");
        let cutoff = rfc3339(SystemTime::now() - std::time::Duration::from_secs(90 * 86400));
        assert_eq!(s.prune_audit(&cutoff, 100).expect("prune"), 2);
        assert_eq!(revisions(&s), [6, 5]);
        // The document and its revision are untouched; new entries keep coming.
        assert_eq!(s.current().expect("current").revision, 6);
        s.commit(None, &with_psk("psk-number-7"), &actor())
            .expect("commit");
        assert_eq!(revisions(&s), [7, 6, 5]);
    }

    #[test]
    fn revisions_secrets_and_audit_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = SqliteStore::open(dir.path()).expect("open");
            assert_eq!(s.current().expect("current").revision, 0);
            assert_eq!(
                s.commit(Some(0), &with_psk("first-secret"), &actor())
                    .expect("commit"),
                1
            );
            assert!(matches!(
                s.commit(Some(0), &with_psk("x-secret-2"), &actor()),
                Err(StoreError::Stale {
                    expected: 0,
                    current: 1
                })
            ));
            assert_eq!(
                s.commit(None, &with_psk("second-secret"), &actor())
                    .expect("commit"),
                2
            );
            // Same document: no new revision.
            assert_eq!(
                s.commit(None, &with_psk("second-secret"), &actor())
                    .expect("commit"),
                2
            );
        }
        let s = SqliteStore::open(dir.path()).expect("reopen");
        let cur = s.current().expect("current");
        assert_eq!(cur.revision, 2);
        assert_eq!(
            cur.gateway.ipsec[0]
                .pre_shared_key
                .as_ref()
                .map(Secret::expose),
            Some("second-secret")
        );
        let audit = s.audit(10).expect("audit");
        assert_eq!(audit.len(), 2);
        let text = serde_json::to_string(&audit).expect("json");
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(
            audit[0].changes[0].path,
            "ipsec[name=\"ACME Office\"].pre_shared_key"
        );
        assert!(now_rfc3339().starts_with("20"));
    }
}
