//! Routes, backends, balancing and background health checks.
//!
//! Contract: a [`Route`] owns its backends' shared state; [`Route::pick`] returns the next backend
//! to try (healthy ones first, never one already tried on this client connection). Health checks
//! run in one background task per backend and stop when the backend leaves the config.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::config::{
    Balance, HealthCheck, HealthCheckKind, ListenerProtocol, ProxyProtocolVersion, ms,
};
use crate::error::ErrorCounters;
use crate::metrics::BackendMetrics;

/// Shared state of one backend of one route.
#[derive(Debug)]
pub(crate) struct Backend {
    pub addr: SocketAddr,
    /// What the last health check found (true until a check says otherwise).
    pub healthy: AtomicBool,
    /// Connections open now (`least_connections` balancing picks the fewest).
    pub active: AtomicU64,
    /// Connections ever proxied here.
    pub total: AtomicU64,
    /// Bytes copied from clients to this backend, and back.
    pub bytes_to_backend: AtomicU64,
    pub bytes_to_client: AtomicU64,
    /// Failed connects and copies, by kind.
    pub errors: ErrorCounters,
    /// The Prometheus handles (None when the router runs without a registry).
    pub metrics: Option<BackendMetrics>,
    /// The route's health check, if it has one.
    pub health: Option<HealthCheck>,
    health_task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Ok(mut t) = self.health_task.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
    }
}

impl Backend {
    pub(crate) fn new(
        addr: SocketAddr,
        health: Option<HealthCheck>,
        metrics: Option<BackendMetrics>,
    ) -> Self {
        if let Some(m) = &metrics {
            m.up.set(1);
        }
        Self {
            addr,
            healthy: AtomicBool::new(true),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_to_backend: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            errors: ErrorCounters::default(),
            metrics,
            health,
            health_task: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    pub(crate) fn add_bytes(&self, to_backend: u64, to_client: u64) {
        self.bytes_to_backend.fetch_add(to_backend, Relaxed);
        self.bytes_to_client.fetch_add(to_client, Relaxed);
        if let Some(m) = &self.metrics {
            m.bytes_to_backend.inc_by(to_backend);
            m.bytes_to_client.inc_by(to_client);
        }
    }

    fn set_healthy(&self, up: bool, route: &str) {
        if self.healthy.swap(up, Relaxed) != up {
            if up {
                info!(route, backend = %self.addr, "backend up");
            } else {
                warn!(route, backend = %self.addr, "backend down");
            }
        }
        if let Some(m) = &self.metrics {
            m.up.set(i64::from(up));
        }
    }
}

/// Counts one open connection on a backend for as long as it lives.
#[derive(Debug)]
pub(crate) struct ActiveGuard(Arc<Backend>);

impl ActiveGuard {
    pub(crate) fn new(b: Arc<Backend>) -> Self {
        b.active.fetch_add(1, Relaxed);
        b.total.fetch_add(1, Relaxed);
        if let Some(m) = &b.metrics {
            m.active.inc();
            m.connections.inc();
        }
        Self(b)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
        if let Some(m) = &self.0.metrics {
            m.active.dec();
        }
    }
}

/// Per-route counters, kept across reloads while the route exists.
#[derive(Debug, Default)]
pub(crate) struct RouteStats {
    pub active: AtomicU64,
    pub total: AtomicU64,
    pub bytes_to_backend: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub errors: ErrorCounters,
}

/// One route for one listener protocol.
#[derive(Debug)]
pub(crate) struct Route {
    pub domain: String,
    pub protocol: ListenerProtocol,
    pub backends: Vec<Arc<Backend>>,
    pub balance: Balance,
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub stats: Arc<RouteStats>,
    rr: AtomicUsize,
}

impl Route {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        domain: String,
        protocol: ListenerProtocol,
        backends: Vec<Arc<Backend>>,
        balance: Balance,
        proxy_protocol: Option<ProxyProtocolVersion>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        stats: Arc<RouteStats>,
    ) -> Self {
        Self {
            domain,
            protocol,
            backends,
            balance,
            proxy_protocol,
            connect_timeout,
            idle_timeout,
            stats,
            rr: AtomicUsize::new(0),
        }
    }

    /// Next backend to try: healthy and untried first; when none is left, untried ones that the
    /// health check marks down (their state may be stale); `None` when all were tried.
    pub(crate) fn pick(&self, tried: &[usize]) -> Option<(usize, Arc<Backend>)> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        for want_healthy in [true, false] {
            let eligible =
                |i: &usize| !tried.contains(i) && self.backends[*i].is_healthy() == want_healthy;
            let chosen = match self.balance {
                Balance::RoundRobin => {
                    let start = self.rr.fetch_add(1, Relaxed);
                    (0..n).map(|k| (start + k) % n).find(eligible)
                }
                Balance::LeastConnections => {
                    let start = self.rr.fetch_add(1, Relaxed);
                    (0..n)
                        .map(|k| (start + k) % n)
                        .filter(eligible)
                        .min_by_key(|i| self.backends[*i].active.load(Relaxed))
                }
            };
            if let Some(i) = chosen {
                return Some((i, self.backends[i].clone()));
            }
        }
        None
    }
}

/// Starts the background health check of `backend` if it has one.
pub(crate) fn spawn_health_check(
    backend: &Arc<Backend>,
    route: String,
    protocol: ListenerProtocol,
    proxy_protocol: Option<ProxyProtocolVersion>,
) {
    let Some(hc) = backend.health.clone() else {
        return;
    };
    let http = hc.kind == HealthCheckKind::Http && protocol == ListenerProtocol::Http;
    let weak: Weak<Backend> = Arc::downgrade(backend);
    let addr = backend.addr;
    let host = route.trim_start_matches("*.").to_owned();
    let task = tokio::spawn(async move {
        let (mut ok_run, mut fail_run) = (0u32, 0u32);
        let mut tick = tokio::time::interval(ms(hc.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let ok = probe(addr, &hc, http.then_some(host.as_str()), proxy_protocol).await;
            let Some(b) = weak.upgrade() else {
                return;
            };
            if ok {
                ok_run = ok_run.saturating_add(1);
                fail_run = 0;
                if ok_run >= hc.rise {
                    b.set_healthy(true, &route);
                }
            } else {
                fail_run = fail_run.saturating_add(1);
                ok_run = 0;
                if fail_run >= hc.fall {
                    b.set_healthy(false, &route);
                }
            }
        }
    });
    if let Ok(mut slot) = backend.health_task.lock() {
        *slot = Some(task.abort_handle());
    }
}

async fn probe(
    addr: SocketAddr,
    hc: &HealthCheck,
    http_host: Option<&str>,
    proxy_protocol: Option<ProxyProtocolVersion>,
) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await?;
        // A backend that expects a PROXY header gets one saying "health check, no client".
        match proxy_protocol {
            Some(ProxyProtocolVersion::V1) => {
                s.write_all(&kawaii_sniff::proxy_protocol::encode_v1(None))
                    .await?
            }
            Some(ProxyProtocolVersion::V2) => {
                let h = kawaii_sniff::ProxyHeader {
                    version: 2,
                    command: kawaii_sniff::Command::Local,
                    addresses: kawaii_sniff::Addresses::Unspec,
                    tlvs: Vec::new(),
                };
                let wire =
                    kawaii_sniff::proxy_protocol::encode_v2(&h).map_err(std::io::Error::other)?;
                s.write_all(&wire).await?;
            }
            None => {}
        }
        let Some(host) = http_host else {
            return Ok::<bool, std::io::Error>(true);
        };
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kawaii-health-check\r\nConnection: close\r\n\r\n",
            hc.path
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = [0u8; 12];
        let mut got = 0;
        while got < buf.len() {
            let n = s.read(&mut buf[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        // "HTTP/1.x 2xx" or 3xx counts as up.
        Ok(got == 12 && buf.starts_with(b"HTTP/1.") && matches!(buf[9], b'2' | b'3'))
    };
    matches!(
        tokio::time::timeout(ms(hc.timeout_ms), attempt).await,
        Ok(Ok(true))
    )
}
