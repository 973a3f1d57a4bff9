//! L4 domain router: routes TCP connections by TLS SNI or HTTP Host to backends, never
//! decrypting TLS.
//!
//! Contract: [`DomainRouter::apply`] makes a [`RouterConfig`] true (binds new listeners, closes
//! removed ones, swaps route tables atomically) without touching established connections, and
//! leaves the previous config in force when it fails. [`DomainRouter::status`] reports counters
//! and health; [`DomainRouter::shutdown`] stops accepting and drains. Parsing lives in
//! `kawaii-sniff`; this crate is the tokio side.

mod backend;
pub mod budget;
pub mod config;
mod conn;
mod copy;
mod error;
mod listener;
mod metrics;
pub mod pipes;
#[cfg(target_os = "linux")]
mod splice;
mod status;
mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use budget::ConnBudget;
pub use config::{
    Balance, Cidr, HealthCheck, HealthCheckKind, ListenerConfig, ListenerProtocol,
    ProxyProtocolVersion, RouteConfig, RouterConfig, Timeouts,
};
pub use error::{ErrorKind, ProxyError};
pub use pipes::{PipeConfig, PipeStatus, Pipes};
pub use status::{BackendStatus, ListenerStatus, RouteStatus, RouterStatus};

use backend::{Backend, Route, RouteStats};
use config::{DomainPattern, ms};
use listener::{ListenerSettings, ListenerShared};
use table::Table;

/// Route tables and the global knobs of one applied config.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub tls: Table,
    pub http: Table,
    pub access_log: bool,
}

#[derive(Debug)]
struct RunningListener {
    shared: Arc<ListenerShared>,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    tables: RwLock<Arc<Tables>>,
    listeners: tokio::sync::Mutex<HashMap<SocketAddr, RunningListener>>,
    pub tracker: TaskTracker,
    pub conn_stop: CancellationToken,
    pub pipes: copy::PipePool,
    pub metrics: Option<metrics::Metrics>,
    pub max_head: usize,
    /// Shared with the pipes: connections this process may hold (see [`budget`]).
    pub budget: Arc<ConnBudget>,
    shut: AtomicBool,
}

impl Inner {
    pub(crate) fn tables(&self) -> Arc<Tables> {
        match self.tables.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The domain router. Cheap to clone (shared state); all methods take `&self`.
#[derive(Debug, Clone)]
pub struct DomainRouter {
    inner: Arc<Inner>,
}

impl DomainRouter {
    /// A router with no listeners. Metrics named `kawaii_router_*` go into `registry` if given.
    pub fn new(registry: Option<&mut Registry>) -> Self {
        Self::with_max_head(registry, kawaii_sniff::DEFAULT_MAX_HEAD)
    }

    /// Like [`DomainRouter::new`] with a cap on HTTP request heads (431 beyond it).
    pub fn with_max_head(registry: Option<&mut Registry>, max_head: usize) -> Self {
        Self::with_budget(registry, max_head, ConnBudget::process())
    }

    /// Like [`DomainRouter::with_max_head`] with a connection budget of its own (tests).
    pub fn with_budget(
        registry: Option<&mut Registry>,
        max_head: usize,
        budget: Arc<ConnBudget>,
    ) -> Self {
        let inner = Inner {
            tables: RwLock::new(Arc::new(Tables::default())),
            listeners: tokio::sync::Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            conn_stop: CancellationToken::new(),
            pipes: copy::PipePool::default(),
            metrics: registry.map(metrics::Metrics::register),
            max_head,
            budget,
            shut: AtomicBool::new(false),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Applies `cfg`: validates it, binds new listeners (all or none), swaps the route tables,
    /// updates kept listeners in place and closes removed ones. Established connections continue
    /// on the backends they were routed to. On error nothing changed.
    pub async fn apply(&self, cfg: RouterConfig) -> Result<(), ProxyError> {
        cfg.validate()?;
        let inner = &self.inner;
        let mut running = inner.listeners.lock().await;
        if inner.shut.load(Relaxed) {
            return Err(ProxyError::ShutDown);
        }
        // Bind everything new first, so a bind failure changes nothing.
        let mut fresh = Vec::new();
        for l in &cfg.listeners {
            if !running.contains_key(&l.bind) {
                fresh.push((l.bind, listener::bind(l.bind)?));
            }
        }
        let old = inner.tables();
        let tables = Arc::new(self.build_tables(&cfg, &old));
        match inner.tables.write() {
            Ok(mut t) => *t = tables,
            Err(poisoned) => *poisoned.into_inner() = tables,
        }

        let wanted: HashMap<SocketAddr, &ListenerConfig> =
            cfg.listeners.iter().map(|l| (l.bind, l)).collect();
        let removed: Vec<SocketAddr> = running
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(r) = running.remove(&addr) {
                r.shared.stop.cancel();
                let _ = r.task.await;
                info!(listener = %addr, "listener closed");
            }
        }
        for l in &cfg.listeners {
            let settings = ListenerSettings::new(l, &cfg.timeouts);
            if let Some(r) = running.get(&l.bind) {
                match r.shared.settings.write() {
                    Ok(mut s) => *s = Arc::new(settings),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(settings),
                }
            }
        }
        for (addr, sock) in fresh {
            let Some(l) = wanted.get(&addr) else { continue };
            let settings = ListenerSettings::new(l, &cfg.timeouts);
            let lm = inner.metrics.as_ref().map(|m| m.listener(&l.name));
            let shared = Arc::new(ListenerShared::new(addr, settings, lm));
            let local_addr = sock.local_addr().unwrap_or(addr);
            let task = tokio::spawn(listener::accept_loop(inner.clone(), shared.clone(), sock));
            info!(listener = %local_addr, name = %l.name, protocol = %l.protocol, "listening");
            running.insert(
                addr,
                RunningListener {
                    shared,
                    local_addr,
                    task,
                },
            );
        }
        Ok(())
    }

    fn build_tables(&self, cfg: &RouterConfig, old: &Tables) -> Tables {
        // Keep backend state (health, counters) and route counters across reloads.
        let mut old_backends: HashMap<(ListenerProtocol, String, SocketAddr), Arc<Backend>> =
            HashMap::new();
        let mut old_stats: HashMap<(ListenerProtocol, String), Arc<RouteStats>> = HashMap::new();
        for r in old.tls.all.iter().chain(old.http.all.iter()) {
            old_stats.insert((r.protocol, r.domain.clone()), r.stats.clone());
            for b in &r.backends {
                old_backends.insert((r.protocol, r.domain.clone(), b.addr), b.clone());
            }
        }
        let mut tables = Tables {
            access_log: cfg.access_log,
            ..Tables::default()
        };
        for r in &cfg.routes {
            let Some(pattern) = DomainPattern::parse(&r.domain) else {
                continue;
            };
            let domain = match &pattern {
                DomainPattern::Exact(d) => d.clone(),
                DomainPattern::Wildcard(s) => format!("*.{s}"),
                DomainPattern::Default => "*".to_owned(),
            };
            for (protocol, addrs) in [
                (ListenerProtocol::Tls, &r.https),
                (ListenerProtocol::Http, &r.http),
            ] {
                if addrs.is_empty() {
                    continue;
                }
                let mut seen = std::collections::HashSet::new();
                let backends: Vec<Arc<Backend>> = addrs
                    .iter()
                    .filter(|a| seen.insert(**a))
                    .map(|addr| {
                        let key = (protocol, domain.clone(), *addr);
                        if let Some(b) = old_backends.get(&key)
                            && b.health == r.health_check
                        {
                            return b.clone();
                        }
                        let m =
                            self.inner.metrics.as_ref().map(|m| {
                                m.backend(&protocol.to_string(), &domain, &addr.to_string())
                            });
                        let b = Arc::new(Backend::new(*addr, r.health_check.clone(), m));
                        backend::spawn_health_check(&b, domain.clone(), protocol, r.proxy_protocol);
                        b
                    })
                    .collect();
                let stats = old_stats
                    .get(&(protocol, domain.clone()))
                    .cloned()
                    .unwrap_or_default();
                let route = Arc::new(Route::new(
                    domain.clone(),
                    protocol,
                    backends,
                    r.balance,
                    r.proxy_protocol,
                    ms(r.connect_timeout_ms.unwrap_or(cfg.timeouts.connect_ms)),
                    ms(r.idle_timeout_ms.unwrap_or(cfg.timeouts.idle_ms)),
                    stats,
                ));
                let table = match protocol {
                    ListenerProtocol::Tls => &mut tables.tls,
                    ListenerProtocol::Http => &mut tables.http,
                };
                table.insert(pattern.clone(), route);
            }
        }
        tables
    }

    /// Counters and health of every listener, route and backend.
    pub fn status(&self) -> RouterStatus {
        let mut listeners: Vec<ListenerStatus> = match self.inner.listeners.try_lock() {
            Ok(running) => running
                .values()
                .map(|r| {
                    let s = r.shared.settings();
                    ListenerStatus {
                        name: s.name.clone(),
                        bind: r.shared.bind,
                        local_addr: r.local_addr,
                        protocol: s.protocol,
                        active_connections: r.shared.active.load(Relaxed),
                        accepted_connections: r.shared.accepted.load(Relaxed),
                        errors: r.shared.errors.snapshot(),
                    }
                })
                .collect(),
            // An apply is in progress; listeners are reported by the next call.
            Err(_) => Vec::new(),
        };
        listeners.sort_by(|a, b| a.name.cmp(&b.name));
        let tables = self.inner.tables();
        let routes = tables
            .tls
            .all
            .iter()
            .chain(tables.http.all.iter())
            .map(|r| RouteStatus {
                domain: r.domain.clone(),
                protocol: r.protocol,
                active_connections: r.stats.active.load(Relaxed),
                total_connections: r.stats.total.load(Relaxed),
                bytes_to_backend: r.stats.bytes_to_backend.load(Relaxed),
                bytes_to_client: r.stats.bytes_to_client.load(Relaxed),
                errors: r.stats.errors.snapshot(),
                backends: r
                    .backends
                    .iter()
                    .map(|b| BackendStatus {
                        address: b.addr,
                        healthy: b.is_healthy(),
                        health_checked: b.health.is_some(),
                        active_connections: b.active.load(Relaxed),
                        total_connections: b.total.load(Relaxed),
                        bytes_to_backend: b.bytes_to_backend.load(Relaxed),
                        bytes_to_client: b.bytes_to_client.load(Relaxed),
                        errors: b.errors.snapshot(),
                    })
                    .collect(),
            })
            .collect();
        RouterStatus {
            listeners,
            routes,
            idle_pipes: self.inner.pipes.idle_len(),
        }
    }

    /// Stops accepting (listening sockets closed), stops health checks, lets established
    /// connections finish for up to `drain`, then cuts the rest. Later `apply` calls fail.
    pub async fn shutdown(&self, drain: Duration) {
        let inner = &self.inner;
        inner.shut.store(true, Relaxed);
        {
            let mut running = inner.listeners.lock().await;
            for (_, r) in running.drain() {
                r.shared.stop.cancel();
                let _ = r.task.await;
            }
        }
        match inner.tables.write() {
            Ok(mut t) => *t = Arc::new(Tables::default()),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(Tables::default()),
        }
        inner.tracker.close();
        if tokio::time::timeout(drain, inner.tracker.wait())
            .await
            .is_err()
        {
            info!(
                remaining = inner.tracker.len(),
                "drain timeout, closing remaining connections"
            );
            inner.conn_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), inner.tracker.wait()).await;
        }
    }

    /// Connections currently being handled (sniffing or forwarding).
    pub fn open_connections(&self) -> usize {
        self.inner.tracker.len()
    }
}
