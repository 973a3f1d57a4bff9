//! Listening sockets: accept loop, connection limits and accept-error backoff.
//!
//! Contract: one task per listener accepts until its `stop` token fires, refuses connections over
//! the process's connection budget, the listener or the per-source limit at once (closing them), backs off on EMFILE-like errors
//! instead of spinning, and hands every other connection to [`crate::conn::handle`] as a task
//! tracked for draining.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::{Cidr, ListenerConfig, ListenerProtocol, Timeouts};
use crate::error::{ErrorCounters, ErrorKind};
use crate::metrics::ListenerMetrics;
use crate::{Inner, ProxyError};

/// Settings of a listener that a reload may change in place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListenerSettings {
    pub name: String,
    pub protocol: ListenerProtocol,
    pub max_connections: Option<u32>,
    pub max_per_source: Option<u32>,
    pub trusted: Vec<Cidr>,
    pub header_timeout: Duration,
}

impl ListenerSettings {
    /// The settings of listener `l`; its header timeout defaults to the router's.
    pub(crate) fn new(l: &ListenerConfig, timeouts: &Timeouts) -> ListenerSettings {
        ListenerSettings {
            name: l.name.clone(),
            protocol: l.protocol,
            max_connections: l.max_connections,
            max_per_source: l.max_connections_per_source,
            trusted: l.trusted_proxies.clone(),
            header_timeout: crate::config::ms(l.header_timeout_ms.unwrap_or(timeouts.header_ms)),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ListenerShared {
    pub bind: SocketAddr,
    pub settings: RwLock<Arc<ListenerSettings>>,
    pub active: AtomicU64,
    pub accepted: AtomicU64,
    pub errors: ErrorCounters,
    per_source: Mutex<HashMap<IpAddr, u32>>,
    pub stop: CancellationToken,
    pub metrics: Option<ListenerMetrics>,
}

impl ListenerShared {
    pub(crate) fn new(
        bind: SocketAddr,
        settings: ListenerSettings,
        metrics: Option<ListenerMetrics>,
    ) -> Self {
        Self {
            bind,
            settings: RwLock::new(Arc::new(settings)),
            active: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            errors: ErrorCounters::default(),
            per_source: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            metrics,
        }
    }

    pub(crate) fn settings(&self) -> Arc<ListenerSettings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn error(&self, inner: &Inner, kind: ErrorKind) {
        self.errors.inc(kind);
        if let Some(m) = &inner.metrics {
            m.error("listener", &self.settings().name, kind);
        }
    }

    /// Takes a per-source slot; `false` when the source is at its limit.
    pub(crate) fn acquire_source(&self, ip: IpAddr, max: Option<u32>) -> bool {
        let Some(max) = max else {
            return true;
        };
        let Ok(mut map) = self.per_source.lock() else {
            return false;
        };
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release_source(&self, ip: IpAddr) {
        if let Ok(mut map) = self.per_source.lock()
            && let Some(n) = map.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// Holds a listener slot (and optionally a per-source slot) for the life of a connection.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    listener: Arc<ListenerShared>,
    source: Option<IpAddr>,
    _ticket: Option<crate::budget::Ticket>,
}

impl ConnSlot {
    pub(crate) fn set_source(&mut self, ip: IpAddr) {
        self.source = Some(ip);
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.listener.active.fetch_sub(1, Relaxed);
        if let Some(m) = &self.listener.metrics {
            m.active.dec();
        }
        if let Some(ip) = self.source {
            self.listener.release_source(ip);
        }
    }
}

/// Binds with SO_REUSEADDR and a large backlog. TCP_NODELAY is set on the listening socket so
/// that every accepted socket inherits it (Linux copies it at accept): one setsockopt per
/// listener instead of one per connection.
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    let err = |source| ProxyError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_tcp_nodelay(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    // `[::]` means both families, whatever net.ipv6.bindv6only says.
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false).map_err(err)?;
    }
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

fn is_resource_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    shared: Arc<ListenerShared>,
    listener: TcpListener,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(5);
                x
            }
            Err(e) if is_resource_error(&e) => {
                shared.error(&inner, ErrorKind::AcceptFailed);
                warn!(error = %e, listener = %shared.bind, backoff_ms = backoff.as_millis() as u64, "accept failed, backing off");
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                debug!(error = %e, "accept error");
                continue;
            }
        };
        let settings = shared.settings();
        shared.accepted.fetch_add(1, Relaxed);
        if let Some(m) = &shared.metrics {
            m.accepted.inc();
        }
        // Listener limit: the new connection is closed at once, existing ones continue.
        let prev = shared.active.fetch_add(1, Relaxed);
        if let Some(m) = &shared.metrics {
            m.active.inc();
        }
        let ticket = inner.budget.take(&settings.name);
        let over_budget = ticket.is_none();
        let mut slot = ConnSlot {
            listener: shared.clone(),
            source: None,
            _ticket: ticket,
        };
        if over_budget {
            shared.error(&inner, ErrorKind::ConnectionBudget);
            drop(stream);
            continue;
        }
        if settings
            .max_connections
            .is_some_and(|max| prev >= u64::from(max))
        {
            shared.error(&inner, ErrorKind::ListenerLimit);
            debug!(client = %peer, listener = %settings.name, "listener connection limit, refused");
            drop(stream);
            continue;
        }
        let trusted = settings.trusted.iter().any(|c| c.contains(peer.ip()));
        if !trusted {
            if !shared.acquire_source(peer.ip(), settings.max_per_source) {
                shared.error(&inner, ErrorKind::SourceLimit);
                debug!(client = %peer, listener = %settings.name, "per-source connection limit, refused");
                drop(stream);
                continue;
            }
            if settings.max_per_source.is_some() {
                slot.set_source(peer.ip());
            }
        }
        let inner2 = inner.clone();
        let shared2 = shared.clone();
        inner.tracker.spawn(crate::conn::handle(
            inner2, shared2, settings, stream, peer, trusted, slot,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::bind;

    /// `bind` relies on accepted sockets inheriting TCP_NODELAY from the listening socket.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay() {
        let l = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = l.local_addr().expect("addr");
        let c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        assert!(s.nodelay().expect("getsockopt"));
        assert!(!c.nodelay().expect("getsockopt"));
    }
}
