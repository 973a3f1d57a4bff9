//! The nftables data plane end to end, in the lab topology with real tools (curl, nft, python
//! clients): egress NAT and filtering, deny-all ingress, port forwarding for tcp and udp, hairpin,
//! live updates, and the table's isolation from others.

mod common;

use common::curl;
use kawaii_testkit::lab::{self, GatewayLab, LabOptions};
use kawaii_testkit::{Host, Topology, wait_for};
use std::time::{Duration, Instant};

struct Lab {
    topo: Topology,
    lab: GatewayLab,
    token: String,
}

impl Lab {
    fn new(tag: &str, config: &str) -> Lab {
        assert!(
            kawaii_testkit::can_run(),
            "end-to-end tests need root and iproute2"
        );
        let mut topo = Topology::new(tag).expect("topology");
        let cfg = topo.dir().join("gateway.toml");
        std::fs::write(&cfg, config).expect("config");
        let opts = LabOptions {
            kawaii: common::bin().into(),
            config: cfg,
            env: vec![],
        };
        let lab = lab::build(&mut topo, &opts).unwrap_or_else(|e| panic!("lab: {e}"));
        let token = lab::admin_token(&lab.state).expect("bootstrap token");
        Lab { topo, lab, token }
    }

    fn api(&self, method: &str, path: &str, body: Option<&str>) -> common::Reply {
        curl(&self.lab.gw, method, path, Some(&self.token), body, &[])
    }

    fn nft_state(&self) -> String {
        self.lab
            .gw
            .run(&["nft", "-a", "-s", "list", "table", "inet", "kawaii"])
            .expect("nft list")
    }

    fn log(&mut self) -> String {
        let i = self.lab.kawaii;
        self.topo.proc(i).output()
    }
}

fn default_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/lab.toml"
    ))
    .expect("lab.toml")
}

/// `curl` from `host`: Some(body) on success, None on failure/timeout.
fn get(host: &Host, url: &str, timeout: &str) -> Option<String> {
    let out = host
        .exec(&["curl", "-s", "-m", timeout, url])
        .expect("curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn udp(host: &Host, addr: &str, port: u16) -> Option<String> {
    let out = host
        .sh(&format!("echo hello | socat -t1 -T2 - UDP:{addr}:{port}"))
        .ok()?;
    (!out.trim().is_empty()).then_some(out)
}

#[test]
fn egress_nat_forwarding_and_hairpin() {
    let mut l = Lab::new("fw", &default_config());
    let g = l.lab.clone();
    // 1. Egress: the internet host sees the zone's public VIP.
    let body = get(&g.vm1, "http://198.51.100.10/", "3")
        .unwrap_or_else(|| panic!("egress failed\n{}", l.log()));
    assert!(body.contains("you are 203.0.113.10:"), "{body}");
    // 3. Port forwarding, tcp and udp, from the internet host.
    let body = get(&g.internet, "http://203.0.113.10/", "3").expect("tcp forward");
    assert!(
        body.contains("hello from vm1, you are 198.51.100.10:"),
        "{body}"
    );
    let reply = udp(&g.internet, "203.0.113.10", 5353).expect("udp forward");
    assert!(
        reply.contains("vm2 got hello from 198.51.100.10:"),
        "{reply}"
    );
    // 5. Hairpin: vm2 reaches vm1's forward through the public VIP.
    let body = get(&g.vm2, "http://203.0.113.10/", "3").expect("hairpin");
    assert!(body.contains("hello from vm1"), "{body}");
    // The lab's egress rule drops SMTP.
    assert!(
        get(&g.vm1, "http://198.51.100.10:25/", "2").is_none(),
        "tcp/25 must be blocked"
    );

    // Removing the ingress rule closes the forward within 1 s.
    let r = l.api("DELETE", "/v1/ingress-rules/ingress-2", None);
    assert_eq!(r.status, 204, "{}", r.body);
    // Each probe notes when it started: the first unanswered one must have started (so the
    // opening was gone) within 1 s of the API's answer. A probe's own timeout does not count.
    let started = Instant::now();
    let closed = wait_for(Duration::from_secs(5), "udp forward closed", || {
        let at = started.elapsed();
        udp(&g.internet, "203.0.113.10", 5353)
            .is_none()
            .then_some(at)
    })
    .expect("udp forward closes");
    let log = l.log();
    assert!(
        closed < Duration::from_secs(1),
        "udp forward still open {closed:?} after the API answer\n{log}"
    );
    let r = l.api("DELETE", "/v1/ingress-rules/ingress-1", None);
    assert_eq!(r.status, 204);
    let started = Instant::now();
    let closed = wait_for(Duration::from_secs(5), "tcp forward closed", || {
        let at = started.elapsed();
        get(&g.internet, "http://203.0.113.10/", "0.3")
            .is_none()
            .then_some(at)
    })
    .expect("tcp forward closes");
    assert!(
        closed < Duration::from_secs(1),
        "tcp forward still open {closed:?} after the API answer"
    );
    // Metrics name the rules.
    let m = curl(&g.gw, "GET", "/metrics", None, None, &[]);
    assert!(
        m.body
            .contains("kawaii_rule_packets_total{chain=\"forward\",rule=\"egress-1\"}"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("kawaii_chain_drops_total{chain=\"input\"}"),
        "{}",
        m.body
    );
}

#[test]
fn sweep_finds_exactly_the_declared_openings() {
    let l = Lab::new("sweep", &default_config());
    let g = &l.lab;
    let scan = |proto: &str, ports: &str| -> Vec<u16> {
        let out = g
            .internet
            .run(&["python3", &g.svc, "scan", lab::PUBLIC_VIP, proto, ports])
            .expect("scan");
        out.lines().filter_map(|l| l.trim().parse().ok()).collect()
    };
    // TCP 22 (the gateway itself: RST, nothing listens) and 80 (forwarded to vm1) are declared.
    assert_eq!(scan("tcp", "1-1024,5353,51820"), vec![22, 80]);
    assert_eq!(scan("udp", "1-1024,5353,51820"), vec![5353]);
}

#[test]
fn egress_policy_drop_and_accept() {
    let l = Lab::new("egress", &default_config());
    let g = l.lab.clone();
    let mut cfg =
        default_config().replace("egress_policy = \"accept\"", "egress_policy = \"drop\"");
    cfg = cfg.replace("ports = \"25\"", "ports = \"443\"");
    let cur = l.api("GET", "/v1/gateway", None);
    let rev = cur.etag().expect("etag");
    let doc = kawaii_model::Gateway::parse(&cfg, kawaii_model::Format::Toml).expect("parse");
    let body = serde_json::to_string(&doc).expect("json");
    let r = curl(
        &g.gw,
        "PUT",
        "/v1/gateway",
        Some(&l.token),
        Some(&body),
        &[&format!("If-Match: \"{rev}\"")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(2), "egress drop applied", || {
        get(&g.vm1, "http://198.51.100.10/", "0.5")
            .is_none()
            .then_some(())
    })
    .expect("tcp/80 blocked under drop");
    assert!(
        get(&g.vm1, "http://198.51.100.10:443/", "2").is_some(),
        "tcp/443 is the exception"
    );

    // Back to accept with tcp/25 as the exception.
    let cur = l.api("GET", "/v1/gateway", None);
    let rev = cur.etag().expect("etag");
    let doc =
        kawaii_model::Gateway::parse(&default_config(), kawaii_model::Format::Toml).expect("parse");
    let body = serde_json::to_string(&doc).expect("json");
    let r = curl(
        &g.gw,
        "PUT",
        "/v1/gateway",
        Some(&l.token),
        Some(&body),
        &[&format!("If-Match: \"{rev}\"")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(2), "egress accept applied", || {
        get(&g.vm1, "http://198.51.100.10/", "0.5").map(|_| ())
    })
    .expect("tcp/80 open under accept");
    assert!(
        get(&g.vm1, "http://198.51.100.10:25/", "1").is_none(),
        "tcp/25 is the exception"
    );
}

#[test]
fn live_updates_keep_streams_and_other_tables_and_bad_updates_change_nothing() {
    let l = Lab::new("live", &default_config());
    let g = l.lab.clone();
    // 8. Another table in the same namespace.
    g.gw.sh("nft add table inet other; nft add chain inet other c '{ type filter hook input priority 10; policy accept; }'; nft add set inet other s '{ type ipv4_addr; }'; nft add element inet other s '{ 192.0.2.77 }'")
        .expect("other table");
    let other_before =
        g.gw.run(&["nft", "-a", "list", "table", "inet", "other"])
            .expect("list other");

    // 6. A long-lived stream from vm1 through the gateway.
    let stop = l.topo.dir().join("stop-stream");
    let mut client = g.vm1.command(&[
        "python3",
        &g.svc,
        "stream",
        lab::INTERNET,
        "7",
        stop.to_str().expect("path"),
    ]);
    let child = client
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("stream client");
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..100 {
        let body = format!(r#"{{"protocol":"tcp","ports":"{}"}}"#, 10000 + i);
        let r = l.api("POST", "/v1/egress-rules", Some(&body));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // Let the last apply land, then stop the stream.
    let n = l
        .api("GET", "/v1/egress-rules", None)
        .json()
        .as_array()
        .map(Vec::len);
    assert_eq!(n, Some(101));
    wait_for(
        Duration::from_secs(3),
        "the last rule in the kernel",
        || {
            // The rule is an element of the egress set (or a rule, if it overlapped another).
            g.gw.run(&["nft", "list", "table", "inet", "kawaii"])
                .ok()
                .filter(|s| s.contains("10099"))
                .map(|_| ())
        },
    )
    .expect("converged");
    std::fs::write(&stop, "").expect("stop");
    let out = child.wait_with_output().expect("client");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.starts_with("ok "), "the stream broke: {report}");
    let bytes: u64 = report
        .trim()
        .trim_start_matches("ok ")
        .parse()
        .expect("bytes");
    assert!(bytes > 100_000, "too little streamed: {bytes}");

    // 7. Invalid updates (API and file) leave the table as it is, to the byte (handles too).
    let before = l.nft_state();
    let r = l.api(
        "POST",
        "/v1/nat-rules",
        Some(r#"{"destination":"10.1.0.10","protocol":"sctp","ports":"80"}"#),
    );
    assert_eq!(r.status, 400);
    let cfg_path = l.topo.dir().join("gateway.toml");
    std::fs::write(
        &cfg_path,
        default_config().replace("ports = \"22,80\"", "ports = \"22,80,99999\""),
    )
    .expect("write");
    wait_for(Duration::from_secs(3), "the rejection", || {
        l.api("GET", "/v1/status", None)
            .body
            .contains("rejected_config")
            .then_some(())
    })
    .expect("file rejected");
    assert_eq!(l.nft_state(), before, "an invalid update changed the table");
    let other_after =
        g.gw.run(&["nft", "-a", "list", "table", "inet", "other"])
            .expect("list other");
    assert_eq!(other_after, other_before, "kawaii touched another table");
}
