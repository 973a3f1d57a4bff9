//! The operator's first hour in the lab: a rule's counter keeps its value across an unrelated
//! change (a new peering), under the same chain label in status and metrics, and across a
//! restart of the daemon (which replaces the table whole); a peering whose
//! next hop no connected network reaches is accepted with a warning, then `/readyz`, the status
//! header and the peering's state say the gateway is degraded and name the peering, until it
//! is removed.

use kawaii_testkit::lab::{self, LAB_TOML};
use kawaii_testkit::wait_for;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// The packets of `rule` in `/v1/status`, summed over the chains (and families) that have it.
fn packets(status: &Value, rule: &str) -> u64 {
    let rules = status["details"]["rules"].as_array().cloned();
    let of_rule = rules.into_iter().flatten().filter(|r| r["rule"] == rule);
    of_rule.map(|r| r["packets"].as_u64().unwrap_or(0)).sum()
}

/// The egress counter of `rule` in `/v1/status` (chain, packets).
fn counter(status: &Value, rule: &str) -> Option<(String, u64)> {
    status["details"]["rules"]
        .as_array()?
        .iter()
        .find(|r| r["rule"] == rule)
        .map(|r| {
            (
                r["chain"].as_str().unwrap_or_default().to_string(),
                r["packets"].as_u64().unwrap_or(0),
            )
        })
}

#[test]
fn counters_survive_unrelated_changes_and_readyz_names_a_failing_peering() {
    let kawaii = Path::new(env!("CARGO_BIN_EXE_kawaii"));
    let config = LAB_TOML.replace("[[zones]]", "[api]\nready_timeout = \"3s\"\n\n[[zones]]");
    let (mut topo, mut l) =
        lab::start("rdy", kawaii, &config).unwrap_or_else(|e| panic!("lab: {e}"));
    let api = l.api();

    // SMTP out is dropped by egress-1, a set element with its own counter.
    for _ in 0..3 {
        assert!(l.vm1.curl("http://198.51.100.10:25/", "1").is_none());
    }
    let (chain, before) = wait_for(Duration::from_secs(10), "egress-1 counted", || {
        counter(&api.status(), "egress-1").filter(|(_, n)| *n >= 3)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let metrics = api.as_token(None).get("/metrics").body;
    assert!(
        metrics.contains(&format!(
            "kawaii_rule_packets_total{{chain=\"{chain}\",rule=\"egress-1\"}}"
        )),
        "status says chain {chain}; metrics:\n{metrics}"
    );

    // An unrelated change that adds chains: a peering on the public network.
    let r = api.post(
        "/v1/vpc-peerings",
        &json!({"name": "near", "subnet": "10.2.0.0/24", "via": "203.0.113.77", "consent": "none",
                "ingress_rules": [{"protocol": "tcp", "ports": "443"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let rev = r.etag().expect("etag");
    wait_for(Duration::from_secs(10), "the peering applied", || {
        let s = api.status();
        (s["applied_revision"].as_u64() >= Some(rev)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let table =
        l.gw.run(&["nft", "list", "table", "inet", "kawaii"])
            .expect("nft list");
    assert!(
        table.contains("chain peering-near-"),
        "the peering's chains are in the kernel:\n{table}"
    );
    // The counters are read back after each apply, every 2 s at most.
    std::thread::sleep(Duration::from_secs(3));
    let (_, after) = counter(&api.status(), "egress-1").expect("egress-1 still counted");
    assert!(
        after >= before,
        "egress-1 went from {before} to {after} across an unrelated change"
    );

    // A peering whose next hop is on no attached network: accepted with a warning...
    let r = api.post(
        "/v1/vpc-peerings",
        &json!({"name": "far", "subnet": "10.3.0.0/24", "via": "198.51.100.77", "consent": "none"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.body.contains("\"path\":\"vpc_peerings[1].via\""),
        "{}",
        r.body
    );
    // ...then the kernel refuses its route: degraded, and the peering named everywhere.
    let body = wait_for(Duration::from_secs(10), "/readyz degraded", || {
        let r = api.as_token(None).get("/readyz");
        (r.status == 503 && r.body.contains("degraded")).then_some(r.body)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", l.kawaii.log(&mut topo)));
    assert!(
        body.contains("vpc peering \"far\" (vpc_peerings[1])") && body.contains("Nexthop"),
        "{body}"
    );
    let s = api.status();
    let netlink = s["drivers"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "netlink").cloned())
        .expect("netlink driver status");
    assert_eq!(netlink["resource"], "vpc_peerings[1]", "{netlink}");
    let far = s["details"]["vpc_peerings"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "far").cloned())
        .expect("the peering's state");
    assert_eq!(far["state"], "failed", "{far}");
    assert!(
        far["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Nexthop"),
        "{far}"
    );
    let token = l.kawaii.token().expect("bootstrap token");
    let header =
        l.gw.run(&[kawaii.to_str().expect("path"), "status", "--token", &token])
            .expect("kawaii status");
    // The header table: its column names, then the gateway's line.
    assert!(
        header.lines().take(2).any(|l| l.contains("DEGRADED")),
        "{header}"
    );
    // Past api.ready_timeout the body says how long the data plane has been behind, too.
    wait_for(Duration::from_secs(10), "/readyz stalled", || {
        let r = api.as_token(None).get("/readyz");
        r.body.contains("behind the desired state").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // Removed: ready again.
    assert_eq!(api.delete("/v1/vpc-peerings/far").status, 200);
    wait_for(Duration::from_secs(10), "/readyz ready again", || {
        (api.as_token(None).get("/readyz").status == 200).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(api.status()["degraded"].is_null());

    // A restart replaces the table whole; the kernel's counts are carried into the new one: a
    // set element's (egress-1, SMTP dropped) and a chain rule's (egress-policy, vm1's web out).
    assert!(l.vm1.curl("http://198.51.100.10/", "2").is_some());
    let counted = wait_for(Duration::from_secs(10), "egress-policy counted", || {
        let s = api.status();
        let n = (packets(&s, "egress-1"), packets(&s, "egress-policy"));
        (n.0 >= 3 && n.1 > 0).then_some(n)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    topo.proc(l.kawaii.proc).stop(Duration::from_secs(5));
    l.kawaii.restart(&mut topo).expect("restart");
    l.kawaii
        .wait_ready(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", l.kawaii.log(&mut topo)));
    std::thread::sleep(Duration::from_secs(3));
    let s = api.status();
    let now = (packets(&s, "egress-1"), packets(&s, "egress-policy"));
    assert!(
        now.0 >= counted.0 && now.1 >= counted.1,
        "counts before the restart {counted:?}, after {now:?}"
    );
}
