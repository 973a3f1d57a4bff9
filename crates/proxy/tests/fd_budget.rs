//! The router's default connection limit comes from the process's open-file limit, and the
//! router survives EMFILE. Its own test binary: it lowers this process's soft `RLIMIT_NOFILE`
//! (with `prlimit`), which would disturb other tests. Loopback only.

mod common;

use common::*;
use kawaii_proxy::{ConnBudget, DomainRouter, ErrorKind, ListenerProtocol, RouterConfig};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const SOFT_NOFILE: u64 = 1500;

async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> bool {
    use tokio::io::AsyncReadExt;
    if s.write_all(msg).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; msg.len()];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf)).await,
        Ok(Ok(_))
    ) && buf == msg
}

fn errors(router: &DomainRouter, kind: ErrorKind) -> u64 {
    router
        .status()
        .listeners
        .iter()
        .filter_map(|l| l.errors.get(&kind))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_holds_at_the_fd_limit_and_emfile_recovers() {
    let pid = std::process::id().to_string();
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={SOFT_NOFILE}:")])
        .output()
        .expect("run prlimit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(kawaii_proxy::budget::open_file_limit(), Some(SOFT_NOFILE));
    let budget = ConnBudget::from_fd_limit();
    let max = kawaii_proxy::budget::max_connections_for(SOFT_NOFILE);
    assert_eq!(budget.max(), max);
    assert!(
        max > kawaii_proxy::budget::MIN_CONNECTIONS,
        "derived, not the floor"
    );

    let (backend, _) = echo_backend();
    let router = DomainRouter::with_budget(None, kawaii_sniff::DEFAULT_MAX_HEAD, budget.clone());
    let mut cfg = RouterConfig::default();
    cfg.listeners
        .push(listener("http", "127.0.0.40", ListenerProtocol::Http));
    cfg.routes.push(route("a.test", &[], &[backend]));
    router.apply(cfg).await.expect("apply");
    let addr = bound(&router)["http"];
    let head = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";

    // Up to the budget: every connection is served and stays.
    let mut held = Vec::new();
    for i in 0..max {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        assert!(roundtrip(&mut c, head).await, "connection {i} of {max}");
        held.push(c);
    }
    assert_eq!(budget.in_use(), max);
    // One more: closed at once, counted; the held ones are unharmed.
    let mut over = TcpStream::connect(addr).await.expect("connect");
    let _ = over.write_all(head).await;
    let (got, closed) = read_until_closed(&mut over, Duration::from_secs(2)).await;
    assert!(closed && got.is_empty(), "served over the budget");
    assert!(errors(&router, ErrorKind::ConnectionBudget) >= 1);
    for (i, c) in held.iter_mut().enumerate().step_by(7) {
        assert!(
            roundtrip(c, b"still here").await,
            "held connection {i} harmed"
        );
    }

    // EMFILE: something else takes every free descriptor. Sockets made beforehand connect (the
    // kernel queues them), the router's accept fails and backs off, the held ones still work.
    for _ in 0..4 {
        held.pop();
    }
    let waiting: Vec<TcpSocket> = (0..2)
        .map(|_| TcpSocket::new_v4().expect("socket"))
        .collect();
    let mut filler = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }
    let mut queued = Vec::new();
    for s in waiting {
        queued.push(s.connect(addr).await.expect("queued by the kernel"));
    }
    let failed = eventually(Duration::from_secs(3), || {
        errors(&router, ErrorKind::AcceptFailed) >= 1
    })
    .await;
    assert!(failed.is_some(), "accept never hit EMFILE");
    for (i, c) in held.iter_mut().enumerate().step_by(9) {
        assert!(
            roundtrip(c, b"during EMFILE").await,
            "held connection {i} harmed"
        );
    }

    // Descriptors free again: the queued connections are accepted and served.
    drop(filler);
    for (i, c) in queued.iter_mut().enumerate() {
        assert!(
            roundtrip(c, head).await,
            "queued connection {i} after EMFILE"
        );
    }
    let mut fresh = TcpStream::connect(addr).await.expect("connect");
    assert!(
        roundtrip(&mut fresh, head).await,
        "no recovery after EMFILE"
    );
}
