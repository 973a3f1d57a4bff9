//! etcd backend: the instances of one gateway share one document, one revision, one audit trail
//! and the metadata, under one key prefix:
//!
//! ```text
//! PREFIX/document          the gateway document (JSON, secrets in clear: protect the prefix)
//! PREFIX/revision          the document's revision, "1", "2", ... (what If-Match compares)
//! PREFIX/audit/<rev:020>   one audit entry per revision, written in the same transaction
//! PREFIX/meta/<key>        metadata (the config file's hash)
//! PREFIX/schema            the schema version (`schema.rs`); none: schema 1, or an empty store
//! PREFIX/backup/schema-N/  document and revision as they were before migrating from schema N
//! ```
//!
//! Reads never wait for etcd: a task on the store's own runtime keeps the last state in memory
//! (and in `STATE/etcd-cache.json`, 0600, so a restart during an outage comes up with it). It
//! reads everything, then watches the prefix from the next etcd revision with require-leader;
//! on any error, cancel or compaction it reads everything again (never resuming from a progress
//! notification), and a linearizable read every second proves the member is still in the
//! cluster. Writes are one transaction that compares the revision key. Every call is bounded:
//! an unreachable store answers [`StoreError::Unavailable`] within [`CALL_TIMEOUT`].

use crate::audit::{AuditEntry, redacted_changes};
use crate::schema::{self, SCHEMA};
use crate::{Actor, Export, Snapshot, Store, StoreError, StoreHealth, files, now_rfc3339};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchResponse,
};
use kawaii_model::{Format, Gateway, Secret};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// The longest one store call may take; two of them (read, then commit) fit in the 5 s an API
/// write may take to answer 503.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(2400);
/// How often the sync task proves, with a linearizable read, that it is still in touch.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const CACHE_FILE: &str = "etcd-cache.json";
/// etcd's default `--max-txn-ops` is 128; imports write the audit trail in chunks below it.
const IMPORT_CHUNK: usize = 100;

/// TLS material for `etcds://` (PEM).
#[derive(Clone)]
pub struct EtcdTls {
    pub ca: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Secret>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca.is_some())
            .field("cert", &self.cert.is_some())
            .field(
                "key",
                &self.key.as_ref().map(|_| kawaii_model::secret::REDACTED),
            )
            .finish()
    }
}

/// Where the shared state lives.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `http://HOST:PORT` or `https://HOST:PORT`; tried in order, the next one after a failure.
    pub endpoints: Vec<String>,
    /// The gateway's key prefix, e.g. `/kawaii/acme` (no trailing slash).
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// etcd user and password (its `Secret` redacts it everywhere).
    pub user: Option<(String, Secret)>,
    /// Where the last synced state is cached (`None`: no cache, e.g. `kawaii store copy`).
    pub state_dir: Option<PathBuf>,
}

struct Keys {
    root: String,
    document: String,
    revision: String,
    audit: String,
    meta: String,
    schema: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        let root = format!("{}/", prefix.trim_end_matches('/'));
        Keys {
            document: format!("{root}document"),
            revision: format!("{root}revision"),
            audit: format!("{root}audit/"),
            meta: format!("{root}meta/"),
            schema: format!("{root}schema"),
            root,
        }
    }
}

#[derive(Debug, Clone)]
struct Cached {
    snap: Snapshot,
    /// The etcd revision this state was read at (orders concurrent updates).
    etcd_rev: i64,
    meta: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Health {
    up: bool,
    last_sync: Option<Instant>,
    error: Option<String>,
}

#[derive(Default)]
struct Conn {
    endpoint: usize,
    generation: u64,
    client: Option<Client>,
}

struct Inner {
    opts: EtcdOptions,
    keys: Keys,
    state: RwLock<Cached>,
    notify: watch::Sender<u64>,
    conn: tokio::sync::Mutex<Conn>,
    health: Mutex<Health>,
}

/// The etcd-backed [`Store`]; see the module doc.
pub struct EtcdStore {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.opts.endpoints)
            .field("prefix", &self.inner.opts.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// When a read replaces the installed state.
#[derive(Clone, Copy)]
enum Install {
    /// Only when it is newer (watch events, commits, routine reads).
    IfNewer,
    /// Also when it is as new (a full re-read after the watch broke), never when older.
    UnlessOlder,
    /// Whatever is installed (a second read confirmed that etcd itself went back).
    Always,
}

/// The cache file's content.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheFile {
    revision: u64,
    etcd_revision: i64,
    document: serde_json::Value,
    meta: BTreeMap<String, String>,
}

impl EtcdStore {
    /// Connects and reads the current state (within [`CALL_TIMEOUT`]). If etcd cannot be
    /// reached, the state cached in `state_dir` is used, and without one this fails.
    pub fn open(opts: EtcdOptions) -> Result<EtcdStore, StoreError> {
        if opts.endpoints.is_empty() {
            return Err(StoreError::Io("no etcd endpoint given".into()));
        }
        if let Some(dir) = &opts.state_dir {
            files::secure_dir(dir)?;
        }
        let cached = opts
            .state_dir
            .as_ref()
            .and_then(|d| load_cache(&d.join(CACHE_FILE)));
        let had_cache = cached.is_some();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kawaii-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("starting the etcd runtime: {e}")))?;
        let cached = cached.unwrap_or(Cached {
            snap: Snapshot {
                revision: 0,
                gateway: Gateway::default(),
            },
            etcd_rev: 0,
            meta: BTreeMap::new(),
        });
        let inner = Arc::new(Inner {
            keys: Keys::new(&opts.prefix),
            notify: watch::channel(cached.snap.revision).0,
            state: RwLock::new(cached),
            opts,
            conn: tokio::sync::Mutex::new(Conn::default()),
            health: Mutex::new(Health::default()),
        });
        let store = EtcdStore {
            inner: inner.clone(),
            rt: Some(rt),
        };
        // Every endpoint gets one chance before the cache is used.
        let mut first = Err(StoreError::Unavailable("no endpoint tried".into()));
        for _ in 0..inner.opts.endpoints.len() {
            let i = inner.clone();
            first = store.call(async move { i.full_read(true).await });
            if first.is_ok() {
                break;
            }
        }
        let connected = first.is_ok();
        match first {
            Ok(snap) => info!(
                endpoints = ?inner.opts.endpoints,
                prefix = %inner.opts.prefix,
                revision = snap.revision,
                "etcd store connected"
            ),
            Err(e) if had_cache => {
                warn!(%e, revision = inner.snapshot().revision, "etcd unreachable; running the cached state until it answers");
                inner.set_down(&e);
            }
            Err(e) => return Err(e),
        }
        if connected {
            let i = inner.clone();
            store.call(async move { i.ensure_schema().await })?;
        }
        if let Some(rt) = &store.rt {
            rt.spawn(inner.sync_loop());
        }
        Ok(store)
    }

    /// Runs `f` on the store's runtime and waits for it, at most [`CALL_TIMEOUT`] (plus a
    /// margin). Safe to call from any thread, including a tokio worker (it only blocks it).
    fn call<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(rt) = &self.rt else {
            return Err(StoreError::Unavailable("store closed".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let r = tokio::time::timeout(CALL_TIMEOUT, f)
                .await
                .unwrap_or_else(|_| Err(unavailable("etcd", "no answer in time")));
            let _ = tx.send(r);
        });
        rx.recv_timeout(CALL_TIMEOUT + Duration::from_millis(500))
            .unwrap_or_else(|_| Err(unavailable("etcd", "no answer in time")))
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio refuses inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn load_cache(path: &std::path::Path) -> Option<Cached> {
    let text = std::fs::read_to_string(path).ok()?;
    let file: CacheFile = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            warn!(path = %path.display(), %e, "etcd cache unreadable; ignored");
            return None;
        }
    };
    let gateway = match Gateway::parse(&file.document.to_string(), Format::Json) {
        Ok(g) => g,
        Err(e) => {
            warn!(path = %path.display(), %e, "etcd cache holds an invalid document; ignored");
            return None;
        }
    };
    Some(Cached {
        snap: Snapshot {
            revision: file.revision,
            gateway,
        },
        etcd_rev: file.etcd_revision,
        meta: file.meta,
    })
}

/// What a read transaction returned: the document (revision 0 when there is none), the
/// metadata, and the store's schema (None: an empty store). A store a newer kawaii migrated is
/// refused before its document is read: it may be in a layout this build does not know.
fn parse_read(keys: &Keys, ops: &[TxnOpResponse]) -> Result<Read, StoreError> {
    let (mut doc, mut revision, mut schema_value) = (None, None, None);
    let mut meta = BTreeMap::new();
    for op in ops {
        let TxnOpResponse::Get(get) = op else {
            continue;
        };
        for kv in get.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let value = std::str::from_utf8(kv.value()).map_err(corrupt)?;
            if key == keys.document {
                doc = Some(value);
            } else if key == keys.revision {
                revision = Some(value.parse::<u64>().map_err(corrupt)?);
            } else if key == keys.schema {
                schema_value = Some(value.as_bytes());
            } else if let Some(k) = key.strip_prefix(&keys.meta) {
                meta.insert(k.to_string(), value.to_string());
            }
        }
    }
    let schema = schema_found(keys, schema_value, revision.is_some())?;
    let revision = revision.unwrap_or(0);
    let gateway = match doc {
        Some(d) => Gateway::parse(d, Format::Json).map_err(corrupt)?,
        None if revision == 0 => Gateway::default(),
        None => return Err(corrupt(format!("revision {revision} has no document"))),
    };
    Ok(Read {
        snap: Snapshot { revision, gateway },
        meta,
        schema,
    })
}

/// What [`parse_read`] found.
struct Read {
    snap: Snapshot,
    meta: BTreeMap<String, String>,
    /// None: an empty store.
    schema: Option<u32>,
}

/// The schema of a store whose `schema` key holds `value` (none: schema 1 when the store holds
/// a revision, else an empty store), refused when a newer kawaii wrote it.
fn schema_found(
    keys: &Keys,
    value: Option<&[u8]>,
    has_revision: bool,
) -> Result<Option<u32>, StoreError> {
    let found = match value {
        Some(v) => Some(
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| corrupt(format!("{} is not a number", keys.schema)))?,
        ),
        None => has_revision.then_some(1),
    };
    if let Some(f) = found {
        schema::check(f, &format!("etcd prefix {}", keys.root))?;
    }
    Ok(found)
}

/// A write refused because the store's schema is no longer the one this build writes (and not
/// a newer one, which is [`StoreError::TooNew`]): its schema key went, or an older layout was
/// restored from a backup.
fn schema_changed(keys: &Keys, found: Option<u32>) -> StoreError {
    let found = found.map_or_else(|| "no schema".to_string(), |f| format!("schema {f}"));
    StoreError::Unavailable(format!(
        "etcd prefix {} has {found}, not the schema {SCHEMA} this instance opened it at (restored from a backup?); restart kawaii to migrate it. Nothing was changed",
        keys.root
    ))
}

fn header_rev(r: &TxnResponse) -> i64 {
    r.header().map(|h| h.revision()).unwrap_or(0)
}

/// Why the sync task went back to a full read.
enum Resync {
    /// The store cannot be reached or answered an error.
    Down(StoreError),
    /// The watch ended for a reason that needs no backoff (compaction).
    Again(String),
}

impl Inner {
    fn snapshot(&self) -> Snapshot {
        self.state
            .read()
            .map(|s| s.snap.clone())
            .unwrap_or_else(|p| p.into_inner().snap.clone())
    }

    fn cached(&self) -> Cached {
        self.state
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn read_txn(&self) -> Vec<TxnOp> {
        vec![
            TxnOp::get(self.keys.schema.as_str(), None),
            TxnOp::get(self.keys.document.as_str(), None),
            TxnOp::get(self.keys.revision.as_str(), None),
            TxnOp::get(
                self.keys.meta.as_str(),
                Some(GetOptions::new().with_prefix()),
            ),
        ]
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some((user, password)) = &self.opts.user {
            o = o.with_user(user.clone(), password.expose().to_string());
        }
        if let Some(tls) = &self.opts.tls {
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(ca.clone()));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                t = t.identity(etcd_client::Identity::from_pem(
                    cert.clone(),
                    key.expose().as_bytes(),
                ));
            }
            o = o.with_tls(t);
        }
        o
    }

    /// The client for the current endpoint (connecting if needed) and its generation.
    async fn client(&self) -> Result<(u64, Client), StoreError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = &conn.client {
            return Ok((conn.generation, c.clone()));
        }
        let ep = self.opts.endpoints[conn.endpoint % self.opts.endpoints.len()].clone();
        let client = match tokio::time::timeout(
            CALL_TIMEOUT,
            Client::connect([ep.as_str()], Some(self.connect_options())),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                conn.endpoint += 1;
                return Err(unavailable(&ep, e));
            }
            Err(_) => {
                conn.endpoint += 1;
                return Err(unavailable(&ep, "connect timed out"));
            }
        };
        conn.generation += 1;
        conn.client = Some(client.clone());
        Ok((conn.generation, client))
    }

    /// The client of `generation` failed: the next call connects to the next endpoint.
    async fn failed(&self, generation: u64) {
        let mut conn = self.conn.lock().await;
        if conn.generation == generation && conn.client.is_some() {
            conn.client = None;
            conn.endpoint += 1;
        }
    }

    /// Runs one transaction; a transport error or timeout marks the client failed.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let (generation, mut client) = self.client().await?;
        match tokio::time::timeout(CALL_TIMEOUT, client.txn(txn)).await {
            Ok(Ok(r)) => Ok(r),
            // Over its space quota etcd refuses writes (NOSPACE alarm) until it is compacted
            // and defragmented: the write is not applied, and the client is healthy.
            Ok(Err(e)) if e.to_string().contains("database space exceeded") => {
                Err(StoreError::Full(format!("etcd: {e}")))
            }
            Ok(Err(e)) => {
                self.failed(generation).await;
                Err(unavailable("etcd", e))
            }
            Err(_) => {
                self.failed(generation).await;
                Err(unavailable("etcd", "no answer in time"))
            }
        }
    }

    fn set_down(&self, e: &StoreError) {
        if let Ok(mut h) = self.health.lock() {
            if h.up {
                warn!(%e, "etcd store down; the last synced state stays in force");
            }
            h.up = false;
            h.error = Some(e.to_string());
        }
    }

    fn synced(&self) {
        if let Ok(mut h) = self.health.lock() {
            if !h.up {
                info!("etcd store up");
            }
            h.up = true;
            h.error = None;
            h.last_sync = Some(Instant::now());
        }
    }

    /// Installs a state read at `etcd_rev` as `how` allows; false when it was older than the
    /// installed one and left out. Wakes watchers when the revision changed and refreshes the
    /// cache file.
    fn install(
        &self,
        snap: Snapshot,
        etcd_rev: i64,
        meta: BTreeMap<String, String>,
        how: Install,
    ) -> bool {
        let changed = {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            let skip = match how {
                Install::IfNewer => etcd_rev <= st.etcd_rev,
                Install::UnlessOlder => etcd_rev < st.etcd_rev,
                Install::Always => false,
            };
            if skip {
                return etcd_rev >= st.etcd_rev;
            }
            let changed = st.snap != snap || st.meta != meta;
            *st = Cached {
                snap,
                etcd_rev,
                meta,
            };
            changed
        };
        if changed {
            let cached = self.cached();
            let rev = cached.snap.revision;
            self.notify.send_if_modified(|r| {
                let differs = *r != rev;
                *r = rev;
                differs
            });
            self.write_cache(&cached);
        }
        true
    }

    fn write_cache(&self, c: &Cached) {
        let Some(dir) = &self.opts.state_dir else {
            return;
        };
        let document = match Secret::reveal(|| serde_json::to_value(&c.snap.gateway)) {
            Ok(d) => d,
            Err(e) => {
                warn!(%e, "cannot serialize the document for the etcd cache");
                return;
            }
        };
        let file = CacheFile {
            revision: c.snap.revision,
            etcd_revision: c.etcd_rev,
            document,
            meta: c.meta.clone(),
        };
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        if let Err(e) = files::write_private(&dir.join(CACHE_FILE), &bytes) {
            warn!(%e, "cannot write the etcd cache; a restart during an outage would start empty");
        }
    }

    /// Reads document, revision and metadata in one transaction and installs them.
    async fn full_read(&self, force: bool) -> Result<Snapshot, StoreError> {
        let r = self.txn(Txn::new().and_then(self.read_txn())).await?;
        let Read { snap, meta, .. } = parse_read(&self.keys, r.op_responses().as_slice())?;
        let how = if force {
            Install::UnlessOlder
        } else {
            Install::IfNewer
        };
        if !self.install(snap, header_rev(&r), meta, how) && force {
            // A commit of ours was installed after this read was answered. Read again: a read
            // issued after it that is still older means etcd itself went back (restored from
            // a backup, replaced), and then it is the truth.
            let r = self.txn(Txn::new().and_then(self.read_txn())).await?;
            let Read { snap, meta, .. } = parse_read(&self.keys, r.op_responses().as_slice())?;
            self.install(snap, header_rev(&r), meta, Install::Always);
        }
        self.synced();
        Ok(self.snapshot())
    }

    /// Refuses a store of a newer schema (writing nothing); migrates an older one in one
    /// transaction that also keeps a backup copy of the document, guarded against writers. An
    /// empty store gets its schema with its first document.
    async fn ensure_schema(&self) -> Result<(), StoreError> {
        for _ in 0..5 {
            let r = self
                .txn(Txn::new().and_then([
                    TxnOp::get(self.keys.schema.as_str(), None),
                    TxnOp::get(self.keys.revision.as_str(), None),
                    TxnOp::get(self.keys.document.as_str(), None),
                ]))
                .await?;
            let value = |i: usize| -> Option<Vec<u8>> {
                match r.op_responses().get(i) {
                    Some(TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| kv.value().to_vec()),
                    _ => None,
                }
            };
            let (schema_value, revision, document) = (value(0), value(1), value(2));
            let Some(found) =
                schema_found(&self.keys, schema_value.as_deref(), revision.is_some())?
            else {
                return Ok(());
            };
            if found == SCHEMA {
                return Ok(());
            }
            let schema_guard = match &schema_value {
                None => Compare::version(self.keys.schema.as_str(), CompareOp::Equal, 0),
                Some(v) => Compare::value(self.keys.schema.as_str(), CompareOp::Equal, v.clone()),
            };
            let revision = revision.unwrap_or_default();
            let backup = format!("{}backup/schema-{found}/", self.keys.root);
            let mut ops = vec![TxnOp::put(
                format!("{backup}revision"),
                revision.clone(),
                None,
            )];
            if let Some(doc) = document {
                ops.push(TxnOp::put(format!("{backup}document"), doc, None));
            }
            // 1 -> 2: the version is recorded (documents are format 1 either way).
            ops.push(TxnOp::put(
                self.keys.schema.as_str(),
                SCHEMA.to_string(),
                None,
            ));
            let txn = Txn::new()
                .when([
                    schema_guard,
                    Compare::value(self.keys.revision.as_str(), CompareOp::Equal, revision),
                ])
                .and_then(ops);
            if self.txn(txn).await?.succeeded() {
                info!(prefix = %self.keys.root, from = found, to = SCHEMA, %backup, "store schema migrated");
                return Ok(());
            }
        }
        Err(StoreError::Io(
            "the schema migration kept racing with writers; try again".into(),
        ))
    }

    async fn commit(
        &self,
        expected: Option<u64>,
        gateway: Gateway,
        actor: Actor,
        meta: Vec<(String, String)>,
    ) -> Result<u64, StoreError> {
        for _ in 0..5 {
            let mut base = self.cached();
            if let Some(e) = expected
                && e != base.snap.revision
            {
                // Our copy may lag behind the caller's (a write through another instance).
                self.full_read(false).await?;
                base = self.cached();
                if base.snap.revision != e {
                    return Err(StoreError::Stale {
                        expected: e,
                        current: base.snap.revision,
                    });
                }
            }
            let changed = !(base.snap.gateway == gateway && base.snap.revision > 0);
            let revision = base.snap.revision + u64::from(changed);
            let mut ops = Vec::new();
            if changed {
                let stored = Secret::reveal(|| serde_json::to_string(&gateway)).map_err(corrupt)?;
                let entry = AuditEntry {
                    id: revision,
                    at: now_rfc3339(),
                    revision,
                    actor: actor.name.clone(),
                    action: actor.action.clone(),
                    changes: redacted_changes(&base.snap.gateway, &gateway),
                };
                let entry = serde_json::to_string(&entry).map_err(corrupt)?;
                ops.push(TxnOp::put(self.keys.document.as_str(), stored, None));
                ops.push(TxnOp::put(
                    self.keys.revision.as_str(),
                    revision.to_string(),
                    None,
                ));
                ops.push(TxnOp::put(
                    format!("{}{revision:020}", self.keys.audit),
                    entry,
                    None,
                ));
            }
            let mut new_meta = base.meta.clone();
            for (k, v) in &meta {
                ops.push(TxnOp::put(
                    format!("{}{k}", self.keys.meta),
                    v.as_str(),
                    None,
                ));
                new_meta.insert(k.clone(), v.clone());
            }
            if ops.is_empty() {
                return Ok(base.snap.revision);
            }
            if base.snap.revision == 0 {
                ops.push(TxnOp::put(
                    self.keys.schema.as_str(),
                    SCHEMA.to_string(),
                    None,
                ));
            }
            // The revision this write follows, in the layout this build writes: a store that
            // a newer kawaii migrated meanwhile is not written in the old one.
            let guard = if base.snap.revision == 0 {
                [
                    Compare::version(self.keys.revision.as_str(), CompareOp::Equal, 0),
                    Compare::version(self.keys.schema.as_str(), CompareOp::Equal, 0),
                ]
            } else {
                [
                    Compare::value(
                        self.keys.revision.as_str(),
                        CompareOp::Equal,
                        base.snap.revision.to_string(),
                    ),
                    Compare::value(
                        self.keys.schema.as_str(),
                        CompareOp::Equal,
                        SCHEMA.to_string(),
                    ),
                ]
            };
            let txn = Txn::new()
                .when(guard)
                .and_then(ops)
                .or_else(self.read_txn());
            let r = self.txn(txn).await?;
            if r.succeeded() {
                self.install(
                    Snapshot {
                        revision,
                        gateway: gateway.clone(),
                    },
                    header_rev(&r),
                    new_meta,
                    Install::IfNewer,
                );
                self.synced();
                return Ok(revision);
            }
            // Lost the race: what won is in the else branch.
            let Read {
                snap,
                meta: current_meta,
                schema,
            } = parse_read(&self.keys, r.op_responses().as_slice())?;
            if let Some(found) = schema.filter(|f| *f != SCHEMA) {
                return Err(schema_changed(&self.keys, Some(found)));
            }
            let current = snap.revision;
            self.install(snap, header_rev(&r), current_meta, Install::IfNewer);
            if let Some(e) = expected {
                return Err(StoreError::Stale {
                    expected: e,
                    current,
                });
            }
        }
        Err(StoreError::Io(
            "too many concurrent writes; try again".into(),
        ))
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let r = self
            .txn(Txn::new().and_then([TxnOp::get(self.keys.audit.as_str(), Some(opts))]))
            .await?;
        let mut out = Vec::new();
        for op in r.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                for kv in get.kvs() {
                    out.push(serde_json::from_slice(kv.value()).map_err(corrupt)?);
                }
            }
        }
        Ok(out)
    }

    /// The oldest entries go: those past the newest `keep`, then those written before `before`
    /// (keys follow revisions, so both are a prefix of the key range): one range delete.
    async fn prune_audit(&self, before: String, keep: usize) -> Result<usize, StoreError> {
        let prefix = self.keys.audit.clone();
        let mut end = prefix.clone().into_bytes();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let counted = self
            .txn(Txn::new().and_then([TxnOp::get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )]))
            .await?;
        let total = counted
            .op_responses()
            .iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(g) => Some(usize::try_from(g.count()).unwrap_or(0)),
                _ => None,
            })
            .unwrap_or(0);
        let over = total.saturating_sub(keep);
        const BATCH: i64 = 500;
        let (mut doomed, mut last): (usize, Option<Vec<u8>>) = (0, None);
        let mut from = prefix.clone().into_bytes();
        'walk: loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_sort(SortTarget::Key, SortOrder::Ascend)
                .with_limit(BATCH);
            let r = self
                .txn(Txn::new().and_then([TxnOp::get(from.clone(), Some(opts))]))
                .await?;
            let mut seen = 0;
            for op in r.op_responses() {
                let TxnOpResponse::Get(get) = op else {
                    continue;
                };
                for kv in get.kvs() {
                    seen += 1;
                    let e: AuditEntry = serde_json::from_slice(kv.value()).map_err(corrupt)?;
                    if doomed >= over && e.at.as_str() >= before.as_str() {
                        break 'walk;
                    }
                    doomed += 1;
                    last = Some(kv.key().to_vec());
                }
            }
            match &last {
                Some(k) if seen == BATCH as usize => {
                    from = k.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
        if let Some(mut k) = last {
            k.push(0);
            self.txn(Txn::new().and_then([TxnOp::delete(
                prefix.as_str(),
                Some(DeleteOptions::new().with_range(k)),
            )]))
            .await?;
        }
        Ok(doomed)
    }

    /// Writes one metadata key, in the layout this build writes (see [`Inner::commit`]).
    async fn set_meta(&self, key: String, value: String) -> Result<(), StoreError> {
        let schema = self.keys.schema.as_str();
        // An empty store gets its schema with its first document.
        let guard = if self.snapshot().revision == 0 {
            Compare::version(schema, CompareOp::Equal, 0)
        } else {
            Compare::value(schema, CompareOp::Equal, SCHEMA.to_string())
        };
        let r = self
            .txn(
                Txn::new()
                    .when([guard])
                    .and_then([TxnOp::put(
                        format!("{}{key}", self.keys.meta),
                        value.as_str(),
                        None,
                    )])
                    .or_else([TxnOp::get(schema, None)]),
            )
            .await?;
        if !r.succeeded() {
            let found = parse_read(&self.keys, r.op_responses().as_slice())?.schema;
            return Err(schema_changed(&self.keys, found));
        }
        let mut c = self.cached();
        c.meta.insert(key, value);
        self.install(c.snap, header_rev(&r), c.meta, Install::IfNewer);
        Ok(())
    }

    async fn import(&self, data: Export, force: bool) -> Result<(), StoreError> {
        let any = self
            .txn(Txn::new().and_then([TxnOp::get(
                self.keys.root.as_str(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )]))
            .await?;
        let count = any
            .op_responses()
            .iter()
            .map(|op| match op {
                TxnOpResponse::Get(g) => g.count(),
                _ => 0,
            })
            .sum::<i64>();
        if count > 0 {
            if !force {
                return Err(StoreError::NotEmpty(format!(
                    "{count} keys under {}",
                    self.keys.root
                )));
            }
            self.txn(Txn::new().and_then([TxnOp::delete(
                self.keys.root.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )]))
            .await?;
        }
        for chunk in data.audit.chunks(IMPORT_CHUNK) {
            let mut ops = Vec::new();
            for e in chunk {
                ops.push(TxnOp::put(
                    format!("{}{:020}", self.keys.audit, e.revision),
                    serde_json::to_string(e).map_err(corrupt)?,
                    None,
                ));
            }
            self.txn(Txn::new().and_then(ops)).await?;
        }
        let mut ops = Vec::new();
        if data.snapshot.revision > 0 {
            let stored = Secret::reveal(|| serde_json::to_string(&data.snapshot.gateway))
                .map_err(corrupt)?;
            ops.push(TxnOp::put(self.keys.document.as_str(), stored, None));
            ops.push(TxnOp::put(
                self.keys.revision.as_str(),
                data.snapshot.revision.to_string(),
                None,
            ));
        }
        for (k, v) in &data.meta {
            ops.push(TxnOp::put(
                format!("{}{k}", self.keys.meta),
                v.as_str(),
                None,
            ));
        }
        ops.push(TxnOp::put(
            self.keys.schema.as_str(),
            SCHEMA.to_string(),
            None,
        ));
        self.txn(Txn::new().and_then(ops)).await?;
        self.full_read(true).await?;
        Ok(())
    }

    /// Follows the store forever: full read, watch, and again after any failure.
    async fn sync_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.follow().await {
                Resync::Again(why) => {
                    info!(why, "etcd watch ended; reading everything again");
                    backoff = Duration::from_millis(100);
                }
                Resync::Down(e) => {
                    self.set_down(&e);
                    if started.elapsed() > Duration::from_secs(10) {
                        backoff = Duration::from_millis(100);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn follow(&self) -> Resync {
        if let Err(e) = self.full_read(true).await {
            return Resync::Down(e);
        }
        let (generation, mut client) = match self.client().await {
            Ok(c) => c,
            Err(e) => return Resync::Down(e),
        };
        let from = self.cached().etcd_rev + 1;
        let opts = WatchOptions::new().with_prefix().with_start_revision(from);
        let watch = tokio::time::timeout(
            CALL_TIMEOUT,
            client.watch(self.keys.root.as_str(), Some(opts)),
        )
        .await;
        let mut stream = match watch {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.failed(generation).await;
                return Resync::Down(unavailable("etcd watch", e));
            }
            Err(_) => {
                self.failed(generation).await;
                return Resync::Down(unavailable("etcd watch", "no answer in time"));
            }
        };
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = stream.message() => match m {
                    Err(e) => {
                        self.failed(generation).await;
                        return Resync::Down(unavailable("etcd watch", e));
                    }
                    Ok(None) => {
                        self.failed(generation).await;
                        return Resync::Down(unavailable("etcd watch", "stream closed"));
                    }
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            if resp.compact_revision() > 0 {
                                return Resync::Again(format!(
                                    "revision {from} compacted (compact revision {})",
                                    resp.compact_revision()
                                ));
                            }
                            self.failed(generation).await;
                            return Resync::Down(unavailable("etcd watch canceled", resp.cancel_reason()));
                        }
                        if let Err(e) = self.apply_events(&resp).await {
                            return Resync::Down(e);
                        }
                    }
                },
                _ = probe.tick() => {
                    // Liveness and missed events: a linearizable read of the revision key.
                    let read = tokio::time::timeout(
                        CALL_TIMEOUT,
                        client.get(self.keys.revision.as_str(), None),
                    ).await;
                    match read {
                        Ok(Ok(r)) => {
                            let rev = r.kvs().first()
                                .and_then(|kv| std::str::from_utf8(kv.value()).ok())
                                .and_then(|v| v.parse::<u64>().ok())
                                .unwrap_or(0);
                            if rev != self.snapshot().revision
                                && let Err(e) = self.full_read(false).await
                            {
                                return Resync::Down(e);
                            }
                            self.synced();
                        }
                        Ok(Err(e)) => {
                            self.failed(generation).await;
                            return Resync::Down(unavailable("etcd", e));
                        }
                        Err(_) => {
                            self.failed(generation).await;
                            return Resync::Down(unavailable("etcd", "no answer in time"));
                        }
                    }
                }
            }
        }
    }

    /// Installs what one watch response says changed. The document and its revision are
    /// written together; anything less complete is read again in full.
    async fn apply_events(&self, resp: &WatchResponse) -> Result<(), StoreError> {
        let mut doc = None;
        let mut revision = None;
        let mut complete = true;
        let mut meta_changed = false;
        // A newer kawaii migrated the store: refused before anything else of it is read.
        for ev in resp.events() {
            if let Some(kv) = ev.kv()
                && kv.key() == self.keys.schema.as_bytes()
                && ev.event_type() == EventType::Put
            {
                schema_found(&self.keys, Some(kv.value()), true)?;
            }
        }
        let mut c = self.cached();
        let mut etcd_rev = c.etcd_rev;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            etcd_rev = etcd_rev.max(kv.mod_revision());
            let key = String::from_utf8_lossy(kv.key());
            let put = ev.event_type() == EventType::Put;
            if key == self.keys.document {
                if put {
                    doc = Some(kv.value().to_vec());
                } else {
                    complete = false;
                }
            } else if key == self.keys.revision {
                if put {
                    revision = Some(kv.value().to_vec());
                } else {
                    complete = false;
                }
            } else if let Some(k) = key.strip_prefix(&self.keys.meta) {
                meta_changed = true;
                if put {
                    c.meta
                        .insert(k.to_string(), String::from_utf8_lossy(kv.value()).into());
                } else {
                    c.meta.remove(k);
                }
            }
        }
        match (doc, revision) {
            (None, None) if complete => {
                if meta_changed {
                    self.install(c.snap, etcd_rev, c.meta, Install::IfNewer);
                }
            }
            (Some(doc), Some(rev)) if complete => {
                let gateway =
                    Gateway::parse(std::str::from_utf8(&doc).map_err(corrupt)?, Format::Json)
                        .map_err(corrupt)?;
                let revision = std::str::from_utf8(&rev)
                    .map_err(corrupt)?
                    .parse()
                    .map_err(corrupt)?;
                self.install(
                    Snapshot { revision, gateway },
                    etcd_rev,
                    c.meta,
                    Install::IfNewer,
                );
            }
            _ => {
                self.full_read(true).await?;
            }
        }
        self.synced();
        Ok(())
    }
}

impl Store for EtcdStore {
    fn current(&self) -> Result<Snapshot, StoreError> {
        Ok(self.inner.snapshot())
    }

    fn latest(&self) -> Result<Snapshot, StoreError> {
        let i = self.inner.clone();
        self.call(async move { i.full_read(false).await })
    }

    fn commit_with_meta(
        &self,
        expected: Option<u64>,
        gateway: &Gateway,
        actor: &Actor,
        meta: &[(&str, &str)],
    ) -> Result<u64, StoreError> {
        let (i, g, a) = (self.inner.clone(), gateway.clone(), actor.clone());
        let meta = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.call(async move { i.commit(expected, g, a, meta).await })
    }

    fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let i = self.inner.clone();
        self.call(async move { i.audit(limit).await })
    }

    fn prune_audit(&self, before: &str, keep: usize) -> Result<usize, StoreError> {
        let (i, before) = (self.inner.clone(), before.to_string());
        self.call(async move { i.prune_audit(before, keep).await })
    }

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.inner.cached().meta.get(key).cloned())
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (i, k, v) = (self.inner.clone(), key.to_string(), value.to_string());
        self.call(async move { i.set_meta(k, v).await })
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.inner.notify.subscribe()
    }

    fn health(&self) -> StoreHealth {
        let h = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
        StoreHealth {
            backend: "etcd".into(),
            up: h.up,
            seconds_since_sync: h.last_sync.map(|t| t.elapsed().as_secs_f64()),
            error: h.error.clone(),
        }
    }

    fn export(&self) -> Result<Export, StoreError> {
        let snapshot = self.latest()?;
        let mut audit = self.audit(usize::MAX)?;
        audit.reverse();
        Ok(Export {
            snapshot,
            audit,
            meta: self.inner.cached().meta,
        })
    }

    fn import(&self, data: &Export, force: bool) -> Result<(), StoreError> {
        let (i, d) = (self.inner.clone(), data.clone());
        // An import writes the audit trail in chunks: give it the time a large one needs.
        let Some(rt) = &self.rt else {
            return Err(StoreError::Unavailable("store closed".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(i.import(d, force).await);
        });
        rx.recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|_| Err(unavailable("etcd", "import did not finish")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_the_prefix_and_prefixes_do_not_overlap() {
        let a = Keys::new("/kawaii/acme/");
        let b = Keys::new("/kawaii/acme2");
        assert_eq!(a.document, "/kawaii/acme/document");
        assert_eq!(a.audit, "/kawaii/acme/audit/");
        assert!(!b.document.starts_with(&a.root));
    }

    #[test]
    fn debug_never_shows_credentials() {
        let o = EtcdOptions {
            endpoints: vec!["https://192.0.2.1:2379".into()],
            prefix: "/kawaii/acme".into(),
            tls: Some(EtcdTls {
                ca: None,
                cert: Some(b"CERT".to_vec()),
                key: Some(Secret::new("PRIVATE-KEY-TEXT")),
            }),
            user: Some(("kawaii".into(), Secret::new("hunter2-password"))),
            state_dir: None,
        };
        let text = format!("{o:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("PRIVATE-KEY-TEXT"), "{text}");
    }
}
