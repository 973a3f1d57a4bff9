//! IPv6 end to end, in the dual-stack lab (`examples/lab.toml`): routed, no NAT66. One topology
//! for issue 18's acceptance 1-4: an IPv6 sweep from the internet finds exactly the declared
//! openings; the private hosts take their default route from the gateway's router
//! advertisements, reach the internet under their own addresses, and the egress rule blocks
//! tcp/25; an IPv6 opening reaches its host's port and no other; the domain router routes by SNI
//! and Host on the IPv6 VIP to an IPv6 backend (`curl -6`, `openssl s_client`), through the
//! IPv6 SYN proxy. Last, on SIGTERM the gateway's final advertisement (router lifetime 0)
//! takes the hosts' default route away.

use kawaii_testkit::lab::{self, INTERNET6, LAB_TOML, PUBLIC_VIP6, VM1_6, VM2_6};
use kawaii_testkit::services::{self_signed, tls_subject};
use kawaii_testkit::{Host, wait_for, wait_tcp};
use std::path::Path;
use std::time::Duration;

/// The ports of `host` (an IPv6 address) that answer from the internet host.
fn scan(g: &lab::GatewayLab, host: &str, proto: &str, ports: &str) -> Vec<u16> {
    let out = g
        .internet
        .run(&["python3", &g.svc, "scan", host, proto, ports])
        .expect("scan");
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The IPv6 default route of `h` as `ip -6 route` prints it, if any.
fn default6(h: &Host) -> Option<String> {
    let out = h.run(&["ip", "-6", "route", "show", "default"]).ok()?;
    let line = out.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// `h`'s global IPv6 addresses.
fn addresses6(h: &Host) -> Vec<String> {
    let out = h
        .run(&["ip", "-6", "-o", "addr", "show", "scope", "global"])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|a| a.split('/').next().map(String::from))
        .collect()
}

/// The lab plus a domain route to vm1's IPv6 address (the router beside the lab's forwards).
fn config() -> String {
    format!(
        r#"{LAB_TOML}
[router]
https_port = 8443
http_port = 8080

[[routes]]
domain = "v6.example.com"
https = ["[{VM1_6}]:443"]
http = ["[{VM1_6}]:80"]
"#
    )
}

#[test]
fn ipv6_is_routed_filtered_and_advertised() {
    let kawaii = Path::new(env!("CARGO_BIN_EXE_kawaii"));
    let (mut topo, g) = lab::start("v6", kawaii, &config()).unwrap_or_else(|e| panic!("lab: {e}"));
    let log = |topo: &mut kawaii_testkit::Topology| g.kawaii.log(topo);

    // 2. The hosts' IPv6 default route comes from the advertisements of the zone's link-local
    // VIP, and with SLAAC an address in the routed prefix too.
    let route = wait_for(Duration::from_secs(15), "vm1's IPv6 default route", || {
        default6(&g.vm1)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&mut topo)));
    assert!(
        route.contains("via fe80::1") && route.contains("proto ra"),
        "{route}"
    );
    let slaac = wait_for(Duration::from_secs(10), "vm2's SLAAC address", || {
        addresses6(&g.vm2)
            .into_iter()
            .find(|a| a.starts_with("2001:db8:1:") && a != VM2_6)
    })
    .expect("SLAAC address");
    // Under its own address: the internet host sees vm1's address, never the gateway's.
    let body = g
        .vm1
        .curl(&format!("http://[{INTERNET6}]/"), "3")
        .unwrap_or_else(|| panic!("IPv6 egress failed\n{}", log(&mut topo)));
    let mine = addresses6(&g.vm1);
    let seen = body
        .trim()
        .strip_prefix("hello from internet, you are ")
        .and_then(|r| r.rsplit_once(':'))
        .map(|(ip, _)| ip.to_string())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        mine.contains(&seen),
        "internet saw {seen}, vm1 has {mine:?}"
    );
    let body = g
        .vm2
        .curl(&format!("http://[{INTERNET6}]:443/"), "3")
        .expect("vm2 egress");
    assert!(!body.contains(PUBLIC_VIP6), "{body}");
    // The lab's egress rule (no destination: both families) drops SMTP.
    assert!(
        g.vm1
            .curl(&format!("http://[{INTERNET6}]:25/"), "2")
            .is_none(),
        "IPv6 tcp/25 must be blocked"
    );

    // 1. Sweep of the gateway's IPv6 VIP: the ingress rules (both families) open tcp 22 and 80
    // and udp 5353 on it, the domain router its listeners, nothing else.
    let ports = "1-1024,5353,8080,8443,51820";
    assert_eq!(
        scan(&g, PUBLIC_VIP6, "tcp", ports),
        vec![22, 80, 8080, 8443]
    );
    assert_eq!(scan(&g, PUBLIC_VIP6, "udp", ports), vec![5353]);
    // 3. The openings of the private hosts' own addresses: exactly the declared port each.
    assert_eq!(scan(&g, VM1_6, "tcp", ports), vec![80]);
    assert_eq!(scan(&g, VM2_6, "udp", ports), vec![5353]);
    assert!(scan(&g, VM2_6, "tcp", ports).is_empty());
    // A SLAAC address has no opening at all.
    assert!(scan(&g, &slaac, "udp", "5353").is_empty());
    let body = g
        .internet
        .curl(&format!("http://[{VM1_6}]/"), "3")
        .expect("IPv6 opening");
    assert!(
        body.contains(&format!("hello from vm1, you are {INTERNET6}:")),
        "{body}"
    );

    // 4. The domain router on the IPv6 VIP: Host and SNI routing to vm1's IPv6 address.
    let (crt, key) = self_signed(topo.dir(), "v6.example.com");
    topo.spawn(
        &g.vm1,
        "vm1-tls6",
        &[
            "openssl", "s_server", "-6", "-quiet", "-www", "-accept", "443", "-cert", &crt, "-key",
            &key,
        ],
    )
    .expect("s_server");
    let backend = format!("[{VM1_6}]:443").parse().expect("addr");
    wait_tcp(&g.vm1, backend, Duration::from_secs(10)).expect("TLS backend up");
    let body = g
        .internet
        .run(&[
            "curl",
            "-6",
            "-gs",
            "-m",
            "3",
            "-H",
            "Host: v6.example.com",
            &format!("http://[{PUBLIC_VIP6}]:8080/"),
        ])
        .unwrap_or_default();
    assert!(
        body.contains("hello from vm1"),
        "{body}\n{}",
        log(&mut topo)
    );
    let subject = tls_subject(
        &g.internet,
        &format!("[{PUBLIC_VIP6}]:8443"),
        "v6.example.com",
    );
    assert!(subject.contains("CN = v6.example.com"), "{subject:?}");
    // The connections to the IPv6 VIP went through the SYN proxy (its counter moved).
    let proxy =
        g.gw.run(&["nft", "list", "chain", "inet", "kawaii", "input-synproxy"])
            .expect("nft");
    let proxied = proxy
        .lines()
        .find(|l| l.contains("comment \"synproxy6\""))
        .and_then(|l| l.split("counter packets ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(proxied.is_some_and(|n| n > 0), "{proxy}");

    // SIGTERM: the final advertisement (router lifetime 0) takes the default route away.
    topo.proc(g.kawaii.proc).stop(Duration::from_secs(10));
    wait_for(
        Duration::from_secs(3),
        "vm1 to drop its IPv6 default route",
        || default6(&g.vm1).is_none().then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&mut topo)));
}
