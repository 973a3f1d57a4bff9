//! An office on our own private subnet (docs/ipsec.md, "An office on our own subnet"): both
//! sides are 10.1.0.0/24, down to the host addresses (the office's host is 10.1.0.10 like vm1).
//! Through aliases on both sides vm1 reaches the office's host at 10.93.0.10 and is seen as
//! 10.73.0.10, the office's host reaches vm1 at 10.73.0.10 and is seen as 10.93.0.10, while our
//! own 10.1.0.0/24 stays on our LAN for the gateway, the hosts and the Internet. The mark and
//! the policy rules that steer it go when the connection does.

use super::{KAWAII, PSK, tail};
use kawaii_testkit::lab;
use kawaii_testkit::{Host, slurp};
use std::path::Path;
use std::time::{Duration, Instant};

const CONN: &str = "/v1/ipsec/office";

/// kawaii's policy rules on `gw` (protocol 177).
fn our_rules(gw: &Host) -> String {
    let all = gw.run(&["ip", "-4", "rule", "show"]).unwrap_or_default();
    all.lines()
        .filter(|l| l.contains(" proto 177"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_office_on_our_own_subnet_through_aliases_on_both_sides() {
    let psk_line = format!("pre_shared_key = \"{PSK}\"");
    let config = lab::LAB_TOML.to_string() + &lab::twin_toml(&psk_line);
    let (mut topo, lab) =
        lab::start("ipsectw", Path::new(KAWAII), &config).unwrap_or_else(|e| panic!("lab: {e}"));
    let o = lab::twin_office(&mut topo, (&lab.router, &lab.svc), PSK)
        .unwrap_or_else(|e| panic!("office: {e}"));
    let rules = our_rules(&lab.gw);
    assert!(
        rules.contains("218:\tfrom all fwmark 0x6b61 lookup 220")
            && rules.contains("219:\tfrom all to 10.1.0.0/24 lookup main"),
        "{rules}"
    );

    // vm1 -> the office's 10.1.0.10 at its alias; the office sees vm1 under ours.
    let start = Instant::now();
    let want = format!("hello from {}, you are 10.73.0.10:", lab::TWIN_HOST);
    while lab
        .vm1
        .curl(&format!("http://{}:8080/", lab::TWIN_SEEN), "1")
        .is_none_or(|b| !b.contains(&want))
    {
        if start.elapsed() > Duration::from_secs(40) {
            panic!(
                "vm1 -> the office at 10.93.0.10: no answer as 10.73.0.10\n--- status\n{}\n--- office SAs\n{}\n--- office log\n{}\n--- kawaii charon\n{}\n--- gw\n{}",
                lab.api().status()["details"]["ipsec"],
                o.sas(),
                tail(&o.log(), 30),
                tail(&slurp(&lab.state.join("ipsec/charon.log")), 40),
                lab.gw
                    .run(&[
                        "sh",
                        "-c",
                        "nft list ruleset; ip rule; ip route show table all; conntrack -L"
                    ])
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("the twin office reached after {:?}", start.elapsed());
    let answers = |h: &Host, url: &str, want: &str| {
        let got = h.curl(url, "2").unwrap_or_default();
        assert!(got.contains(want), "{} -> {url}: {got:?}", h.name);
    };
    // The office's 10.1.0.10 -> our vm1 (also 10.1.0.10) at our alias; vm1 sees its alias.
    answers(
        &o.host,
        "http://10.73.0.10/",
        "hello from vm1, you are 10.93.0.10:",
    );
    // Our own 10.1.0.0/24 is still our LAN: for the gateway itself, and for vm1's traffic to
    // the Internet and its answers.
    let route = lab
        .gw
        .run(&["ip", "route", "get", "10.1.0.10"])
        .unwrap_or_default();
    assert!(route.contains("dev lan0"), "{route}");
    answers(&lab.gw, "http://10.1.0.10/", "hello from vm1");
    let internet = format!("http://{}/", lab::INTERNET);
    answers(&lab.vm1, &internet, "hello from internet");
    assert!(lab.vm2.pings("10.1.0.10"), "vm2 -> vm1 on the LAN");

    // Without the connection, neither the rules nor the mark stay.
    let api = lab.api();
    let r = api.delete(CONN);
    assert_eq!(r.status, 200, "{}", r.body);
    let nft = || {
        lab.gw
            .run(&["nft", "list", "table", "inet", "kawaii"])
            .unwrap_or_default()
    };
    kawaii_testkit::wait_for(
        Duration::from_secs(10),
        "the rules and the mark to go",
        || (our_rules(&lab.gw).trim().is_empty() && !nft().contains("twin-steer")).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", our_rules(&lab.gw), nft()));
    assert!(!nft().contains("chain steer"), "{}", nft());
    drop(topo);
}
