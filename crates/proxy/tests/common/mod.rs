//! Test helpers: loopback backends (HTTP, echo, bulk, PROXY-aware), raw clients, router setup.
//! Every address is in 127.0.0.0/8.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use kawaii_proxy::{DomainRouter, ListenerConfig, ListenerProtocol, RouteConfig, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

pub fn listener(name: &str, ip: &str, protocol: ListenerProtocol) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        bind: format!("{ip}:0").parse().expect("addr"),
        protocol,
        max_connections: None,
        max_connections_per_source: None,
        trusted_proxies: Vec::new(),
        header_timeout_ms: None,
    }
}

pub fn route(domain: &str, https: &[SocketAddr], http: &[SocketAddr]) -> RouteConfig {
    RouteConfig {
        domain: domain.into(),
        https: https.to_vec(),
        http: http.to_vec(),
        balance: Default::default(),
        proxy_protocol: None,
        health_check: None,
        connect_timeout_ms: None,
        idle_timeout_ms: None,
    }
}

/// Starts a router and returns it with listener name → bound address.
pub async fn start(cfg: RouterConfig) -> (DomainRouter, HashMap<String, SocketAddr>) {
    let router = DomainRouter::new(None);
    router.apply(cfg).await.expect("apply");
    let addrs = bound(&router);
    (router, addrs)
}

pub fn bound(router: &DomainRouter) -> HashMap<String, SocketAddr> {
    router
        .status()
        .listeners
        .into_iter()
        .map(|l| (l.name, l.local_addr))
        .collect()
}

/// A listener with SO_REUSEADDR, so a "restarted" backend can take its port back.
pub fn listen(addr: SocketAddr) -> TcpListener {
    let s = TcpSocket::new_v4().expect("socket");
    s.set_reuseaddr(true).expect("reuseaddr");
    s.bind(addr).expect("bind");
    s.listen(1024).expect("listen")
}

/// A backend that reads each connection until `answer` makes sense of what arrived so far
/// (`Some(body)`), then answers 200 with that body and closes.
pub fn answering_backend(
    addr: SocketAddr,
    answer: impl Fn(&[u8]) -> Option<String> + Clone + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let l = listen(addr);
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    if let Some(body) = answer(&buf) {
                        break body;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// HTTP backend answering every request with 200 and `name` as body, then closing.
pub fn http_backend_on(addr: SocketAddr, name: &'static str) -> (SocketAddr, JoinHandle<()>) {
    answering_backend(addr, move |buf| {
        buf.windows(4)
            .any(|w| w == b"\r\n\r\n")
            .then(|| name.to_string())
    })
}

pub fn http_backend(name: &'static str) -> (SocketAddr, JoinHandle<()>) {
    http_backend_on("127.0.0.1:0".parse().expect("addr"), name)
}

/// Echoes everything back; records the first bytes received in the returned channel.
pub fn echo_backend() -> (SocketAddr, JoinHandle<()>) {
    let l = listen("127.0.0.1:0".parse().expect("addr"));
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

/// Backend that collects everything it receives on its first connection.
pub fn recording_backend() -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let l = listen("127.0.0.1:0".parse().expect("addr"));
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = l.accept().await {
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all).await;
            let _ = tx.send(all);
        }
    });
    (addr, rx)
}

/// Connects from a chosen loopback source address.
pub async fn connect_from(src_ip: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(
        format!("{src_ip}:0")
            .parse()
            .map_err(std::io::Error::other)?,
    )?;
    s.connect(to).await
}

/// One HTTP/1.1 GET with Connection: close; returns (status, body).
pub async fn http_get(to: SocketAddr, host: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(to).await?;
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp))
        .await
        .map_err(std::io::Error::other)??;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

pub fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/../sniff/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Connects from `src_ip` to `to`, sends `request`, and reads the answer until the other side
/// closes (2 s at most).
pub async fn exchange(src_ip: &str, to: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = connect_from(src_ip, to).await.expect("connect");
    s.write_all(request).await.expect("write");
    read_until_closed(&mut s, Duration::from_secs(2)).await.0
}

/// Reads until EOF or error, with a deadline; returns bytes read and whether it ended (not timed out).
pub async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let r = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    (out, r.is_ok())
}

/// Polls `f` every 20 ms until it is true or `within` passes; returns the time it took.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
