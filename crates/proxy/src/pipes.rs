//! Pipes: named TCP forwards. Each listens on its address, dials its target (`host:port`,
//! resolved per connection) and copies both ways with half-close, connect and idle timeouts.
//!
//! Contract: [`Pipes::apply`] makes a list of [`PipeConfig`] true. New pipes listen; a changed
//! target or timeout applies to new connections while established ones keep theirs; a changed
//! listen address rebinds without cutting established connections; a removed pipe stops
//! listening and its connections close. Other pipes' connections are never touched. If any new
//! address cannot be bound nothing changes. A connection over the process's connection budget
//! (shared with the router, see [`crate::budget`]) is closed at accept.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::budget::ConnBudget;
use crate::copy::{self, End, Meter, PipePool, Side};
use crate::error::{ErrorCounters, ErrorKind, ProxyError};

/// One pipe as the driver wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeConfig {
    pub name: String,
    pub listen: SocketAddr,
    /// `host:port` (a DNS name or an IP).
    pub target: String,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Counters and state of one pipe, for status and metrics.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PipeStatus {
    pub name: String,
    #[schema(value_type = String)]
    pub listen: SocketAddr,
    pub target: String,
    pub connections: u64,
    pub active: u64,
    /// Bytes from clients to the target.
    pub bytes_in: u64,
    /// Bytes from the target back to clients.
    pub bytes_out: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
}

#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    active: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    errors: ErrorCounters,
}

impl Meter for Stats {
    fn to_backend(&self, n: u64) {
        self.bytes_in.fetch_add(n, Relaxed);
    }
    fn to_client(&self, n: u64) {
        self.bytes_out.fetch_add(n, Relaxed);
    }
}

#[derive(Debug)]
struct Running {
    cfg: Arc<RwLock<PipeConfig>>,
    stats: Arc<Stats>,
    /// Stops the listener only.
    listening: CancellationToken,
    /// Stops the pipe's connections (removal).
    conns: CancellationToken,
    task: JoinHandle<()>,
}

type Index = Vec<(Arc<RwLock<PipeConfig>>, Arc<Stats>)>;

#[derive(Debug)]
struct Inner {
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    /// What status reads without waiting for an apply in progress.
    index: RwLock<Index>,
    pool: PipePool,
    tracker: TaskTracker,
    /// Shared with the router: connections this process may hold.
    budget: Arc<ConnBudget>,
}

/// The pipes of one node. Cheap to clone; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct Pipes {
    inner: Arc<Inner>,
}

impl Default for Pipes {
    fn default() -> Pipes {
        Pipes::with_budget(ConnBudget::process())
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    crate::listener::bind(addr)
}

impl Pipes {
    pub fn new() -> Pipes {
        Pipes::default()
    }

    /// Pipes with a connection budget of their own (tests).
    pub fn with_budget(budget: Arc<ConnBudget>) -> Pipes {
        Pipes {
            inner: Arc::new(Inner {
                running: tokio::sync::Mutex::default(),
                index: RwLock::default(),
                pool: PipePool::default(),
                tracker: TaskTracker::default(),
                budget,
            }),
        }
    }

    /// Makes `want` the set of pipes (see the module doc).
    pub async fn apply(&self, want: Vec<PipeConfig>) -> Result<(), ProxyError> {
        let mut running = self.inner.running.lock().await;
        let mut names = std::collections::HashSet::new();
        for p in &want {
            if !names.insert(p.name.as_str()) {
                return Err(ProxyError::InvalidConfig {
                    field: "pipes".into(),
                    reason: format!("pipe {:?} is given twice", p.name),
                });
            }
        }
        // Bind every new address first: a failure changes nothing.
        let mut fresh: HashMap<String, TcpListener> = HashMap::new();
        for p in &want {
            let moved = running
                .get(&p.name)
                .is_none_or(|r| r.cfg.read().map(|c| c.listen != p.listen).unwrap_or(true));
            if moved {
                fresh.insert(p.name.clone(), bind(p.listen)?);
            }
        }
        // Removed pipes: stop listening and cut their connections.
        let gone: Vec<String> = running
            .keys()
            .filter(|n| !want.iter().any(|p| &p.name == *n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(r) = running.remove(&name) {
                info!(pipe = %name, "pipe removed");
                r.listening.cancel();
                r.conns.cancel();
                // The listening socket is closed once its task has ended.
                let _ = r.task.await;
            }
        }
        for p in want {
            let listener = fresh.remove(&p.name);
            match running.get_mut(&p.name) {
                Some(r) => {
                    if let Ok(mut c) = r.cfg.write() {
                        *c = p.clone();
                    }
                    if let Some(l) = listener {
                        // A new address: the old listener stops, its connections continue.
                        info!(pipe = %p.name, listen = %p.listen, "pipe moved");
                        r.listening.cancel();
                        r.listening = CancellationToken::new();
                        r.task = self.spawn_accept(l, r);
                    }
                }
                None => {
                    let Some(l) = listener else { continue };
                    info!(pipe = %p.name, listen = %p.listen, target = %p.target, "pipe listening");
                    let mut r = Running {
                        cfg: Arc::new(RwLock::new(p.clone())),
                        stats: Arc::default(),
                        listening: CancellationToken::new(),
                        conns: CancellationToken::new(),
                        task: tokio::spawn(async {}),
                    };
                    r.task = self.spawn_accept(l, &r);
                    running.insert(p.name.clone(), r);
                }
            }
        }
        let index: Index = running
            .values()
            .map(|r| (r.cfg.clone(), r.stats.clone()))
            .collect();
        if let Ok(mut i) = self.inner.index.write() {
            *i = index;
        }
        Ok(())
    }

    fn spawn_accept(&self, listener: TcpListener, r: &Running) -> JoinHandle<()> {
        let inner = self.inner.clone();
        let (cfg, stats) = (r.cfg.clone(), r.stats.clone());
        let (listening, conns) = (r.listening.clone(), r.conns.clone());
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(10);
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = listening.cancelled() => return,
                };
                let (client, peer) = match accepted {
                    Ok(c) => {
                        backoff = Duration::from_millis(10);
                        c
                    }
                    Err(error) => {
                        // EMFILE and friends: wait instead of spinning on a full table.
                        stats.errors.inc(ErrorKind::AcceptFailed);
                        warn!(%error, "pipe accept failed; backing off");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = listening.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                let snapshot = cfg.read().map(|c| c.clone());
                let Ok(c) = snapshot else { continue };
                stats.connections.fetch_add(1, Relaxed);
                let Some(ticket) = inner.budget.take(&c.name) else {
                    stats.errors.inc(ErrorKind::ConnectionBudget);
                    drop(client);
                    continue;
                };
                let (inner2, stats2, stop) = (inner.clone(), stats.clone(), conns.clone());
                inner.tracker.spawn(async move {
                    stats2.active.fetch_add(1, Relaxed);
                    let end = serve(&inner2.pool, client, &c, &stats2, &stop).await;
                    stats2.active.fetch_sub(1, Relaxed);
                    drop(ticket);
                    match end {
                        Ok((up, down)) => {
                            debug!(pipe = %c.name, %peer, up, down, "pipe connection closed");
                        }
                        Err(kind) => {
                            stats2.errors.inc(kind);
                            debug!(pipe = %c.name, %peer, kind = kind.as_str(), "pipe connection failed");
                        }
                    }
                });
            }
        })
    }

    /// Every pipe's counters, by name.
    pub fn status(&self) -> Vec<PipeStatus> {
        let index = match self.inner.index.read() {
            Ok(i) => i.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut out: Vec<PipeStatus> = index
            .iter()
            .filter_map(|(cfg, s)| {
                let c = cfg.read().ok()?.clone();
                Some(PipeStatus {
                    name: c.name,
                    listen: c.listen,
                    target: c.target,
                    connections: s.connections.load(Relaxed),
                    active: s.active.load(Relaxed),
                    bytes_in: s.bytes_in.load(Relaxed),
                    bytes_out: s.bytes_out.load(Relaxed),
                    errors: s.errors.snapshot(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Stops every listener, lets connections finish for up to `drain`, then closes the rest.
    pub async fn shutdown(&self, drain: Duration) {
        let mut running = self.inner.running.lock().await;
        for r in running.values() {
            r.listening.cancel();
        }
        self.inner.tracker.close();
        if tokio::time::timeout(drain, self.inner.tracker.wait())
            .await
            .is_err()
        {
            for r in running.values() {
                r.conns.cancel();
            }
            self.inner.tracker.wait().await;
        }
        running.clear();
        if let Ok(mut i) = self.inner.index.write() {
            i.clear();
        }
    }
}

/// Dials the target (every resolved address in turn, within the connect timeout) and forwards.
async fn serve(
    pool: &PipePool,
    client: TcpStream,
    c: &PipeConfig,
    stats: &Stats,
    stop: &CancellationToken,
) -> Result<(u64, u64), ErrorKind> {
    let dial = async {
        let addrs = tokio::net::lookup_host(c.target.as_str())
            .await
            .map_err(|_| ErrorKind::ConnectFailed)?;
        let mut last = ErrorKind::ConnectFailed;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(_) => last = ErrorKind::ConnectFailed,
            }
        }
        Err(last)
    };
    let target = tokio::select! {
        r = tokio::time::timeout(c.connect_timeout, dial) => match r {
            Ok(r) => r?,
            Err(_) => return Err(ErrorKind::ConnectTimeout),
        },
        () = stop.cancelled() => return Err(ErrorKind::ShutdownAbort),
    };
    let _ = client.set_nodelay(true);
    let _ = target.set_nodelay(true);
    let (end, up, down) = copy::forward(&client, &target, pool, c.idle_timeout, stop, stats).await;
    match end {
        End::Closed => Ok((up, down)),
        End::Idle => Err(ErrorKind::IdleTimeout),
        End::Stopped => Err(ErrorKind::ShutdownAbort),
        // Pipes carry any protocol: "the target's answer" means nothing there, and a reset is
        // the doing of the side that reset, whenever it came.
        End::ResetAfterResponse(side) | End::Error(side, Some(libc::ECONNRESET | libc::EPIPE)) => {
            Err(match side {
                Side::Client => ErrorKind::ClientReset,
                Side::Backend => ErrorKind::TargetReset,
            })
        }
        End::Error(..) => Err(ErrorKind::Io),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pipe(name: &str, listen: SocketAddr, target: SocketAddr) -> PipeConfig {
        PipeConfig {
            name: name.into(),
            listen,
            target: target.to_string(),
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// An echo server that upper-cases nothing: it answers `reply` after reading to EOF.
    async fn server(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf).await;
                    let _ = s.write_all(reply).await;
                    let _ = s.write_all(&buf).await;
                });
            }
        });
        addr
    }

    fn free_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
    }

    /// `[::]` is one socket for both families (the default of a dual-stack VPN's pipes).
    #[tokio::test]
    async fn a_pipe_on_the_ipv6_wildcard_serves_both_families() {
        let target = server(b"T:").await;
        let port = free_port().port();
        let pipes = Pipes::new();
        let any = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        pipes
            .apply(vec![pipe("dual", any, target)])
            .await
            .expect("apply");
        for from in ["127.0.0.1", "::1"] {
            let to = SocketAddr::new(from.parse().expect("ip"), port);
            let mut s = TcpStream::connect(to).await.expect("connect");
            s.write_all(b"hi").await.expect("write");
            s.shutdown().await.expect("shutdown");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read");
            assert_eq!(got, b"T:hi", "through {to}");
        }
        pipes.shutdown(Duration::from_millis(100)).await;
    }

    #[tokio::test]
    async fn half_close_both_ways_and_live_changes_spare_other_pipes() {
        let a = server(b"A:").await;
        let b = server(b"B:").await;
        let (la, lb) = (free_port(), free_port());
        let pipes = Pipes::new();
        pipes
            .apply(vec![pipe("a", la, a), pipe("b", lb, b)])
            .await
            .expect("apply");
        // Half-close: the client's FIN reaches the server, whose answer still comes back.
        let mut c = TcpStream::connect(la).await.expect("connect");
        c.write_all(b"hello").await.expect("write");
        c.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"A:hello");
        // A connection through b stays open while a is removed and b's target changes.
        let mut held = TcpStream::connect(lb).await.expect("connect");
        held.write_all(b"kept").await.expect("write");
        pipes.apply(vec![pipe("b", lb, a)]).await.expect("apply");
        assert!(TcpStream::connect(la).await.is_err(), "a no longer listens");
        held.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        held.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"B:kept", "the established connection kept its target");
        let mut c = TcpStream::connect(lb).await.expect("connect");
        c.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"A:", "new connections follow the new target");
        let st = pipes.status();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].connections, 2);
        assert_eq!(st[0].bytes_in, 4);
    }

    /// Connections over the budget are closed at accept and counted; the held ones go on.
    #[tokio::test]
    async fn the_connection_budget_is_shared_and_refusals_counted() {
        let target = server(b"T:").await;
        let l = free_port();
        let budget = ConnBudget::new(1);
        let pipes = Pipes::with_budget(budget.clone());
        pipes
            .apply(vec![pipe("p", l, target)])
            .await
            .expect("apply");
        let mut held = TcpStream::connect(l).await.expect("connect");
        held.write_all(b"held").await.expect("write");
        let ok = tokio::time::timeout(Duration::from_secs(2), async {
            while budget.in_use() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "the held connection took no ticket");
        let mut over = TcpStream::connect(l).await.expect("connect");
        let mut got = Vec::new();
        let _ = over.read_to_end(&mut got).await;
        assert!(got.is_empty(), "served over the budget");
        assert_eq!(
            pipes.status()[0].errors.get(&ErrorKind::ConnectionBudget),
            Some(&1)
        );
        held.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        held.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"T:held");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut again = TcpStream::connect(l).await.expect("connect");
        again.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        again.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"T:", "no recovery");
    }

    #[tokio::test]
    async fn unreachable_targets_are_counted_and_binds_are_all_or_nothing() {
        let dead = free_port();
        let l = free_port();
        let pipes = Pipes::new();
        pipes.apply(vec![pipe("x", l, dead)]).await.expect("apply");
        let mut c = TcpStream::connect(l).await.expect("connect");
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf).await;
        assert!(
            buf.is_empty(),
            "the client is closed when the target refuses"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let st = pipes.status();
        assert_eq!(st[0].errors.get(&ErrorKind::ConnectFailed), Some(&1));
        // A second pipe on an address that is taken: nothing changes, the first keeps running.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let busy = taken.local_addr().expect("addr");
        let err = pipes
            .apply(vec![pipe("x", l, dead), pipe("y", busy, dead)])
            .await
            .expect_err("busy address");
        assert!(matches!(err, ProxyError::Bind { .. }), "{err}");
        assert_eq!(pipes.status().len(), 1);
        assert!(TcpStream::connect(l).await.is_ok());
    }

    /// A reset is counted against the side that sent it, not as the gateway's `io` error: a
    /// target that resets mid-stream, and a client that resets while its target still talks.
    #[tokio::test]
    async fn resets_are_counted_by_the_side_that_reset() {
        let reset = |s: TcpStream| {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("linger");
            drop(s);
        };
        // The target reads a little and resets; the next one keeps sending until it fails.
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = [0u8; 2];
            let _ = s.read_exact(&mut buf).await;
            reset(s);
            let (mut s, _) = l.accept().await.expect("accept");
            while s.write_all(&[7u8; 4096]).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let listen = free_port();
        let pipes = Pipes::new();
        pipes
            .apply(vec![pipe("r", listen, target)])
            .await
            .expect("apply");
        let count = |kind| pipes.status()[0].errors.get(&kind).copied();
        let mut c = TcpStream::connect(listen).await.expect("connect");
        c.write_all(b"hi").await.expect("write");
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got).await;
        let mut c = TcpStream::connect(listen).await.expect("connect");
        let mut first = [0u8; 1];
        c.read_exact(&mut first).await.expect("the target talks");
        reset(c);
        let counted = tokio::time::timeout(Duration::from_secs(5), async {
            while count(ErrorKind::ClientReset).is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(counted.is_ok(), "{:?}", pipes.status()[0].errors);
        assert_eq!(count(ErrorKind::TargetReset), Some(1));
        assert_eq!(count(ErrorKind::ClientReset), Some(1));
        assert_eq!(count(ErrorKind::Io), None);
        pipes.shutdown(Duration::from_millis(100)).await;
    }
}
