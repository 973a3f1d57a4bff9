//! Embedded SQLite backend. Chosen over redb because operators can inspect and repair the file
//! with the ordinary `sqlite3` tool, and SQLite's crash safety under WAL + `synchronous=FULL` is
//! the most exercised there is (see docs/architecture.md).

use crate::audit::{AuditEntry, redacted_changes};
use crate::schema::{self, DOCUMENT_FORMAT, SCHEMA};
use crate::{Actor, Export, Snapshot, Store, StoreError, StoreHealth};
use kawaii_model::{Format, Gateway, Secret};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tracing::info;

#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    notify: watch::Sender<u64>,
}

fn io(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Io(e.to_string()),
    }
}

/// An error opening the database, with the file it is about and what the operator can do.
fn opening(db: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!(
            "{}: {m}; move it away to start empty, or restore a copy (kawaii import)",
            db.display()
        )),
        StoreError::Io(m) => StoreError::Io(format!("{}: {m}", db.display())),
        StoreError::Full(m) => StoreError::Full(format!("{}: {m}", db.display())),
        other => other,
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `DIR/kawaii.db`. The directory is made 0700 and its files
    /// 0600 (the database holds secrets in clear); SQLite gives its `-wal` and `-shm` files the
    /// database file's mode. A store of an older schema is copied to
    /// `kawaii.db.schema-N.bak` and migrated; one of a newer schema is refused untouched.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        crate::files::secure_dir(dir)?;
        let db = dir.join("kawaii.db");
        crate::files::create_private(&db)?;
        let conn = Connection::open(&db).map_err(|e| opening(&db, io(e)))?;
        let store = Self::init(conn, Some(&db)).map_err(|e| opening(&db, e))?;
        // The WAL and shm files exist now; a umask or an older version may have made them wider.
        crate::files::secure_dir(dir)?;
        Ok(store)
    }

    /// A store that lives in memory only (tests, `kawaii render`).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(io)?, None)
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

    fn init(mut conn: Connection, file: Option<&Path>) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(Duration::from_secs(5)).map_err(io)?;
        let name = file.map_or_else(|| "the in-memory store".into(), |f| f.display().to_string());
        // Nothing is written before the schema is known to be ours or older.
        let found = schema_of(&conn)?;
        schema::check(found, &name)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(io)?;
        if found < SCHEMA {
            if let (Some(file), true) = (file, found > 0) {
                backup(&conn, file, found)?;
            }
            migrate(&mut conn, &name)?;
            if found > 0 {
                info!(store = %name, from = found, to = SCHEMA, "store schema migrated");
            }
        }
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

/// Schema 1, as the first release created it (no version recorded).
const BASE: &str = include_str!("sqlite-schema-1.sql");

/// `MIGRATIONS[i]` takes schema `i + 1` to `i + 2`. A new store is [`BASE`] and all of them,
/// so a new store and a migrated one are the same.
const MIGRATIONS: &[&str] = &[
    // 1 -> 2: each document records its format (rows written before are format 1).
    "ALTER TABLE state ADD COLUMN format INTEGER NOT NULL DEFAULT 1;",
];
const _: () = assert!(MIGRATIONS.len() as u32 + 1 == SCHEMA);

/// The recorded version (`PRAGMA user_version`); without one, 1 if the first layout's tables
/// are there, else 0 (an empty database).
fn schema_of(conn: &Connection) -> Result<u32, StoreError> {
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(io)?;
    if version > 0 {
        return Ok(version);
    }
    let tables: u32 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'state'",
            [],
            |r| r.get(0),
        )
        .map_err(io)?;
    Ok(u32::from(tables > 0))
}

/// A consistent copy of the whole store, `kawaii.db.schema-N.bak` (0600), kept after the
/// migration.
fn backup(conn: &Connection, file: &Path, found: u32) -> Result<(), StoreError> {
    let name = format!(
        "{}.schema-{found}.bak",
        file.file_name()
            .map_or("kawaii.db".into(), |n| n.to_string_lossy())
    );
    let copy = file.with_file_name(name);
    match std::fs::remove_file(&copy) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::Io(format!("{}: {e}", copy.display()))),
    }
    crate::files::create_private(&copy)?;
    let target = copy.to_string_lossy().into_owned();
    conn.execute("VACUUM INTO ?1", params![target])
        .map_err(io)?;
    info!(backup = %copy.display(), schema = found, "store copied before its migration");
    Ok(())
}

/// Brings the store to [`SCHEMA`] in one transaction (all migrations and the new version, or
/// nothing).
fn migrate(conn: &mut Connection, name: &str) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(io)?;
    // Read again under the write lock: another process may have got there first.
    let found = schema_of(&tx)?;
    schema::check(found, name)?;
    if found == SCHEMA {
        return Ok(());
    }
    if found == 0 {
        tx.execute_batch(BASE).map_err(io)?;
    }
    for step in &MIGRATIONS[found.max(1) as usize - 1..] {
        tx.execute_batch(step).map_err(io)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA).map_err(io)?;
    tx.commit().map_err(io)
}

fn read_current(conn: &Connection) -> Result<Snapshot, StoreError> {
    let row: Option<(u64, String, u32)> = conn
        .query_row(
            "SELECT revision, document, format FROM state ORDER BY revision DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(io)?;
    match row {
        None => Ok(Snapshot {
            revision: 0,
            gateway: Gateway::default(),
        }),
        Some((revision, doc, format)) => {
            schema::check_document(format)?;
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

const SET_META: &str =
    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2";

impl Store for SqliteStore {
    fn current(&self) -> Result<Snapshot, StoreError> {
        read_current(&self.lock())
    }

    fn commit_with_meta(
        &self,
        expected: Option<u64>,
        gateway: &Gateway,
        actor: &Actor,
        meta: &[(&str, &str)],
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
        for (key, value) in meta {
            tx.execute(SET_META, params![key, value]).map_err(io)?;
        }
        if cur.gateway == *gateway && cur.revision > 0 {
            tx.commit().map_err(io)?;
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
            "INSERT INTO state (revision, document, at, format) VALUES (?1, ?2, ?3, ?4)",
            params![revision, stored, at, DOCUMENT_FORMAT],
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
            .execute(SET_META, params![key, value])
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
                "INSERT INTO state (revision, document, at, format) VALUES (?1, ?2, ?3, ?4)",
                params![
                    data.snapshot.revision,
                    stored,
                    now_rfc3339(),
                    DOCUMENT_FORMAT
                ],
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
            local_alias: None,
            remote_alias: None,
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

    fn sha(path: &Path) -> Vec<u8> {
        std::fs::read(path).expect("read store file")
    }

    /// Migration 1 -> 2: a store written by the first release (its exact DDL, a document and an
    /// audit entry in it) opens with everything kept, a backup copy beside it, and takes new
    /// revisions in the new schema.
    #[test]
    fn migrates_schema_1_with_a_backup_in_one_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("kawaii.db");
        {
            let conn = Connection::open(&db).expect("create a schema-1 store");
            // As the first release opened it: WAL, then its tables.
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
                .expect("wal");
            conn.execute_batch(BASE).expect("schema 1");
            let doc =
                Secret::reveal(|| serde_json::to_string(&with_psk("old-secret"))).expect("json");
            conn.execute(
                "INSERT INTO state (revision, document, at) VALUES (7, ?1, '2026-01-01T00:00:00Z')",
                params![doc],
            )
            .expect("document");
            conn.execute(
                "INSERT INTO audit (at, revision, actor, action, changes) VALUES ('2026-01-01T00:00:00Z', 7, 'ops', 'PUT /v1/gateway', '[]')",
                [],
            )
            .expect("audit");
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('file_sha256', 'abc')",
                [],
            )
            .expect("meta");
        }
        let s = SqliteStore::open(dir.path()).expect("open migrates");
        let cur = s.current().expect("current");
        assert_eq!(cur.revision, 7);
        assert_eq!(cur.gateway, with_psk("old-secret"));
        assert_eq!(s.audit(10).expect("audit").len(), 1);
        assert_eq!(
            s.get_meta("file_sha256").expect("meta").as_deref(),
            Some("abc")
        );
        assert_eq!(
            s.commit(Some(7), &with_psk("new-secret"), &actor())
                .expect("commit"),
            8
        );
        let (version, format): (u32, u32) = {
            let conn = s.lock();
            (
                conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .expect("version"),
                conn.query_row("SELECT format FROM state WHERE revision = 8", [], |r| {
                    r.get(0)
                })
                .expect("format"),
            )
        };
        assert_eq!((version, format), (SCHEMA, DOCUMENT_FORMAT));
        // The backup is the old store, private, readable by the old layout.
        let bak = dir.path().join("kawaii.db.schema-1.bak");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&bak)
            .expect("backup kept")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let old = Connection::open(&bak).expect("open backup");
        let rev: u64 = old
            .query_row("SELECT MAX(revision) FROM state", [], |r| r.get(0))
            .expect("backup revision");
        let version: u32 = old
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("v");
        assert_eq!((rev, version), (7, 0));
        drop(s);
        // Opening again migrates nothing and takes no new backup.
        std::fs::remove_file(&bak).expect("remove backup");
        let s = SqliteStore::open(dir.path()).expect("reopen");
        assert_eq!(s.current().expect("current").revision, 8);
        assert!(!bak.exists());
    }

    /// A store of a newer schema (a later kawaii wrote it) is refused, and its file is left
    /// byte for byte as it was.
    #[test]
    fn refuses_a_newer_schema_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = SqliteStore::open(dir.path()).expect("open");
            s.commit(None, &with_psk("k-secret"), &actor())
                .expect("commit");
        }
        let db = dir.path().join("kawaii.db");
        {
            let conn = Connection::open(&db).expect("open");
            conn.pragma_update(None, "user_version", SCHEMA + 1)
                .expect("bump");
            conn.execute("ALTER TABLE state ADD COLUMN later TEXT", [])
                .expect("later column");
        }
        let before = sha(&db);
        let e = SqliteStore::open(dir.path()).expect_err("newer schema refused");
        assert!(
            matches!(e, StoreError::TooNew { found, supported: SCHEMA, .. } if found == SCHEMA + 1),
            "{e}"
        );
        assert!(e.to_string().contains(&db.display().to_string()), "{e}");
        assert_eq!(sha(&db), before, "the refused store was changed");
        let baks = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bak"))
            .count();
        assert_eq!(baks, 0);
    }

    #[test]
    fn a_new_store_is_the_same_as_a_migrated_one() {
        let fresh = SqliteStore::in_memory().expect("fresh");
        let conn = Connection::open_in_memory().expect("old");
        conn.execute_batch(BASE).expect("schema 1");
        let migrated = SqliteStore::init(conn, None).expect("migrated");
        // Tables and their columns (the stored DDL text keeps each file's whitespace).
        let ddl = |s: &SqliteStore| -> Vec<String> {
            let conn = s.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT m.name, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk
                     FROM sqlite_master m JOIN pragma_table_info(m.name) p
                     WHERE m.type = 'table' ORDER BY m.name, p.cid",
                )
                .expect("prepare");
            stmt.query_map([], |r| {
                Ok(format!(
                    "{}.{} {} {} {:?} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?
                ))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
        };
        assert!(ddl(&fresh).iter().any(|c| c.starts_with("state.format ")));
        assert_eq!(ddl(&fresh), ddl(&migrated));
    }
}
