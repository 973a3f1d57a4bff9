//! The API listener's TLS and limits, in process on loopback (no root): HTTPS with a CA made
//! here by `openssl`, client certificates, the CLI over TLS; open connections, request head
//! size and deadline (slowloris), idle connections, body size, per-token rate; failed logins
//! logged without the token and counted; a bounded method label; `metrics_auth`; only an admin
//! changes `[api]`.

use kawaii_api::ApiState;
use kawaii_model::valid::{ApiLimits, ApiTls, Role};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VIEWER: &str = "viewer-token-limits-1f2e";
const OPERATOR: &str = "operator-token-limits-3c4d";
const ADMIN: &str = "admin-token-limits-5a6b";

/// Everything the daemon logged while these tests ran.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn state(limits: ApiLimits, metrics_auth: bool) -> ApiState {
    log();
    let g = kawaii_model::Gateway::parse(
        "[gateway]\nname = \"acme\"\nprivate_subnet = \"10.1.0.0/24\"\n",
        kawaii_model::Format::Toml,
    )
    .expect("doc");
    let store = Arc::new(kawaii_store::SqliteStore::in_memory_with(&g).expect("store"));
    let state = ApiState::new(store, prometheus_client::registry::Registry::default());
    state.set_tokens(
        [
            (VIEWER, Role::Viewer),
            (OPERATOR, Role::Operator),
            (ADMIN, Role::Admin),
        ]
        .iter()
        .map(|(t, role)| kawaii_api::token_spec(*role, t))
        .collect(),
    );
    state.set_policy(metrics_auth, limits);
    state
}

/// The API served on a loopback port until the returned sender drops.
async fn serve(
    state: &ApiState,
    tls: Option<&ApiTls>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tls = tls.map(|t| kawaii_api::tls_acceptor(t).expect("TLS files"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = kawaii_api::router(state.clone());
    tokio::spawn(kawaii_api::serve(
        listener,
        router,
        state.clone(),
        tls,
        async {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

/// One raw HTTP/1.1 exchange: the status code (0: closed without an answer) and the text.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn get(path: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: api\r\n{auth}Connection: close\r\n\r\n").into_bytes()
}

/// Reads until the peer closes; how long that took.
async fn closed_after(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn metric(addr: SocketAddr, token: Option<&str>, line: &str) -> u64 {
    let (code, text) = raw(addr, &get("/metrics", token)).await;
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(line).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_heads_bodies_timeouts_and_rates_are_limited() {
    let limits = ApiLimits {
        max_connections: 4,
        max_body_bytes: 2048,
        max_header_bytes: 8192,
        rate_limit: 2,
        header_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(1500),
    };
    let state = state(limits, false);
    let (addr, _stop) = serve(&state, None).await;

    // Slowloris: a head trickled a byte at a time is cut at the header deadline.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let start = Instant::now();
    let head = b"GET /v1/status HTTP/1.1\r\nHost: api\r\nX-Slow: ";
    let mut cut = None;
    for b in head.iter().chain(std::iter::repeat(&b'a')) {
        if slow.write_all(&[*b]).await.is_err() {
            cut = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await
        {
            cut = Some(start.elapsed());
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never cut off");
    }
    let cut = cut.expect("cut off");
    assert!(cut >= Duration::from_millis(700), "cut too early: {cut:?}");

    // A connection that says nothing is closed too; so is one idle after a request, and one
    // whose body stalls (the idle timeout).
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let t = closed_after(&mut silent, Duration::from_secs(5)).await;
    assert!(t.is_some(), "a silent connection stays open");
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .expect("send");
    let t = closed_after(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(t >= Duration::from_millis(700), "{t:?}");
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(
            format!(
                "PUT /v1/gateway HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {ADMIN}\r\n\
                 Content-Length: 100\r\n\r\n{{\"gate"
            )
            .as_bytes(),
        )
        .await
        .expect("send");
    let t = closed_after(&mut stalled, Duration::from_secs(5))
        .await
        .expect("a stalled body is cut off");
    assert!(t >= Duration::from_millis(1400), "{t:?}");

    // Open connections: four held, the fifth closed at once, a slot freed is usable again.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
            .await
            .expect("send");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "held connection");
        held.push(s);
    }
    let (code, _) = raw(addr, &get("/healthz", None)).await;
    assert_eq!(code, 0, "a fifth connection was served");
    held.pop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, _) = raw(addr, &get("/healthz", None)).await;
    assert_eq!(code, 200, "a freed slot is not reused");
    // The held ones still answer.
    for s in &mut held {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
            .await
            .expect("send");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("answer");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "a held connection was harmed"
        );
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Heads beyond max_header_bytes: 431. Bodies beyond max_body_bytes: 413.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: api\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(20_000)
    );
    let (code, text) = raw(addr, big.as_bytes()).await;
    assert_eq!(code, 431, "{text}");
    let body = format!("{{\"name\": \"{}\"}}", "x".repeat(10_000));
    let put = format!(
        "PUT /v1/gateway HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nIf-Match: \"1\"\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let (code, text) = raw(addr, put.as_bytes()).await;
    assert_eq!(code, 413, "{text}");

    // Per-token rate: a burst of twice the rate, then 429 with Retry-After; others unaffected.
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(raw(addr, &get("/v1/gateway", Some(VIEWER))).await);
    }
    let refused = codes.iter().filter(|(c, _)| *c == 429).count();
    assert!(refused >= 1, "{codes:?}");
    let (_, text) = codes.iter().find(|(c, _)| *c == 429).expect("a 429");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    let (code, _) = raw(addr, &get("/v1/gateway", Some(OPERATOR))).await;
    assert_eq!(code, 200, "one token's rate limited another");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, _) = raw(addr, &get("/v1/gateway", Some(VIEWER))).await;
    assert_eq!(code, 200, "the rate does not recover");

    for (limit, at_least) in [
        ("connections", 1),
        ("header_timeout", 2),
        ("idle_timeout", 1),
        ("body", 1),
        ("rate", 1),
    ] {
        let n = metric(
            addr,
            None,
            &format!("kawaii_api_limited_total{{limit=\"{limit}\"}}"),
        )
        .await;
        assert!(
            n >= at_least,
            "kawaii_api_limited_total{{limit={limit}}} = {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_methods_metrics_auth_and_the_api_section() {
    let state = state(ApiLimits::default(), true);
    let (addr, _stop) = serve(&state, None).await;

    // Failed logins: logged without the token, counted by reason.
    let wrong = "wrong-token-that-must-not-be-logged-77";
    assert_eq!(raw(addr, &get("/v1/gateway", Some(wrong))).await.0, 401);
    assert_eq!(raw(addr, &get("/v1/gateway", None)).await.0, 401);
    // metrics_auth: /metrics needs a token, any role.
    assert_eq!(raw(addr, &get("/metrics", None)).await.0, 401);
    let unknown = metric(
        addr,
        Some(VIEWER),
        "kawaii_api_auth_failures_total{reason=\"unknown\"}",
    )
    .await;
    let missing = metric(
        addr,
        Some(VIEWER),
        "kawaii_api_auth_failures_total{reason=\"missing\"}",
    )
    .await;
    assert_eq!((unknown, missing), (1, 2));
    let logged = String::from_utf8_lossy(&log().lock().expect("log")).into_owned();
    assert!(
        logged.matches("API authentication failed").count() >= 3,
        "{logged}"
    );
    assert!(
        !logged.contains(wrong) && !logged.contains(VIEWER),
        "{logged}"
    );

    // Methods outside the known set are labelled "other", whatever was sent.
    let (_, _) = raw(
        addr,
        b"FROBNICATE-XYZ /healthz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (_, text) = raw(addr, &get("/metrics", Some(VIEWER))).await;
    assert!(!text.contains("FROBNICATE"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");

    // Only an admin changes [api].
    let (code, text) = raw(addr, &get("/v1/gateway", Some(ADMIN))).await;
    assert_eq!(code, 200, "{text}");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let mut view: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let rev = view["revision"].as_u64().expect("revision");
    view["gateway"]["api"] = serde_json::json!({"listen": "127.0.0.1:7781"});
    let doc = view["gateway"].to_string();
    let put = |token: &str, rev: u64| {
        format!(
            "PUT /v1/gateway HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nIf-Match: \"{rev}\"\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{doc}",
            doc.len()
        )
    };
    let (code, text) = raw(addr, put(OPERATOR, rev).as_bytes()).await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("change [api]"), "{text}");
    let (code, text) = raw(addr, put(ADMIN, rev).as_bytes()).await;
    assert_eq!(code, 200, "{text}");
}

/// The PKI's files as `[api]` names them.
struct Pki {
    pki: kawaii_testkit::tls::Pki,
    _dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = kawaii_testkit::tls::Pki::new(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        Pki { pki, _dir: dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.pki.path(name)
    }

    fn tls(&self, client_ca: bool) -> ApiTls {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        ApiTls {
            cert_file: s(&self.path("server.pem")),
            key_file: s(&self.path("server.key")),
            client_ca_file: client_ca.then(|| s(&self.path("ca.pem"))),
        }
    }
}

/// Runs the kawaii CLI against `addr` over HTTPS; its exit status and stderr.
fn cli(addr: SocketAddr, extra: &[&Path], flags: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kawaii"));
    cmd.args([
        "status",
        "--api",
        &format!("https://127.0.0.1:{}", addr.port()),
    ])
    .args(["--token", VIEWER]);
    for (flag, path) in flags.iter().zip(extra) {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.output().expect("run kawaii");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_and_the_cli() {
    let pki = Pki::new();
    let state = state(ApiLimits::default(), false);

    // A key file others can read is refused, naming the field, without its content.
    let loose = pki.path("loose.key");
    std::fs::copy(pki.path("server.key"), &loose).expect("copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bad = pki.tls(false);
    bad.key_file = loose.to_string_lossy().into_owned();
    let e = kawaii_api::tls_acceptor(&bad)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("api.tls_key_file") && e.contains("chmod 600"),
        "{e}"
    );
    assert!(!e.contains("PRIVATE KEY"), "{e}");

    let (addr, _stop) = serve(&state, Some(&pki.tls(false))).await;
    let ca = pki.path("ca.pem");
    let (ok, err) = tokio::task::spawn_blocking(move || cli(addr, &[&ca], &["--ca-cert"]))
        .await
        .expect("cli");
    assert!(ok, "the CLI over TLS with --ca-cert: {err}");
    let (ok, err) = tokio::task::spawn_blocking(move || cli(addr, &[], &[]))
        .await
        .expect("cli");
    assert!(!ok, "a certificate from an unknown CA was trusted");
    assert!(err.contains("cannot reach the kawaii API"), "{err}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let (code, _) = raw(addr, &get("/healthz", None)).await;
    assert_eq!(code, 0);

    // With a client CA: no client certificate, no API; with one, the CLI works.
    let (addr, _stop2) = serve(&state, Some(&pki.tls(true))).await;
    let ca = pki.path("ca.pem");
    let (ok, _) = tokio::task::spawn_blocking(move || cli(addr, &[&ca], &["--ca-cert"]))
        .await
        .expect("cli");
    assert!(!ok, "no client certificate, yet served");
    let files = [
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    ];
    let (ok, err) = tokio::task::spawn_blocking(move || {
        let [a, b, c] = &files;
        cli(
            addr,
            &[a, b, c],
            &["--ca-cert", "--client-cert", "--client-key"],
        )
    })
    .await
    .expect("cli");
    assert!(ok, "with a client certificate: {err}");
    let _ = std::io::stderr().flush();
}
