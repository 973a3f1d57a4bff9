//! Acceptance tests of the domain router, on loopback only (127.0.0.0/8), against real peers
//! (openssl s_server / s_client, curl) where the issue asks for them.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use kawaii_proxy::{
    Cidr, DomainRouter, ErrorKind, HealthCheck, HealthCheckKind, ListenerProtocol,
    ProxyProtocolVersion, RouterConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const TLS: ListenerProtocol = ListenerProtocol::Tls;
const HTTP: ListenerProtocol = ListenerProtocol::Http;
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

fn free_port(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).expect("bind");
    l.local_addr().expect("addr")
}

/// `openssl s_server -www` with a fresh self-signed certificate for CN=`cn`.
async fn openssl_server(dir: &std::path::Path, cn: &str) -> (SocketAddr, Child) {
    let (key, cert) = (dir.join(format!("{cn}.key")), dir.join(format!("{cn}.crt")));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", &format!("/CN={cn}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("openssl req");
    assert!(st.success());
    let addr = free_port("127.0.0.1");
    let child = Command::new("openssl")
        .args(["s_server", "-www", "-accept", &addr.to_string(), "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_server");
    let up = eventually_async(Duration::from_secs(5), || async move {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(up, "s_server up");
    (addr, child)
}

async fn eventually_async<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// The certificate subject line `openssl s_client -servername` sees through the router.
async fn s_client_subject(router: SocketAddr, servername: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &router.to_string()]);
    match servername {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        cmd.stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .expect("s_client in time")
    .expect("s_client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_routing_with_openssl_and_curl_exact_wildcard_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, _ca) = openssl_server(dir.path(), "a.test").await;
    let (w, _cw) = openssl_server(dir.path(), "wild.test").await;
    let (d, _cd) = openssl_server(dir.path(), "default.test").await;
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("tls", "127.0.0.21", TLS));
    cfg.routes.push(route("a.test", &[a], &[]));
    cfg.routes.push(route("*.wild.test", &[w], &[]));
    let (router, addrs) = start(cfg.clone()).await;
    let l = addrs["tls"];

    let (ok, text) = s_client_subject(l, Some("A.Test")).await;
    assert!(ok && text.contains("CN = a.test"), "{text}");
    let (ok, text) = s_client_subject(l, Some("x.y.wild.test")).await;
    assert!(ok && text.contains("CN = wild.test"), "{text}");
    // Unknown name, no default: explicit unrecognized_name alert.
    let (ok, text) = s_client_subject(l, Some("nope.test")).await;
    assert!(!ok && text.contains("unrecognized name"), "{text}");

    cfg.routes.push(route("*", &[d], &[]));
    router.apply(cfg).await.expect("reload");
    let (ok, text) = s_client_subject(l, Some("nope.test")).await;
    assert!(ok && text.contains("CN = default.test"), "{text}");

    let out = curl("-skv", "https", "www.wild.test", l).await;
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("CN=wild.test"),
        "{text}"
    );
    let status = router.status();
    let wild = status
        .routes
        .iter()
        .find(|r| r.domain == "*.wild.test")
        .expect("route");
    assert_eq!(wild.total_connections, 2);
    assert!(wild.bytes_to_client > 0 && wild.bytes_to_backend > 0);
    router.shutdown(Duration::from_secs(1)).await;
}

/// `curl OPTS SCHEME://NAME:PORT/` with NAME resolved to the listener `l`, as an operator
/// would try a route (5 s at most).
async fn curl(opts: &str, scheme: &str, name: &str, l: SocketAddr) -> std::process::Output {
    Command::new("curl")
        .args([opts, "--max-time", "5", "--resolve"])
        .arg(format!("{name}:{}:{}", l.port(), l.ip()))
        .arg(format!("{scheme}://{name}:{}/", l.port()))
        .kill_on_drop(true)
        .output()
        .await
        .expect("curl")
}

/// Connects to `to`, sends `bytes` and reads until the router closes (`limit` at most): the
/// answer, whether it closed, and how long after the write.
async fn answer_within(to: SocketAddr, bytes: &[u8], limit: Duration) -> (Vec<u8>, bool, Duration) {
    let mut s = TcpStream::connect(to).await.expect("connect");
    let start = Instant::now();
    s.write_all(bytes).await.expect("write");
    let (resp, closed) = read_until_closed(&mut s, limit).await;
    (resp, closed, start.elapsed())
}

#[tokio::test]
async fn host_routing_exact_wildcard_default_and_404() {
    let (a, _) = http_backend("A");
    let (w, _) = http_backend("W");
    let (d, _) = http_backend("D");
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("http", "127.0.0.22", HTTP));
    cfg.routes.push(route("a.test", &[], &[a]));
    cfg.routes.push(route("*.w.test", &[], &[w]));
    let (router, addrs) = start(cfg.clone()).await;
    let l = addrs["http"];
    assert_eq!(
        http_get(l, "A.test.:8080").await.expect("get"),
        (200, "A".into())
    );
    assert_eq!(
        http_get(l, "x.w.test").await.expect("get"),
        (200, "W".into())
    );
    assert_eq!(http_get(l, "w.test").await.expect("get").0, 404);
    cfg.routes.push(route("*", &[], &[d]));
    router.apply(cfg).await.expect("reload");
    assert_eq!(http_get(l, "w.test").await.expect("get"), (200, "D".into()));
    // curl with --resolve, as an operator would.
    let out = curl("-s", "http", "a.test", l).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "A");
    // Malformed head → 400, at once.
    let mut s = TcpStream::connect(l).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nBad Header\r\n\r\n")
        .await
        .expect("write");
    let (resp, closed) = read_until_closed(&mut s, Duration::from_secs(2)).await;
    assert!(
        closed && resp.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
}

#[tokio::test]
async fn head_too_large_gets_431() {
    let (a, _) = http_backend("A");
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("http", "127.0.0.23", HTTP));
    cfg.routes.push(route("a.test", &[], &[a]));
    let router = DomainRouter::with_max_head(None, 1024);
    router.apply(cfg).await.expect("apply");
    let l = bound(&router)["http"];
    let mut s = TcpStream::connect(l).await.expect("connect");
    let req = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX: {}\r\n\r\n",
        "y".repeat(2000)
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let (resp, _) = read_until_closed(&mut s, Duration::from_secs(2)).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
}

async fn tls_router(
    ip: &str,
    backend: SocketAddr,
    header_ms: Option<u64>,
) -> (DomainRouter, SocketAddr) {
    let mut cfg = RouterConfig::default();
    let mut l = listener("tls", ip, TLS);
    l.header_timeout_ms = header_ms;
    cfg.listeners.push(l);
    cfg.routes.push(route("www.example.net", &[backend], &[]));
    let (router, addrs) = start(cfg).await;
    (router, addrs["tls"])
}

/// Re-frames a captured single-record ClientHello into `n` TLS records.
fn reframe(wire: &[u8], n: usize) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
    let hs = &wire[5..5 + len];
    kawaii_sniff::tls::build::records(hs, hs.len().div_ceil(n))
}

#[tokio::test]
async fn client_hello_in_one_byte_segments_over_ten_records() {
    let (b, got) = recording_backend();
    let (_router, l) = tls_router("127.0.0.24", b, None).await;
    let wire = reframe(&testdata("curl_sni.bin"), 10);
    let mut s = TcpStream::connect(l).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    for byte in &wire {
        s.write_all(std::slice::from_ref(byte))
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    s.write_all(b"after-hello").await.expect("write");
    s.shutdown().await.expect("fin");
    let got = tokio::time::timeout(Duration::from_secs(5), got)
        .await
        .expect("in time")
        .expect("received");
    let mut want = wire.clone();
    want.extend_from_slice(b"after-hello");
    assert_eq!(got, want, "backend sees the exact client bytes");
}

#[tokio::test]
async fn no_sni_gets_unrecognized_name_alert_within_100ms() {
    let (b, _) = echo_backend();
    let (router, l) = tls_router("127.0.0.25", b, None).await;
    let (resp, closed, took) =
        answer_within(l, &testdata("openssl_nosni.bin"), Duration::from_secs(2)).await;
    assert!(closed);
    assert_eq!(resp, UNRECOGNIZED_NAME_ALERT);
    assert!(took < Duration::from_millis(100), "took {took:?}");
    // And a real client sees it too.
    let (ok, text) = s_client_subject(l, None).await;
    assert!(!ok && text.contains("unrecognized name"), "{text}");
    let errors = &router.status().listeners[0].errors;
    assert_eq!(errors.get(&ErrorKind::NoSni), Some(&2));
}

#[tokio::test]
async fn plain_http_on_tls_port_closed_within_100ms() {
    let (b, _) = echo_backend();
    let (router, l) = tls_router("127.0.0.26", b, None).await;
    let (resp, closed, took) = answer_within(
        l,
        b"GET / HTTP/1.1\r\nHost: www.example.net\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(closed && resp.is_empty());
    assert!(took < Duration::from_millis(100), "took {took:?}");
    assert_eq!(
        router.status().listeners[0].errors.get(&ErrorKind::NotTls),
        Some(&1)
    );
}

#[tokio::test]
async fn slow_client_cut_at_header_timeout() {
    let (b, _) = echo_backend();
    let (_r1, tls) = tls_router("127.0.0.27", b, Some(300)).await;
    let mut cfg = RouterConfig::default();
    let mut hl = listener("http", "127.0.0.27", HTTP);
    hl.header_timeout_ms = Some(300);
    cfg.listeners.push(hl);
    cfg.routes.push(route("a.test", &[], &[b]));
    let (_r2, addrs) = start(cfg).await;

    let (resp, closed, took) = answer_within(
        addrs["http"],
        b"GET / HTTP/1.1\r\nHost: a.te",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        closed && resp.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(1000),
        "{took:?}"
    );

    let (_, closed, took) =
        answer_within(tls, &testdata("curl_sni.bin")[..40], Duration::from_secs(3)).await;
    assert!(
        closed && took >= Duration::from_millis(280) && took < Duration::from_millis(1000),
        "{took:?}"
    );
}

async fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) -> bool {
    if s.write_all(msg).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; msg.len()];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf)).await,
        Ok(Ok(_))
    ) && buf == msg
}

#[tokio::test]
async fn connection_limits_refuse_new_keep_existing() {
    let (b, _) = echo_backend();
    let mut cfg = RouterConfig::default();
    let mut l = listener("http", "127.0.0.28", HTTP);
    l.max_connections = Some(2);
    cfg.listeners.push(l);
    let mut l = listener("per-source", "127.0.0.29", HTTP);
    l.max_connections_per_source = Some(1);
    cfg.listeners.push(l);
    cfg.routes.push(route("a.test", &[], &[b]));
    let (router, addrs) = start(cfg).await;
    let head = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";

    let mut c1 = TcpStream::connect(addrs["http"]).await.expect("c1");
    assert!(echo_roundtrip(&mut c1, head).await);
    let mut c2 = TcpStream::connect(addrs["http"]).await.expect("c2");
    assert!(echo_roundtrip(&mut c2, head).await);
    let mut c3 = TcpStream::connect(addrs["http"]).await.expect("c3 tcp");
    let start = Instant::now();
    let _ = c3.write_all(head).await;
    let (resp, closed) = read_until_closed(&mut c3, Duration::from_secs(2)).await;
    assert!(closed && resp.is_empty() && start.elapsed() < Duration::from_millis(500));
    assert!(
        echo_roundtrip(&mut c1, b"still here").await && echo_roundtrip(&mut c2, b"me too").await
    );
    drop(c1);
    let ok = eventually_async(Duration::from_secs(2), || async {
        match TcpStream::connect(addrs["http"]).await {
            Ok(mut c) => echo_roundtrip(&mut c, head).await,
            Err(_) => false,
        }
    })
    .await;
    assert!(ok, "a slot frees when a connection ends");

    let mut p1 = connect_from("127.0.0.30", addrs["per-source"])
        .await
        .expect("p1");
    assert!(echo_roundtrip(&mut p1, head).await);
    let mut p2 = connect_from("127.0.0.30", addrs["per-source"])
        .await
        .expect("p2");
    let _ = p2.write_all(head).await;
    let (resp, closed) = read_until_closed(&mut p2, Duration::from_secs(2)).await;
    assert!(closed && resp.is_empty());
    let mut p3 = connect_from("127.0.0.31", addrs["per-source"])
        .await
        .expect("p3");
    assert!(
        echo_roundtrip(&mut p3, head).await,
        "another source is not limited"
    );
    let st = router.status();
    let errs = |n: &str| {
        st.listeners
            .iter()
            .find(|l| l.name == n)
            .map(|l| l.errors.clone())
            .unwrap_or_default()
    };
    // c3, plus possibly a retry of `eventually` before c1's slot was released.
    assert!(
        errs("http")
            .get(&ErrorKind::ListenerLimit)
            .is_some_and(|n| *n >= 1)
    );
    assert_eq!(errs("per-source").get(&ErrorKind::SourceLimit), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_health_checks() {
    let (b1, t1) = http_backend("one");
    let (b2, _t2) = http_backend("two");
    let interval = 200;
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("http", "127.0.0.32", HTTP));
    let mut r = route("a.test", &[], &[b1, b2]);
    r.health_check = Some(HealthCheck {
        kind: HealthCheckKind::Http,
        interval_ms: interval,
        timeout_ms: 150,
        rise: 2,
        fall: 2,
        path: "/healthz".into(),
    });
    cfg.routes.push(r);
    let (router, addrs) = start(cfg).await;
    let l = addrs["http"];
    let healthy = |router: &DomainRouter, addr: SocketAddr| {
        router.status().routes[0]
            .backends
            .iter()
            .find(|b| b.address == addr)
            .map(|b| b.healthy)
    };
    t1.abort();
    let _ = t1.await;
    let killed = Instant::now();
    // Before and after the health check notices: every new connection succeeds.
    for _ in 0..20 {
        assert_eq!(
            http_get(l, "a.test").await.expect("get"),
            (200, "two".into())
        );
    }
    let down = eventually(Duration::from_millis(3 * interval + 400), || {
        healthy(&router, b1) == Some(false)
    })
    .await;
    assert!(down.is_some(), "marked down");
    assert!(
        killed.elapsed() <= Duration::from_millis(3 * interval + 400),
        "{:?}",
        killed.elapsed()
    );
    let st = router.status();
    assert!(
        st.routes[0]
            .errors
            .get(&ErrorKind::ConnectFailed)
            .copied()
            .unwrap_or(0)
            >= 1
    );

    let (_b1, _t1) = http_backend_on(b1, "one");
    let up = eventually(Duration::from_millis(4 * interval + 400), || {
        healthy(&router, b1) == Some(true)
    })
    .await;
    assert!(up.is_some(), "marked up after return");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(http_get(l, "a.test").await.expect("get").1);
    }
    assert_eq!(seen.len(), 2, "round robin uses both again: {seen:?}");
}

/// Serves `len` bytes of a deterministic pattern to each connection after reading its head.
fn bulk_backend(len: usize) -> SocketAddr {
    let l = listen("127.0.0.1:0".parse().expect("addr"));
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 1024];
                let _ = s.read(&mut head).await;
                let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
                let mut sent = 0;
                while sent < len {
                    let n = chunk.len().min(len - sent);
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_change_during_large_transfer_completes_intact() {
    const LEN: usize = 64 * 1024 * 1024;
    let big = bulk_backend(LEN);
    let (other, _) = http_backend("other");
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("http", "127.0.0.33", HTTP));
    cfg.routes.push(route("a.test", &[], &[big]));
    let (router, addrs) = start(cfg.clone()).await;
    let mut s = TcpStream::connect(addrs["http"]).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    let mut reloaded = false;
    let mut intact = true;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("progress")
            .expect("read");
        if n == 0 {
            break;
        }
        intact &= buf[..n]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (((total + i) % 65536) % 251) as u8);
        total += n;
        if !reloaded && total > 4 * 1024 * 1024 {
            reloaded = true;
            // Route now points elsewhere, and the listener's settings change too.
            let mut next = cfg.clone();
            next.routes[0].http = vec![other];
            next.listeners[0].max_connections = Some(100);
            next.listeners.push(listener("extra", "127.0.0.34", HTTP));
            router.apply(next).await.expect("reload");
            assert_eq!(
                http_get(addrs["http"], "a.test").await.expect("get"),
                (200, "other".into())
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(reloaded);
    assert_eq!(total, LEN);
    assert!(intact, "bytes intact");
    let st = router.status();
    assert!(
        st.routes[0].bytes_to_client >= LEN as u64,
        "counters kept across reload"
    );
    // splice(2) was used (pipes are parked in the pool after use), and the pool is bounded.
    assert!(st.idle_pipes <= 64);
    if cfg!(target_os = "linux") {
        assert!(st.idle_pipes >= 1, "splice path used");
    }
}

/// Backend that decodes a PROXY header and answers with the source address it carried.
fn proxy_aware_backend() -> SocketAddr {
    let (addr, _task) = answering_backend("127.0.0.1:0".parse().expect("addr"), |buf| {
        match kawaii_sniff::proxy_protocol::decode(buf) {
            Ok((h, _)) => Some(format!("{:?}", h.addresses.source())),
            Err(kawaii_sniff::ProxyError::Incomplete) => None,
            Err(e) => Some(format!("error {e}")),
        }
    });
    addr
}

#[tokio::test]
async fn proxy_v2_backend_sees_real_client_and_trusted_upstream() {
    let b = proxy_aware_backend();
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("direct", "127.0.0.35", HTTP));
    let mut t = listener("behind-lb", "127.0.0.36", HTTP);
    t.trusted_proxies = vec!["127.0.0.37/32".parse::<Cidr>().expect("cidr")];
    cfg.listeners.push(t);
    let mut r = route("a.test", &[], &[b]);
    r.proxy_protocol = Some(ProxyProtocolVersion::V2);
    cfg.routes.push(r);
    let (_router, addrs) = start(cfg).await;

    let mut s = connect_from("127.0.0.38", addrs["direct"])
        .await
        .expect("connect");
    let me = s.local_addr().expect("addr");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("write");
    let (resp, _) = read_until_closed(&mut s, Duration::from_secs(2)).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.ends_with(&format!("Some({me})")), "{resp}");

    // A trusted load balancer (127.0.0.37) tells us the client is 127.9.9.9:5555.
    let claim =
        b"PROXY TCP4 127.9.9.9 127.0.0.36 5555 80\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let resp = exchange("127.0.0.37", addrs["behind-lb"], claim).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.ends_with("Some(127.9.9.9:5555)"), "{resp}");
    // Untrusted sources cannot claim an address: the header is just a bad request.
    let resp = exchange("127.0.0.38", addrs["behind-lb"], claim).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
}

#[tokio::test]
async fn metrics_status_and_drain() {
    let (b, _) = echo_backend();
    let mut registry = prometheus_client::registry::Registry::default();
    let router = DomainRouter::new(Some(&mut registry));
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("http", "127.0.0.39", HTTP));
    cfg.routes.push(route("a.test", &[], &[b]));
    cfg.access_log = true;
    router.apply(cfg).await.expect("apply");
    let l = bound(&router)["http"];
    let mut s = TcpStream::connect(l).await.expect("connect");
    assert!(echo_roundtrip(&mut s, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("kawaii_router_bytes_total{listener_protocol=\"http\",route=\"a.test\""),
        "{text}"
    );
    assert!(text.contains("kawaii_router_active_connections{"), "{text}");
    let json = serde_json::to_value(router.status()).expect("json");
    assert_eq!(json["routes"][0]["active_connections"], 1);

    // Shutdown: no new connections, the established one keeps working during the drain.
    let r2 = router.clone();
    let drain = tokio::spawn(async move { r2.shutdown(Duration::from_secs(3)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(l).await.is_err(), "listener closed");
    assert!(echo_roundtrip(&mut s, b"during drain").await);
    drop(s);
    tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .expect("drained early")
        .expect("join");
    assert!(router.apply(RouterConfig::default()).await.is_err());
}

#[tokio::test]
async fn idle_timeout_is_not_a_lifetime_cap() {
    let (b, _) = echo_backend();
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("http", "127.0.0.40", HTTP));
    let mut r = route("a.test", &[], &[b]);
    r.idle_timeout_ms = Some(300);
    cfg.routes.push(r);
    let (router, addrs) = start(cfg).await;
    let head = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    // Busy for 1.2 s (4x the idle timeout): stays up.
    let mut busy = TcpStream::connect(addrs["http"]).await.expect("connect");
    for _ in 0..12 {
        assert!(echo_roundtrip(&mut busy, head).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Idle: cut after ~300 ms.
    let start = Instant::now();
    let (_, closed) = read_until_closed(&mut busy, Duration::from_secs(3)).await;
    assert!(
        closed && start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    let st = router.status();
    assert_eq!(st.routes[0].errors.get(&ErrorKind::IdleTimeout), Some(&1));
}

fn pipe_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_hold_no_pipe_fds() {
    let (b, _) = echo_backend();
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("http", "127.0.0.41", HTTP));
    cfg.routes.push(route("a.test", &[], &[b]));
    let (_router, addrs) = start(cfg).await;
    let before = pipe_fds();
    let mut conns = Vec::new();
    for _ in 0..300 {
        let mut c = TcpStream::connect(addrs["http"]).await.expect("connect");
        assert!(echo_roundtrip(&mut c, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await);
        conns.push(c);
    }
    let during = pipe_fds();
    // At most the pool's 64 parked pipes (2 fds each); 300 idle connections hold none.
    assert!(during <= before + 128, "pipe fds {before} -> {during}");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 253) as u8).wrapping_add(seed))
        .collect()
}

/// Reads up to and including the blank line that ends an HTTP head.
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.expect("head") == 0 {
            break;
        }
        head.push(b[0]);
    }
    head
}

/// Small messages and bulk in both directions over one connection, with a half-close each way:
/// the copy path (small) and the splice path (a read that fills the copy buffer) hand over
/// without losing or reordering a byte, and EOF travels on in each direction on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_bulk_both_ways_with_half_close() {
    const UP: usize = 3 * 1024 * 1024 + 17;
    const DOWN: usize = 5 * 1024 * 1024 + 3;
    let l = listen("127.0.0.1:0".parse().expect("addr"));
    let backend = l.local_addr().expect("addr");
    let (got_tx, got_rx) = tokio::sync::oneshot::channel::<(Vec<u8>, Vec<u8>)>();
    tokio::spawn(async move {
        // Connection 1: the client half-closes first, the backend answers after its EOF.
        let (mut s, _) = l.accept().await.expect("accept");
        let _ = read_head(&mut s).await;
        s.write_all(b"hello\n").await.expect("hello");
        let mut upload = Vec::new();
        s.read_to_end(&mut upload).await.expect("upload");
        s.write_all(format!("{}\n", upload.len()).as_bytes())
            .await
            .expect("len");
        s.write_all(&pattern(DOWN, 7)).await.expect("bulk");
        s.write_all(b"tail\n").await.expect("tail");
        s.shutdown().await.expect("shutdown");
        // Connection 2: the backend half-closes first and keeps reading.
        let (mut s2, _) = l.accept().await.expect("accept 2");
        let head = read_head(&mut s2).await;
        s2.write_all(b"bye\n").await.expect("bye");
        s2.shutdown().await.expect("shutdown 2");
        let mut rest = Vec::new();
        s2.read_to_end(&mut rest).await.expect("rest");
        let _ = got_tx.send((upload, [head, rest].concat()));
    });
    let mut cfg = RouterConfig::default();
    cfg.listeners.push(listener("http", "127.0.0.35", HTTP));
    cfg.routes.push(route("a.test", &[], &[backend]));
    let (_router, addrs) = start(cfg).await;
    let head = b"POST / HTTP/1.1\r\nHost: a.test\r\n\r\n";

    let mut c = TcpStream::connect(addrs["http"]).await.expect("connect");
    c.write_all(head).await.expect("head");
    let mut hello = [0u8; 6];
    c.read_exact(&mut hello).await.expect("hello");
    assert_eq!(&hello, b"hello\n");
    let up = pattern(UP, 3);
    c.write_all(b"x").await.expect("small");
    c.write_all(&up).await.expect("upload");
    c.shutdown().await.expect("half-close");
    let (down, closed) = read_until_closed(&mut c, Duration::from_secs(20)).await;
    assert!(closed, "EOF reached the client");
    let want = [
        format!("{}\n", UP + 1).into_bytes(),
        pattern(DOWN, 7),
        b"tail\n".to_vec(),
    ]
    .concat();
    assert_eq!(down.len(), want.len(), "download length");
    assert!(down == want, "download intact and in order");

    let mut c2 = TcpStream::connect(addrs["http"]).await.expect("connect 2");
    c2.write_all(head).await.expect("head 2");
    let mut bye = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c2.read_to_end(&mut bye))
        .await
        .expect("backend's EOF passed on")
        .expect("read");
    assert_eq!(bye, b"bye\n");
    let late = pattern(2 * 1024 * 1024, 9);
    c2.write_all(&late)
        .await
        .expect("write after the backend's half-close");
    c2.shutdown().await.expect("half-close 2");

    let (upload, second) = tokio::time::timeout(Duration::from_secs(20), got_rx)
        .await
        .expect("backend done")
        .expect("backend result");
    assert!(upload == [b"x".to_vec(), up].concat(), "upload intact");
    assert!(
        second == [head.to_vec(), late].concat(),
        "bytes sent after the backend's half-close arrived"
    );
}
