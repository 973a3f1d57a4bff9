//! The nftables data plane end to end, in the lab topology with real tools (curl, nft, python
//! clients): egress NAT and filtering, deny-all ingress, port forwarding for tcp and udp, hairpin,
//! live updates, and the table's isolation from others.

use kawaii_testkit::api::Api;
use kawaii_testkit::lab::{self, GatewayLab, LAB_TOML};
use kawaii_testkit::{Host, Topology, wait_for};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

struct Lab {
    topo: Topology,
    lab: GatewayLab,
    api: Api,
}

impl Lab {
    fn new(tag: &str, config: &str) -> Lab {
        let kawaii = Path::new(env!("CARGO_BIN_EXE_kawaii"));
        let (topo, lab) = lab::start(tag, kawaii, config).unwrap_or_else(|e| panic!("lab: {e}"));
        let api = lab.api();
        Lab { topo, lab, api }
    }

    fn nft_state(&self) -> String {
        self.lab
            .gw
            .run(&["nft", "-a", "-s", "list", "table", "inet", "kawaii"])
            .expect("nft list")
    }

    fn log(&mut self) -> String {
        self.lab.kawaii.log(&mut self.topo)
    }

    /// How long after the write `r` was answered the daemon reported it applied (under 1 s).
    fn applied_within(&mut self, r: &kawaii_testkit::api::Reply) -> Duration {
        let rev = r.etag().expect("the write's revision");
        let started = Instant::now();
        let api = self.api.clone();
        let took = wait_for(Duration::from_secs(5), "the write applied", || {
            (api.status()["applied_revision"].as_u64() >= Some(rev)).then(|| started.elapsed())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        assert!(
            took < Duration::from_secs(1),
            "applied {took:?} after the answer"
        );
        took
    }

    /// Replaces the whole document with `config` (guarded by the current revision).
    fn put_config(&self, config: &str) {
        let rev = self.api.get("/v1/gateway").etag().expect("etag");
        let doc = kawaii_model::Gateway::parse(config, kawaii_model::Format::Toml).expect("parse");
        let doc = serde_json::to_value(&doc).expect("json");
        let r = self.api.put_if_match("/v1/gateway", &doc, rev);
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

fn udp(host: &Host, addr: &str, port: u16) -> Option<String> {
    let out = host
        .sh(&format!("echo hello | socat -t1 -T2 - UDP:{addr}:{port}"))
        .ok()?;
    (!out.trim().is_empty()).then_some(out)
}

#[test]
fn egress_nat_forwarding_and_hairpin() {
    let mut l = Lab::new("fw", LAB_TOML);
    let g = l.lab.clone();
    // 1. Egress: the internet host sees the zone's public VIP.
    let body = g
        .vm1
        .curl("http://198.51.100.10/", "3")
        .unwrap_or_else(|| panic!("egress failed\n{}", l.log()));
    assert!(body.contains("you are 203.0.113.10:"), "{body}");
    // 3. Port forwarding, tcp and udp, from the internet host.
    let body = g
        .internet
        .curl("http://203.0.113.10/", "3")
        .expect("tcp forward");
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
    let body = g.vm2.curl("http://203.0.113.10/", "3").expect("hairpin");
    assert!(body.contains("hello from vm1"), "{body}");
    // The lab's egress rule drops SMTP.
    assert!(
        g.vm1.curl("http://198.51.100.10:25/", "2").is_none(),
        "tcp/25 must be blocked"
    );

    // Removing an ingress rule closes its forward within 1 s: the data plane has the change
    // (`applied_revision`) within 1 s of the API's answer, and from then on nothing gets in.
    let r = l.api.delete("/v1/ingress-rules/ingress-2");
    assert_eq!(r.status, 200, "{}", r.body);
    let took = l.applied_within(&r);
    assert!(
        udp(&g.internet, "203.0.113.10", 5353).is_none(),
        "udp forward still open {took:?} after the API answer, once applied\n{}",
        l.log()
    );
    let r = l.api.delete("/v1/ingress-rules/ingress-1");
    assert_eq!(r.status, 200);
    let took = l.applied_within(&r);
    assert!(
        g.internet.curl("http://203.0.113.10/", "1").is_none(),
        "tcp forward still open {took:?} after the API answer, once applied"
    );
    // Metrics name the rules.
    let m = l.api.as_token(None).get("/metrics");
    assert!(
        m.body
            .contains("kawaii_rule_packets_total{chain=\"egress\",rule=\"egress-1\"}"),
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
    let l = Lab::new("sweep", LAB_TOML);
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
    let l = Lab::new("egress", LAB_TOML);
    let g = l.lab.clone();
    let mut cfg = LAB_TOML.replace("egress_policy = \"accept\"", "egress_policy = \"drop\"");
    cfg = cfg.replace("ports = \"25\"", "ports = \"443\"");
    l.put_config(&cfg);
    wait_for(Duration::from_secs(2), "egress drop applied", || {
        g.vm1
            .curl("http://198.51.100.10/", "0.5")
            .is_none()
            .then_some(())
    })
    .expect("tcp/80 blocked under drop");
    assert!(
        g.vm1.curl("http://198.51.100.10:443/", "2").is_some(),
        "tcp/443 is the exception"
    );

    // Back to accept with tcp/25 as the exception.
    l.put_config(LAB_TOML);
    wait_for(Duration::from_secs(2), "egress accept applied", || {
        g.vm1.curl("http://198.51.100.10/", "0.5").map(|_| ())
    })
    .expect("tcp/80 open under accept");
    assert!(
        g.vm1.curl("http://198.51.100.10:25/", "1").is_none(),
        "tcp/25 is the exception"
    );
}

#[test]
fn live_updates_keep_streams_and_other_tables_and_bad_updates_change_nothing() {
    let l = Lab::new("live", LAB_TOML);
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
        let body = json!({"protocol": "tcp", "ports": (10000 + i).to_string()});
        let r = l.api.post("/v1/egress-rules", &body);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // Let the last apply land, then stop the stream.
    let n = l
        .api
        .get("/v1/egress-rules")
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
    let r = l.api.post(
        "/v1/nat-rules",
        &json!({"destination": "10.1.0.10", "protocol": "sctp", "ports": "80"}),
    );
    assert_eq!(r.status, 400);
    let cfg_path = l.lab.kawaii.config.clone();
    std::fs::write(
        &cfg_path,
        LAB_TOML.replace("ports = \"22,80\"", "ports = \"22,80,99999\""),
    )
    .expect("write");
    wait_for(Duration::from_secs(3), "the rejection", || {
        l.api
            .get("/v1/status")
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
