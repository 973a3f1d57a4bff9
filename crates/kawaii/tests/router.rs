//! The domain router end to end through `kawaii serve`: SNI and Host routing on the zone's
//! public VIP from the internet host with real curl and openssl, and kiagateway's `servers.toml`
//! run unchanged.

use kawaii_testkit::api::Api;
use kawaii_testkit::lab;
use kawaii_testkit::serve::{Serve, ServeOptions};
use kawaii_testkit::services::{self_signed as cert, tls_subject as subject};
use kawaii_testkit::{Topology, wait_for, wait_tcp};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const KAWAII: &str = env!("CARGO_BIN_EXE_kawaii");

/// A zone with three domain routes (exact, wildcard, default).
const CONFIG: &str = include_str!("testdata/router.toml");

#[test]
fn sni_and_host_routing_on_the_public_vip() {
    let (mut topo, l) =
        lab::start("rtr", Path::new(KAWAII), CONFIG).unwrap_or_else(|e| panic!("lab: {e}"));
    let dir = topo.dir().to_path_buf();
    let (c1, k1) = cert(&dir, "example.com");
    let (c2, k2) = cert(&dir, "www.example.org");
    topo.spawn(
        &l.vm1,
        "vm1-tls",
        &[
            "openssl", "s_server", "-quiet", "-www", "-accept", "443", "-cert", &c1, "-key", &k1,
        ],
    )
    .expect("s_server");
    topo.spawn(
        &l.vm2,
        "vm2-tls",
        &[
            "openssl", "s_server", "-quiet", "-www", "-accept", "443", "-cert", &c2, "-key", &k2,
        ],
    )
    .expect("s_server");
    topo.spawn(
        &l.vm2,
        "vm2-http",
        &["python3", &l.svc, "http", "vm2", "80"],
    )
    .expect("http");
    for (h, ip) in [
        (&l.vm1, "10.1.0.10:443"),
        (&l.vm2, "10.1.0.11:443"),
        (&l.vm2, "10.1.0.11:80"),
    ] {
        wait_tcp(h, ip.parse().expect("addr"), Duration::from_secs(10)).expect("backend up");
    }
    let vip = "203.0.113.10";
    wait_tcp(
        &l.internet,
        format!("{vip}:443").parse().expect("addr"),
        Duration::from_secs(5),
    )
    .expect("router listening");

    // SNI: each name reaches the backend holding its certificate.
    assert!(
        subject(&l.internet, &format!("{vip}:443"), "example.com").contains("CN = example.com")
    );
    assert!(
        subject(&l.internet, &format!("{vip}:443"), "www.example.org")
            .contains("CN = www.example.org")
    );
    let out = l
        .internet
        .sh(&format!(
            "curl -skv --max-time 5 --resolve example.com:443:{vip} https://example.com/ 2>&1"
        ))
        .expect("curl https");
    assert!(
        out.contains("subject: CN=example.com") && out.contains("200"),
        "{out}"
    );
    // Host on :80: exact, wildcard, default.
    let get = |name: &str| {
        l.internet
            .sh(&format!(
                "curl -s --max-time 5 --resolve {name}:80:{vip} http://{name}/"
            ))
            .unwrap_or_default()
    };
    assert!(get("example.com").contains("hello from vm1"));
    assert!(get("a.example.org").contains("hello from vm2"));
    assert!(
        get("unknown.test").contains("hello from vm1"),
        "default route"
    );
    // An unknown name on TLS gets an alert at once, not a hang.
    let started = std::time::Instant::now();
    assert!(!subject(&l.internet, &format!("{vip}:443"), "nobody.invalid").contains("CN"));
    assert!(started.elapsed() < Duration::from_secs(3));
    // Status shows the routes; the firewall opened exactly the listener ports.
    let api = l.api();
    wait_for(Duration::from_secs(5), "router status", || {
        let s = api.get("/v1/status");
        s.body.contains("\"domain\":\"example.com\"").then_some(())
    })
    .expect("router in status");
    // Status is read live: the connections just made are counted at once, with no refresh wait.
    let before = router_http_total(&api, "example.com");
    assert!(get("example.com").contains("hello from vm1"));
    assert_eq!(
        router_http_total(&api, "example.com"),
        before + 1,
        "counted in /v1/status right away"
    );
    let table =
        l.gw.run(&["nft", "list", "chain", "inet", "kawaii", "services"])
            .expect("nft");
    assert!(table.contains("tcp dport { 80, 443 }"), "{table}");

    // A route change applies live: example.com's http now goes to vm2.
    let r = api.put(
        "/v1/routes/example.com",
        &json!({"domain": "example.com", "http": ["10.1.0.11:80"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(3), "new route", || {
        get("example.com").contains("hello from vm2").then_some(())
    })
    .expect("rerouted");
}

#[test]
fn kiagateway_servers_toml_runs_unchanged() {
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    for (form, toml) in [
        (
            "backends",
            "[backends]\n\"example.com\" = \"127.0.0.1:8001\"\n\"example.org\" = \"127.0.0.1:8002\"\n",
        ),
        (
            "split",
            "[https_backends]\n\"example.com\" = \"127.0.0.1:8443\"\n[http_backends]\n\"example.com\" = \"127.0.0.1:8001\"\n\"example.org\" = \"127.0.0.1:8002\"\n",
        ),
    ] {
        let mut topo = Topology::new("kia").expect("topology");
        let h = topo.host("edge").expect("host");
        let svc = topo.svc().expect("svc.py");
        topo.spawn(&h, "b1", &["python3", &svc, "http", "b1", "8001"])
            .expect("b1");
        topo.spawn(&h, "b2", &["python3", &svc, "http", "b2", "8002"])
            .expect("b2");
        let (c, k) = cert(topo.dir(), "example.com");
        topo.spawn(
            &h,
            "tls",
            &[
                "openssl", "s_server", "-quiet", "-www", "-accept", "8443", "-cert", &c, "-key", &k,
            ],
        )
        .expect("tls");
        let kawaii = Serve::start(
            &mut topo,
            &h,
            "servers.toml",
            toml,
            &ServeOptions::new(KAWAII),
        )
        .expect("kawaii");
        wait_tcp(
            &h,
            "127.0.0.1:80".parse().expect("addr"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", kawaii.log(&mut topo)));
        for backend in ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8443"] {
            wait_tcp(&h, backend.parse().expect("addr"), Duration::from_secs(10))
                .expect("backend up");
        }
        let get = |name: &str| {
            h.sh(&format!(
                "curl -s --max-time 5 --resolve {name}:80:127.0.0.1 http://{name}/"
            ))
            .unwrap_or_default()
        };
        assert!(get("example.com").contains("hello from b1"), "{form}");
        assert!(get("example.org").contains("hello from b2"), "{form}");
        if form == "split" {
            let s = subject(&h, "127.0.0.1:443", "example.com");
            assert!(s.contains("CN = example.com"), "{form}: {s}");
        }
    }
}

/// SIGTERM drains the router through the daemon: the listening sockets close at once (a new
/// connection is refused) while an in-flight download runs to its end, byte for byte, and then
/// `kawaii serve` exits without waiting for the rest of the drain timeout.
#[test]
fn sigterm_refuses_new_connections_and_finishes_a_download() {
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    let mut topo = Topology::new("drn").expect("topology");
    let h = topo.host("edge").expect("host");
    let www = topo.dir().join("www");
    std::fs::create_dir_all(&www).expect("www");
    // 48 MiB of random bytes: read at 12 MB/s the download lasts about four seconds.
    let mut big = vec![0u8; 48 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut big))
        .expect("random bytes");
    std::fs::write(www.join("big.bin"), &big).expect("big.bin");
    topo.spawn(
        &h,
        "backend",
        &[
            "python3",
            "-m",
            "http.server",
            "8001",
            "--bind",
            "127.0.0.1",
            "--directory",
            &www.to_string_lossy(),
        ],
    )
    .expect("backend");
    let kawaii = Serve::start(
        &mut topo,
        &h,
        "servers.toml",
        "[http_backends]\n\"example.com\" = \"127.0.0.1:8001\"\n",
        &ServeOptions::new(KAWAII),
    )
    .expect("kawaii")
    .proc;
    let router: std::net::SocketAddr = "127.0.0.1:80".parse().expect("addr");
    wait_tcp(&h, router, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", topo.proc(kawaii).output()));
    wait_tcp(
        &h,
        "127.0.0.1:8001".parse().expect("addr"),
        Duration::from_secs(10),
    )
    .expect("backend up");

    let out = topo.dir().join("download.bin");
    let download = topo
        .spawn(
            &h,
            "download",
            &[
                "curl",
                "-s",
                "--limit-rate",
                "12M",
                "--max-time",
                "60",
                "-o",
                &out.to_string_lossy(),
                "-w",
                "%{http_code} %{size_download}",
                "--resolve",
                "example.com:80:127.0.0.1",
                "http://example.com/big.bin",
            ],
        )
        .expect("curl");
    wait_for(Duration::from_secs(10), "download under way", || {
        let n = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        (n > 2 << 20).then_some(())
    })
    .expect("download started");

    topo.proc(kawaii).signal("TERM");
    let termed = std::time::Instant::now();
    // New connections are refused: the listening socket is closed, not merely ignored.
    let connect = format!("exec 3<>/dev/tcp/{}/{}", router.ip(), router.port());
    wait_for(Duration::from_secs(3), "new connection refused", || {
        let ok = h
            .command(&["bash", "-c", &connect])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        (!ok).then_some(())
    })
    .expect("refused after SIGTERM");
    let refused = h
        .sh("curl -s -o /dev/null --max-time 3 --resolve example.com:80:127.0.0.1 http://example.com/big.bin; echo $?")
        .expect("curl");
    assert_eq!(refused.trim(), "7", "curl: couldn't connect");
    // ... while the daemon drains and the download is still in flight.
    assert!(topo.proc(kawaii).alive(), "{}", topo.proc(kawaii).output());
    assert!(
        topo.proc(download).alive(),
        "download ended before the check"
    );
    let partial = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    assert!(partial < big.len() as u64, "download already complete");

    wait_for(Duration::from_secs(30), "download to finish", || {
        (!topo.proc(download).alive()).then_some(())
    })
    .expect("download finished");
    let finished = termed.elapsed();
    let status = topo.proc(download).output();
    assert_eq!(status.trim(), format!("200 {}", big.len()), "curl -w");
    let got = std::fs::read(&out).expect("downloaded file");
    assert!(
        got == big,
        "download differs ({} of {} bytes)",
        got.len(),
        big.len()
    );

    // Nothing is left to drain: serve exits well before its 10 s drain timeout.
    wait_for(Duration::from_secs(15), "kawaii to exit", || {
        (!topo.proc(kawaii).alive()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", topo.proc(kawaii).output()));
    let exited = termed.elapsed();
    eprintln!("after SIGTERM: download done in {finished:?}, serve exited in {exited:?}");
    assert!(
        exited < Duration::from_secs(9),
        "exited {exited:?} after SIGTERM (download done after {finished:?}): waited for the drain timeout"
    );
}

/// Connections so far on `domain`'s HTTP route, from `/v1/status`.
fn router_http_total(api: &Api, domain: &str) -> u64 {
    let s = api.status();
    s["details"]["router"]["routes"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["domain"] == domain && r["protocol"] == "http")
                .and_then(|r| r["total_connections"].as_u64())
        })
        .unwrap_or_else(|| panic!("no http route {domain} in status: {s}"))
}
