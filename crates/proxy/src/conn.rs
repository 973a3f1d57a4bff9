//! One client connection: optional PROXY header from a trusted upstream, SNI/Host sniffing under
//! the header timeout, routing, connect with failover, PROXY header towards the backend, forward.
//!
//! Contract: every failure is explicit and immediate: a TLS alert (`unrecognized_name` for a
//! missing/unknown name), an HTTP error status (400/404/408/431/502), or a close for plain HTTP on
//! the TLS port. Nothing waits longer than the header, connect or idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use kawaii_sniff::proxy_protocol::{self, ProxyError as PpError};
use kawaii_sniff::tls::{AlertDescription, fatal_alert};
use kawaii_sniff::{Addresses, ClientHelloSniffer, Command, HostSniff, HostSniffer, TlsSniff};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::Inner;
use crate::backend::{ActiveGuard, Backend, Route};
use crate::config::{ListenerProtocol, ProxyProtocolVersion};
use crate::copy::{End, Meter, forward};
use crate::error::ErrorKind;
use crate::listener::{ConnSlot, ListenerSettings, ListenerShared};

/// Largest PROXY header accepted from a trusted upstream.
const MAX_PROXY_HEADER: usize = 4096;

enum Sniffed {
    Route {
        name: Option<String>,
        route: Arc<Route>,
    },
    Reject(ErrorKind),
}

pub(crate) async fn handle(
    inner: Arc<Inner>,
    listener: Arc<ListenerShared>,
    settings: Arc<ListenerSettings>,
    mut client: TcpStream,
    peer: SocketAddr,
    trusted: bool,
    mut slot: ConnSlot,
) {
    let start = Instant::now();
    let deadline = start + settings.header_timeout;
    let mut client_addr = peer;
    // The address the client connected to: from a trusted PROXY header, else asked of the socket
    // (getsockname) only when a PROXY header towards the backend needs it.
    let mut orig_dst: Option<SocketAddr> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let tables = inner.tables();
    let access_log = tables.access_log;

    let fail = |kind: ErrorKind, name: Option<&str>, client_addr: SocketAddr| {
        listener.error(&inner, kind);
        if access_log {
            info!(target: "kawaii_proxy::access", client = %client_addr, listener = %settings.name,
                name = name.unwrap_or("-"), backend = "-", bytes_up = 0u64, bytes_down = 0u64,
                duration_ms = start.elapsed().as_millis() as u64, outcome = kind.as_str(), "connection");
        } else {
            debug!(client = %client_addr, listener = %settings.name, outcome = kind.as_str(), "connection refused");
        }
    };

    // PROXY header from a trusted upstream: required, and the real client comes from it.
    if trusted {
        let header = loop {
            match proxy_protocol::decode(&buf) {
                Ok((h, len)) => {
                    buf.drain(..len);
                    break Some(h);
                }
                Err(PpError::Incomplete) if buf.len() < MAX_PROXY_HEADER => {}
                Err(_) => break None,
            }
            match read_more(&mut client, &mut buf, deadline).await {
                Ok(true) => {}
                Ok(false) => return fail(ErrorKind::ClientClosedEarly, None, client_addr),
                Err(kind) => return fail(kind, None, client_addr),
            }
        };
        let Some(header) = header else {
            return fail(ErrorKind::BadProxyHeader, None, client_addr);
        };
        if header.command == Command::Proxy
            && let Addresses::Inet {
                source,
                destination,
                ..
            } = header.addresses
        {
            client_addr = source;
            orig_dst = Some(destination);
        }
        if !listener.acquire_source(client_addr.ip(), settings.max_per_source) {
            return fail(ErrorKind::SourceLimit, None, client_addr);
        }
        if settings.max_per_source.is_some() {
            slot.set_source(client_addr.ip());
        }
    }

    let table = match settings.protocol {
        ListenerProtocol::Tls => &tables.tls,
        ListenerProtocol::Http => &tables.http,
    };
    let sniffed = match settings.protocol {
        ListenerProtocol::Tls => {
            let mut sniffer = ClientHelloSniffer::default();
            loop {
                match sniffer.feed(&buf) {
                    TlsSniff::NeedMore => {}
                    TlsSniff::Found { sni } => {
                        break match table.lookup(sni.as_deref()) {
                            Some(route) => Sniffed::Route { name: sni, route },
                            None => {
                                let _ = client
                                    .write_all(&fatal_alert(AlertDescription::UnrecognizedName))
                                    .await;
                                let kind = if sni.is_some() {
                                    ErrorKind::UnknownName
                                } else {
                                    ErrorKind::NoSni
                                };
                                return fail(kind, sni.as_deref(), client_addr);
                            }
                        };
                    }
                    TlsSniff::NotTls => break Sniffed::Reject(ErrorKind::NotTls),
                    TlsSniff::Error(e) => {
                        debug!(error = %e, client = %client_addr, "bad ClientHello");
                        let _ = client
                            .write_all(&fatal_alert(AlertDescription::DecodeError))
                            .await;
                        break Sniffed::Reject(ErrorKind::BadClientHello);
                    }
                }
                match read_more(&mut client, &mut buf, deadline).await {
                    Ok(true) => {}
                    Ok(false) => break Sniffed::Reject(ErrorKind::ClientClosedEarly),
                    Err(kind) => break Sniffed::Reject(kind),
                }
            }
        }
        ListenerProtocol::Http => {
            let mut sniffer = HostSniffer::new(inner.max_head);
            loop {
                let status = match sniffer.feed(&buf) {
                    HostSniff::NeedMore => None,
                    HostSniff::Found { host, .. } => match table.lookup(host.as_deref()) {
                        Some(route) => break Sniffed::Route { name: host, route },
                        None => {
                            respond(&mut client, 404, "Not Found", "no route for this host\n")
                                .await;
                            return fail(ErrorKind::UnknownName, host.as_deref(), client_addr);
                        }
                    },
                    HostSniff::Malformed(_) => {
                        Some((400, "Bad Request", ErrorKind::MalformedRequest))
                    }
                    HostSniff::TooLarge => Some((
                        431,
                        "Request Header Fields Too Large",
                        ErrorKind::HeadTooLarge,
                    )),
                };
                if let Some((code, reason, kind)) = status {
                    respond(&mut client, code, reason, &format!("{reason}\n")).await;
                    break Sniffed::Reject(kind);
                }
                match read_more(&mut client, &mut buf, deadline).await {
                    Ok(true) => {}
                    Ok(false) => break Sniffed::Reject(ErrorKind::ClientClosedEarly),
                    Err(ErrorKind::HeaderTimeout) => {
                        respond(
                            &mut client,
                            408,
                            "Request Timeout",
                            "request head not received in time\n",
                        )
                        .await;
                        break Sniffed::Reject(ErrorKind::HeaderTimeout);
                    }
                    Err(kind) => break Sniffed::Reject(kind),
                }
            }
        }
    };
    let (name, route) = match sniffed {
        Sniffed::Route { name, route } => (name, route),
        Sniffed::Reject(kind) => return fail(kind, None, client_addr),
    };
    drop(tables);

    route.stats.active.fetch_add(1, Relaxed);
    route.stats.total.fetch_add(1, Relaxed);
    let result = connect_and_forward(&inner, &route, &mut client, client_addr, orig_dst, buf).await;
    route.stats.active.fetch_sub(1, Relaxed);
    let (outcome, backend, up, down) = match result {
        Ok((end, backend, up, down)) => {
            let outcome = match end {
                End::Closed => "closed",
                End::ResetAfterResponse(_) => "reset_after_response",
                End::Idle => "idle_timeout",
                End::Stopped => "shutdown_abort",
                End::Error(..) => "io_error",
            };
            let kind = match end {
                End::Closed => None,
                End::ResetAfterResponse(side) => {
                    // Counted apart: not an error (see `End::ResetAfterResponse`).
                    if let Some(m) = &inner.metrics {
                        m.reset_after_response(&route.domain, side.as_str());
                    }
                    None
                }
                End::Idle => Some(ErrorKind::IdleTimeout),
                End::Stopped => Some(ErrorKind::ShutdownAbort),
                End::Error(side, errno) => {
                    debug!(client = %client_addr, route = %route.domain, backend = %backend.addr,
                        side = side.as_str(), errno = errno.unwrap_or(0),
                        "proxied connection ended by an I/O error");
                    Some(ErrorKind::Io)
                }
            };
            if let Some(kind) = kind {
                route_error(&inner, &route, Some(&backend), kind);
            }
            (outcome, Some(backend.addr), up, down)
        }
        Err(kind) => {
            route_error(&inner, &route, None, kind);
            match settings.protocol {
                ListenerProtocol::Tls => {
                    let _ = client
                        .write_all(&fatal_alert(AlertDescription::InternalError))
                        .await;
                }
                ListenerProtocol::Http => {
                    respond(&mut client, 502, "Bad Gateway", "no backend reachable\n").await;
                }
            }
            (kind.as_str(), None, 0, 0)
        }
    };
    if access_log {
        info!(target: "kawaii_proxy::access", client = %client_addr, listener = %settings.name,
            name = name.as_deref().unwrap_or("-"), route = %route.domain,
            backend = %backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            bytes_up = up, bytes_down = down, duration_ms = start.elapsed().as_millis() as u64,
            outcome, "connection");
    }
}

fn route_error(inner: &Inner, route: &Route, backend: Option<&Backend>, kind: ErrorKind) {
    route.stats.errors.inc(kind);
    if let Some(b) = backend {
        b.errors.inc(kind);
    }
    if let Some(m) = &inner.metrics {
        m.error("route", &route.domain, kind);
    }
}

struct RouteMeter<'a> {
    route: &'a Route,
    backend: &'a Backend,
}

impl Meter for RouteMeter<'_> {
    fn to_backend(&self, n: u64) {
        self.route.stats.bytes_to_backend.fetch_add(n, Relaxed);
        self.backend.add_bytes(n, 0);
    }
    fn to_client(&self, n: u64) {
        self.route.stats.bytes_to_client.fetch_add(n, Relaxed);
        self.backend.add_bytes(0, n);
    }
}

async fn connect_and_forward(
    inner: &Inner,
    route: &Route,
    client: &mut TcpStream,
    client_addr: SocketAddr,
    orig_dst: Option<SocketAddr>,
    head: Vec<u8>,
) -> Result<(End, Arc<Backend>, u64, u64), ErrorKind> {
    let mut tried = Vec::new();
    let mut last = ErrorKind::NoBackendAvailable;
    let orig_dst = || orig_dst.unwrap_or_else(|| client.local_addr().unwrap_or(client_addr));
    let mut first = match route.proxy_protocol {
        None => Vec::new(),
        Some(ProxyProtocolVersion::V1) => {
            proxy_protocol::encode_v1(Some((client_addr, orig_dst())))
        }
        Some(ProxyProtocolVersion::V2) => {
            let h = kawaii_sniff::ProxyHeader {
                version: 2,
                command: Command::Proxy,
                addresses: Addresses::Inet {
                    transport: kawaii_sniff::Transport::Stream,
                    source: client_addr,
                    destination: orig_dst(),
                },
                tlvs: Vec::new(),
            };
            proxy_protocol::encode_v2(&h).unwrap_or_default()
        }
    };
    first.extend_from_slice(&head);
    let head_len = head.len() as u64;
    // Nothing of the sniffing phase stays allocated while the connection is proxied.
    drop(head);
    let (backend, upstream) = loop {
        let Some((i, b)) = route.pick(&tried) else {
            return Err(last);
        };
        tried.push(i);
        match tokio::time::timeout(route.connect_timeout, connect_sending(b.addr, &first)).await {
            Ok(Ok(s)) => break (b, s),
            Ok(Err(e)) => {
                debug!(error = %e, backend = %b.addr, route = %route.domain, "connect failed, trying next");
                last = ErrorKind::ConnectFailed;
            }
            Err(_) => {
                debug!(backend = %b.addr, route = %route.domain, "connect timed out, trying next");
                last = ErrorKind::ConnectTimeout;
            }
        }
        route_error(inner, route, Some(&b), last);
    };
    let _active = ActiveGuard::new(backend.clone());
    #[cfg(not(target_os = "linux"))]
    let _ = client.set_nodelay(true);
    drop(first);
    let meter = RouteMeter {
        route,
        backend: &backend,
    };
    meter.to_backend(head_len);
    let (end, up, down) = forward(
        client,
        &upstream,
        &inner.pipes,
        route.idle_timeout,
        &inner.conn_stop,
        &meter,
    )
    .await;
    Ok((end, backend, up + head_len, down))
}

/// Reads more bytes before `deadline`; `Ok(false)` on EOF.
async fn read_more(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<bool, ErrorKind> {
    buf.reserve(4096);
    match tokio::time::timeout_at(deadline, client.read_buf(buf)).await {
        Err(_) => Err(ErrorKind::HeaderTimeout),
        Ok(Ok(0)) => Ok(false),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(_)) => Err(ErrorKind::Io),
    }
}

/// Writes a short HTTP error response, then closes gracefully: FIN first, and a brief drain of
/// what the client still sends so that the close does not turn into a reset that eats the answer.
async fn respond(client: &mut TcpStream, code: u16, reason: &str, body: &str) {
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if client.write_all(resp.as_bytes()).await.is_err() {
        return;
    }
    let _ = client.shutdown().await;
    // On the heap: an array here would sit in every connection's future, used or not.
    let mut sink = vec![0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n) = client.read(&mut sink).await {
            total += n;
            if n == 0 || total > 256 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// Connects to `addr` and writes `first` (PROXY header and the sniffed head) as soon as the
/// socket takes it. A connection to a nearby backend is usually established by the time
/// connect(2) returns, so the write goes out at once, with no wait for writability and no
/// SO_ERROR query; a refused or reset connection shows up as the write's error. Any failure
/// here happens before the client's bytes reached a backend, so the caller may try another.
pub(crate) async fn connect_sending(addr: SocketAddr, first: &[u8]) -> std::io::Result<TcpStream> {
    use std::io::ErrorKind::WouldBlock;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking(),
        None,
    )?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // Straight on the socket: tokio would not try before the poller reported writability.
    let mut rest = first;
    match socket.send(rest) {
        Ok(n) => rest = &rest[n..],
        Err(e) if e.kind() == WouldBlock => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into())?;
    if first.is_empty() {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    while !rest.is_empty() {
        match stream.try_write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A backend whose accept queue is full drops our SYN: connect(2) is still in progress
    /// when the head is first tried, so it waits for the handshake (the SYN is sent again
    /// after about a second) and the head still arrives whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_head_waits_for_a_handshake_still_in_progress() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.listen(0).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        // Fill the accept queue; further SYNs are dropped while it stays full.
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let f =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            f.set_nonblocking(true).unwrap();
            let _ = f.connect(&addr.into());
            fillers.push(f);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let connecting = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), connect_sending(addr, b"HEAD")).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!connecting.is_finished(), "still waiting for the handshake");
        // Make room: accept everything, and read what each accepted connection got.
        s.set_nonblocking(true).unwrap();
        let l = tokio::net::TcpListener::from_std(s.into()).unwrap();
        let reader = tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 4];
                if tokio::time::timeout(Duration::from_millis(200), c.read_exact(&mut buf))
                    .await
                    .is_ok_and(|r| r.is_ok())
                    && &buf == b"HEAD"
                {
                    return;
                }
            }
        });
        let stream = connecting
            .await
            .unwrap()
            .expect("in time")
            .expect("connected");
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the head reached the backend")
            .unwrap();
        drop((stream, fillers));
    }
}
