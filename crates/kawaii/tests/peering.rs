//! VPC peering between two projects' gateways on a backbone, end to end: mutual consent enforced
//! (and unforgeable), policies with exceptions, removal and loss of the other side, and a
//! one-sided peering to a plain router; overlapping subnets through aliases; and the IPv6 twin
//! (issue 18, acceptance 8): dual-stack peers over an IPv6 backbone, consent enforced on IPv6.

use kawaii_testkit::api::Api;
use kawaii_testkit::serve::{Serve, ServeOptions};
use kawaii_testkit::{Host, Topology, wait_for, wait_tcp};
use serde_json::{Value, json};
use std::time::Duration;

const KEY: &str = "acme-and-marvelous-agree-2026";

fn gw_config(name: &str, subnet: &str, vip: &str, private_vip: &str) -> String {
    format!(
        r#"[gateway]
name = "{name}"
private_subnet = "{subnet}"
[[zones]]
name = "z"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "{vip}/24"
public_gateway = "198.51.100.254"
private_vip = "{private_vip}"
"#
    )
}

struct Gw {
    serve: Serve,
    api: Api,
}

fn start(topo: &mut Topology, host: &Host, config: &str) -> Gw {
    let opts = ServeOptions::new(env!("CARGO_BIN_EXE_kawaii"));
    let serve = Serve::start(topo, host, "gateway.toml", config, &opts).expect("kawaii");
    wait_tcp(
        host,
        "127.0.0.1:7780".parse().expect("addr"),
        Duration::from_secs(10),
    )
    .expect("api");
    let api = serve.api();
    Gw { serve, api }
}

/// The two projects: acme and marvelous on the backbone switch, each with its LAN switch and
/// one host; addresses are the test's. Returns (backbone, acme, marvelous, acme's LAN, a1, m1).
fn pair(t: &mut Topology) -> (Host, Host, Host, Host, Host, Host) {
    let bb = t.switch("bb").expect("backbone");
    let (acme, marv) = (t.host("acme").expect("h"), t.host("marv").expect("h"));
    let (alan, mlan) = (t.switch("alan").expect("s"), t.switch("mlan").expect("s"));
    let (a1, m1) = (t.host("a1").expect("h"), t.host("m1").expect("h"));
    for (h, wan, lan) in [(&acme, &bb, &alan), (&marv, &bb, &mlan)] {
        t.plug(h, "wan0", wan).expect("plug");
        t.plug(h, "lan0", lan).expect("plug");
    }
    t.plug(&a1, "eth0", &alan).expect("plug");
    t.plug(&m1, "eth0", &mlan).expect("plug");
    (bb, acme, marv, alan, a1, m1)
}

/// Starts m1's web servers (80, 443, 22), a1's (80) and both gateways: acme (10.1.0.0/24)
/// declares its peering with marvelous (`peering`: its subnet lines), marvelous (`subnet`,
/// private VIP, m1's address) declares nothing yet. Returns once m1 serves and acme shows `pending`.
fn start_pair(
    t: &mut Topology,
    [acme, a1, marv, m1]: [&Host; 4],
    (subnet, private_vip, m1_ip): (&str, &str, &str),
    peering: &str,
) -> (Gw, Gw) {
    let svc = t.svc().expect("svc.py");
    for port in ["80", "443", "22"] {
        t.spawn(
            m1,
            &format!("m1-{port}"),
            &["python3", &svc, "http", "m1", port],
        )
        .expect("m1");
    }
    t.spawn(a1, "a1-80", &["python3", &svc, "http", "a1", "80"])
        .expect("a1");
    let acme_cfg = gw_config("acme", "10.1.0.0/24", "198.51.100.1", "10.1.0.1")
        + &format!(
            "[[vpc_peerings]]\nname = \"marvelous\"\n{peering}via = \"198.51.100.2\"\npolicy = \"accept\"\nconsent_key = \"{KEY}\"\n"
        );
    let a = start(t, acme, &acme_cfg);
    let m = start(
        t,
        marv,
        &gw_config("marvelous", subnet, "198.51.100.2", private_vip),
    );
    let m1_web = format!("{m1_ip}:22");
    wait_tcp(m1, m1_web.parse().expect("addr"), Duration::from_secs(10)).expect("m1 up");
    // Only acme declares: nothing crosses, acme shows pending.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(peering_state(&a), "pending");
    (a, m)
}

/// marvelous declares `mirror` through its API; both sides are active within 3 s.
fn declare_mirror(t: &mut Topology, a: &Gw, m: &Gw, mirror: &Value) {
    let r = m.api.post("/v1/vpc-peerings", mirror);
    assert_eq!(r.status, 201, "{}", r.body);
    if wait_for(Duration::from_secs(3), "both active", || {
        (peering_state(a) == "active" && peering_state(m) == "active").then_some(())
    })
    .is_err()
    {
        panic!(
            "not active: acme {} marvelous {}\n{}\n{}",
            peering_state(a),
            peering_state(m),
            a.serve.log(t),
            m.serve.log(t)
        );
    }
}

fn peering_state(gw: &Gw) -> String {
    let s = gw.api.status();
    s["details"]["vpc_peerings"][0]["state"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// The peering with acme as marvelous declares it, plus `extra` fields.
fn peering(extra: Value) -> Value {
    let mut p =
        json!({"name": "acme", "subnet": "10.1.0.0/24", "via": "198.51.100.1", "consent_key": KEY});
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

#[test]
fn mutual_consent_policies_withdrawal_and_forgery() {
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    let mut t = Topology::new("vpc").expect("topology");
    let svc = t.svc().expect("svc.py");
    let (bb, acme, marv, _, a1, m1) = pair(&mut t);
    let (intruder, ceph, c1) = (
        t.host("intruder").expect("h"),
        t.host("ceph").expect("h"),
        t.host("c1").expect("h"),
    );
    t.plug(&intruder, "eth0", &bb).expect("plug");
    t.plug(&ceph, "eth0", &bb).expect("plug");
    t.link(&ceph, "eth1", &c1, "eth0").expect("link");
    for (h, cmds) in [
        (
            &a1,
            vec![
                "ip addr add 10.1.0.10/24 dev eth0",
                "ip route add default via 10.1.0.1",
            ],
        ),
        (
            &m1,
            vec![
                "ip addr add 10.2.0.10/24 dev eth0",
                "ip route add default via 10.2.0.1",
            ],
        ),
        (&intruder, vec!["ip addr add 198.51.100.66/24 dev eth0"]),
        (
            &ceph,
            vec![
                "ip addr add 198.51.100.50/24 dev eth0",
                "ip addr add 10.50.0.1/24 dev eth1",
                "sysctl -qw net.ipv4.ip_forward=1",
                "ip route add 10.1.0.0/24 via 198.51.100.1",
            ],
        ),
        (
            &c1,
            vec![
                "ip addr add 10.50.0.10/24 dev eth0",
                "ip route add default via 10.50.0.1",
            ],
        ),
    ] {
        for c in cmds {
            h.sh(c).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    t.spawn(&c1, "c1-80", &["python3", &svc, "http", "c1", "80"])
        .expect("c1");
    let (a, m) = start_pair(
        &mut t,
        [&acme, &a1, &marv, &m1],
        ("10.2.0.0/24", "10.2.0.1", "10.2.0.10"),
        "subnet = \"10.2.0.0/24\"\n",
    );
    assert!(
        a1.curl("http://10.2.0.10/", "1").is_none(),
        "acme -> marvelous must not pass"
    );
    assert!(
        m1.curl("http://10.1.0.10/", "1").is_none(),
        "marvelous -> acme must not pass"
    );

    // A forged hello: the intruder takes marvelous's address and signs with a guessed key.
    intruder
        .sh("ip addr add 198.51.100.2/32 dev eth0 2>/dev/null; true")
        .expect("spoof");
    let forge = r#"
import hmac, hashlib, socket, struct, time
for i in range(10):
    body = b"KWPH" + bytes([1, 1]) + struct.pack(">QQ", int(time.time() * 1000), i) + bytes([10, 2, 0, 0, 24, 10, 1, 0, 0, 24])
    msg = body + hmac.new(b"guessed-consent-key-0000", body, hashlib.sha256).digest()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.51.100.2", 0))
    s.sendto(msg, ("198.51.100.1", 7781))
    time.sleep(0.1)
"#;
    intruder.run(&["python3", "-c", forge]).expect("forge");
    assert_eq!(
        peering_state(&a),
        "pending",
        "a forged hello made the peering active"
    );
    assert!(a1.curl("http://10.2.0.10/", "1").is_none());
    intruder
        .sh("ip addr del 198.51.100.2/32 dev eth0")
        .expect("unspoof");
    // The impostor's ARP traffic taught acme its MAC for marvelous's address: forget it.
    acme.sh("ip neigh flush all").expect("neigh flush");

    // marvelous declares the mirror: both active, real addresses both ways.
    declare_mirror(&mut t, &a, &m, &peering(json!({"policy": "accept"})));
    let body = wait_for(Duration::from_secs(2), "acme -> marvelous", || {
        a1.curl("http://10.2.0.10/", "1")
    })
    .expect("a1 -> m1");
    assert!(body.contains("you are 10.1.0.10:"), "{body}");
    let body = m1.curl("http://10.1.0.10/", "1").expect("m1 -> a1");
    assert!(body.contains("you are 10.2.0.10:"), "{body}");

    // marvelous: policy drop with an ingress exception tcp/443.
    let r = m.api.put(
        "/v1/vpc-peerings/acme",
        &peering(json!({"policy": "drop", "ingress_rules": [{"protocol": "tcp", "ports": "443"}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(2), "policy drop", || {
        a1.curl("http://10.2.0.10:22/", "1").is_none().then_some(())
    })
    .expect("22 dropped");
    assert!(
        a1.curl("http://10.2.0.10:443/", "1").is_some(),
        "443 is the exception"
    );
    // policy accept with an exception tcp/22.
    let r = m.api.put(
        "/v1/vpc-peerings/acme",
        &peering(
            json!({"policy": "accept", "ingress_rules": [{"protocol": "tcp", "ports": "22"}]}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(2), "policy accept", || {
        a1.curl("http://10.2.0.10/", "1").map(|_| ())
    })
    .expect("80 open");
    assert!(
        a1.curl("http://10.2.0.10:22/", "1").is_none(),
        "22 is the exception"
    );

    // marvelous removes its peering: traffic stops within 2 s, acme shows pending.
    let r = m.api.delete("/v1/vpc-peerings/acme");
    assert_eq!(r.status, 200);
    wait_for(Duration::from_secs(2), "cut", || {
        a1.curl("http://10.2.0.10/", "1").is_none().then_some(())
    })
    .expect("cut within 2 s");
    wait_for(Duration::from_secs(2), "acme pending", || {
        (peering_state(&a) == "pending").then_some(())
    })
    .expect("pending");

    // Declared again, then marvelous's gateway dies: acme shows down.
    let r = m.api.post("/v1/vpc-peerings", &peering(json!({})));
    assert_eq!(r.status, 201);
    wait_for(Duration::from_secs(3), "active again", || {
        (peering_state(&a) == "active").then_some(())
    })
    .expect("active");
    t.proc(m.serve.proc).kill();
    wait_for(Duration::from_secs(3), "acme down", || {
        (peering_state(&a) == "down").then_some(())
    })
    .expect("down");

    // consent = "none" to a plain router: one-sided and working.
    let r = a.api.post(
        "/v1/vpc-peerings",
        &json!({"name": "ceph", "subnet": "10.50.0.0/24", "via": "198.51.100.50", "consent": "none", "policy": "accept"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // A request racing the apply may still leave through the ordinary egress NAT; once the
    // peering is in the kernel, c1 sees acme's real address.
    let body = wait_for(Duration::from_secs(2), "acme -> ceph without NAT", || {
        a1.curl("http://10.50.0.10/", "1")
            .filter(|b| b.contains("you are 10.1.0.10:"))
    })
    .expect("a1 -> c1 with its real address");
    assert!(body.contains("hello from c1"), "{body}");
}

fn sh_all(h: &Host, cmds: &[&str]) {
    for c in cmds {
        h.sh(c).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The packets the gateway's rule `comment` counted, as `/v1/status` reads them back.
fn counted(gw: &Gw, comment: &str) -> u64 {
    let s = gw.api.status();
    s["details"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["rule"] == comment)
        .filter_map(|r| r["packets"].as_u64())
        .sum()
}

/// Both projects are on 10.1.0.0/24 (a1 and m1 are both 10.1.0.10): acme appears to marvelous
/// as 10.201.0.0/24 and marvelous to acme as 10.202.0.0/24. Consent, a drop policy whose
/// exception names acme's alias, and withdrawal behave as without aliases; the far end sees
/// the alias source; traffic to an alias from anyone else is dropped and counted.
#[test]
fn overlapping_subnets_peer_through_aliases() {
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    let mut t = Topology::new("vpcnm").expect("topology");
    let (bb, acme, marv, alan, a1, m1) = pair(&mut t);
    let (stranger, a2) = (t.host("stranger").expect("h"), t.host("a2").expect("h"));
    t.plug(&stranger, "eth0", &bb).expect("plug");
    t.plug(&a2, "eth0", &alan).expect("plug");
    for (h, addr) in [(&a1, "10.1.0.10"), (&a2, "10.1.0.11"), (&m1, "10.1.0.10")] {
        sh_all(
            h,
            &[
                &format!("ip addr add {addr}/24 dev eth0"),
                "ip route add default via 10.1.0.1",
            ],
        );
    }
    sh_all(
        &stranger,
        &[
            "ip addr add 198.51.100.66/24 dev eth0",
            "ip route add 10.201.0.0/24 via 198.51.100.1",
        ],
    );
    let (a, m) = start_pair(
        &mut t,
        [&acme, &a1, &marv, &m1],
        ("10.1.0.0/24", "10.1.0.1", "10.1.0.10"),
        "subnet = \"10.202.0.0/24\"\nlocal_alias = \"10.201.0.0/24\"\n",
    );
    assert!(a1.curl("http://10.202.0.10/", "1").is_none());
    assert!(m1.curl("http://10.201.0.10/", "1").is_none());

    // marvelous declares the mirror with its own alias: both active, each sees the other's alias.
    let mirror = |extra: Value| {
        let mut p = json!({"subnet": "10.201.0.0/24", "local_alias": "10.202.0.0/24"});
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        peering(p)
    };
    declare_mirror(&mut t, &a, &m, &mirror(json!({"policy": "accept"})));
    let body = wait_for(Duration::from_secs(2), "acme -> marvelous", || {
        a1.curl("http://10.202.0.10/", "1")
    })
    .expect("a1 -> m1 at its alias");
    assert!(
        body.contains("hello from m1") && body.contains("you are 10.201.0.10:"),
        "{body}"
    );
    let body = m1.curl("http://10.201.0.10/", "1").expect("m1 -> a1");
    assert!(
        body.contains("hello from a1") && body.contains("you are 10.202.0.10:"),
        "{body}"
    );
    let st = a.api.status();
    let p = &st["details"]["vpc_peerings"][0];
    assert_eq!(
        (&p["subnet"], &p["local_subnet"], &p["local_alias"]),
        (
            &json!("10.202.0.0/24"),
            &json!("10.1.0.0/24"),
            &json!("10.201.0.0/24")
        ),
        "{p}"
    );

    // marvelous: policy drop; the exception is written in acme's alias (a1 only, tcp/443).
    let r = m.api.put(
        "/v1/vpc-peerings/acme",
        &mirror(json!({"policy": "drop", "ingress_rules": [
            {"source": "10.201.0.10/32", "protocol": "tcp", "ports": "443"}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(2), "policy drop", || {
        a1.curl("http://10.202.0.10:22/", "1")
            .is_none()
            .then_some(())
    })
    .expect("22 dropped");
    let https = |h: &Host| h.curl("http://10.202.0.10:443/", "1").is_some();
    assert_eq!(
        (https(&a1), https(&a2)),
        (true, false),
        "443 is the exception for a1's alias only"
    );

    // Traffic to acme's alias from anyone but marvelous is dropped and counted.
    let before = counted(&a, "alias-unowned");
    assert!(stranger.curl("http://10.201.0.10/", "1").is_none());
    wait_for(Duration::from_secs(5), "alias-unowned counted", || {
        (counted(&a, "alias-unowned") > before).then_some(())
    })
    .expect("the unowned alias traffic is counted");

    // marvelous withdraws: traffic stops within 2 s, acme shows pending.
    let r = m.api.delete("/v1/vpc-peerings/acme");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(2), "cut", || {
        a1.curl("http://10.202.0.10:443/", "1")
            .is_none()
            .then_some(())
    })
    .expect("cut within 2 s");
    wait_for(Duration::from_secs(2), "acme pending", || {
        (peering_state(&a) == "pending").then_some(())
    })
    .expect("pending");
}

/// A dual-stack gateway: `gw_config` plus the routed IPv6 prefix `subnet6` (its gateway
/// address `::1`) and the IPv6 VIP `vip6` on the backbone.
fn gw_config6(name: &str, v4: (&str, &str, &str), subnet6: &str, vip6: &str) -> String {
    let (subnet, vip, private_vip) = v4;
    let prefix = subnet6.trim_end_matches("/64");
    gw_config(name, subnet, vip, private_vip).replacen(
        &format!("private_subnet = \"{subnet}\"\n"),
        &format!("private_subnet = \"{subnet}\"\nprivate_subnet6 = \"{subnet6}\"\n"),
        1,
    ) + &format!(
        "public_vip6 = \"{vip6}/64\"\npublic_gateway6 = \"2001:db8:ff::fe\"\nprivate_vip6 = \"{prefix}1\"\n"
    )
}

/// The packets counted by the rule whose comment starts with `prefix` and ends with `suffix`
/// (a peering's rules carry its id: `peering-<name>-<hash>-...`).
fn counted_like(gw: &Gw, prefix: &str, suffix: &str) -> u64 {
    let s = gw.api.status();
    s["details"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["rule"]
                .as_str()
                .is_some_and(|c| c.starts_with(prefix) && c.ends_with(suffix))
        })
        .filter_map(|r| r["packets"].as_u64())
        .sum()
}

/// The IPv6 twin: acme (10.1.0.0/24 + 2001:db8:1::/64) and marvelous (10.2.0.0/24 +
/// 2001:db8:2::/64) peer as dual-stack neighbours on a backbone that also carries IPv6
/// (2001:db8:ff::/64) and drops every IPv4 hello. Until marvelous declares the mirror, acme lets no IPv6 packet cross
/// either way (not even the echo requests RFC 4890 lets in from elsewhere) and counts them;
/// once it does, the hellos travel over IPv6, ping and TCP work both ways with real addresses
/// (no NAT66); a drop policy whose exception names a1's IPv6 address opens that port to a1 over
/// IPv6 only; withdrawing the mirror stops IPv6 traffic again.
#[test]
fn ipv6_peering_over_an_ipv6_backbone_with_consent() {
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    let mut t = Topology::new("vpc6").expect("topology");
    let svc = t.svc().expect("svc.py");
    let (bb, acme, marv, _, a1, m1) = pair(&mut t);
    // The backbone switch carries no IPv4 hello: consent can only travel over IPv6.
    bb.run_input(
        &["nft", "-f", "-"],
        "table bridge hellos {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n  ether type ip udp dport 7781 counter drop\n }\n}\n",
    )
    .expect("bridge filter");
    let nodad = |h: &Host, a: &str| {
        h.addr6("eth0", a).unwrap_or_else(|e| panic!("{e}"));
    };
    for (h, v4, v6, gw4, gw6) in [
        (
            &a1,
            "10.1.0.10/24",
            "2001:db8:1::10/64",
            "10.1.0.1",
            "2001:db8:1::1",
        ),
        (
            &m1,
            "10.2.0.10/24",
            "2001:db8:2::10/64",
            "10.2.0.1",
            "2001:db8:2::1",
        ),
    ] {
        sh_all(
            h,
            &[
                &format!("ip addr add {v4} dev eth0"),
                &format!("ip route add default via {gw4}"),
            ],
        );
        nodad(h, v6);
        sh_all(h, &[&format!("ip -6 route add default via {gw6}")]);
    }
    for port in ["80", "443", "22"] {
        t.spawn(
            &m1,
            &format!("m1-{port}"),
            &["python3", &svc, "http", "m1", port],
        )
        .expect("m1");
    }
    t.spawn(&a1, "a1-80", &["python3", &svc, "http", "a1", "80"])
        .expect("a1");
    let dual = "subnet6 = \"2001:db8:2::/64\"\nvia6 = \"2001:db8:ff::2\"\n";
    let acme_cfg = gw_config6(
        "acme",
        ("10.1.0.0/24", "198.51.100.1", "10.1.0.1"),
        "2001:db8:1::/64",
        "2001:db8:ff::1",
    ) + &format!(
        "[[vpc_peerings]]\nname = \"marvelous\"\nsubnet = \"10.2.0.0/24\"\nvia = \"198.51.100.2\"\n{dual}policy = \"accept\"\nconsent_key = \"{KEY}\"\n"
    );
    let a = start(&mut t, &acme, &acme_cfg);
    let m = start(
        &mut t,
        &marv,
        &gw_config6(
            "marvelous",
            ("10.2.0.0/24", "198.51.100.2", "10.2.0.1"),
            "2001:db8:2::/64",
            "2001:db8:ff::2",
        ),
    );
    wait_tcp(
        &m1,
        "[2001:db8:2::10]:22".parse().expect("addr"),
        Duration::from_secs(10),
    )
    .expect("m1 up");
    let (a1_6, m1_6) = ("2001:db8:1::10", "2001:db8:2::10");
    let web = |h: &Host, ip: &str, port: u16| h.curl(&format!("http://[{ip}]:{port}/"), "1");

    // Before the mirror: acme declared, marvelous did not. Nothing crosses: acme's hosts do
    // not reach marvelous's, and what marvelous forwards to acme's prefix (a route by hand,
    // as a careless neighbour would add) is dropped by acme and counted as pending.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(peering_state(&a), "pending");
    assert!(web(&a1, m1_6, 80).is_none(), "acme -> marvelous over IPv6");
    assert!(!a1.pings(m1_6), "acme pings marvelous over IPv6");
    marv.route6("2001:db8:1::/64", "2001:db8:ff::1")
        .expect("route by hand");
    let before = counted_like(&a, "peering-marvelous-", "-pending");
    assert!(web(&m1, a1_6, 80).is_none(), "marvelous -> acme over IPv6");
    assert!(!m1.pings(a1_6), "marvelous pings acme over IPv6");
    wait_for(Duration::from_secs(5), "pending drops counted", || {
        (counted_like(&a, "peering-marvelous-", "-pending") > before).then_some(())
    })
    .expect("acme drops and counts the IPv6 traffic of the peering without consent");
    marv.run(&[
        "ip",
        "-6",
        "route",
        "del",
        "2001:db8:1::/64",
        "via",
        "2001:db8:ff::1",
    ])
    .expect("route by hand removed");

    // marvelous declares the dual-stack mirror: both active, the hellos over IPv6.
    let mirror = |extra: Value| {
        let mut p = json!({"subnet6": "2001:db8:1::/64", "via6": "2001:db8:ff::1"});
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        peering(p)
    };
    declare_mirror(&mut t, &a, &m, &mirror(json!({"policy": "accept"})));
    let ipv4_hellos = bb
        .run(&["nft", "list", "table", "bridge", "hellos"])
        .expect("nft");
    assert!(
        ipv4_hellos.contains("packets 0 "),
        "a dual-stack peering's hellos go over IPv6 only: {ipv4_hellos}"
    );
    let st = a.api.status();
    let p = &st["details"]["vpc_peerings"][0];
    assert_eq!(
        (&p["subnet6"], &p["local_subnet6"]),
        (&json!("2001:db8:2::/64"), &json!("2001:db8:1::/64")),
        "{p}"
    );
    let body = wait_for(Duration::from_secs(2), "acme -> marvelous", || {
        web(&a1, m1_6, 80)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.serve.log(&mut t), m.serve.log(&mut t)));
    assert!(
        body.contains("hello from m1") && body.contains(&format!("you are {a1_6}:")),
        "routed with its own address (no NAT66): {body}"
    );
    let body = web(&m1, a1_6, 80).expect("marvelous -> acme");
    assert!(body.contains(&format!("you are {m1_6}:")), "{body}");
    assert!(a1.pings(m1_6) && m1.pings(a1_6), "ping both ways");
    // Every hello is counted (three a second), not only the first of the flow.
    let hellos = wait_for(Duration::from_secs(6), "hellos counted", || {
        let n = counted_like(&a, "peering-marvelous-", "-hello6");
        (n >= 6).then_some(n)
    });
    assert!(
        hellos.is_ok(),
        "{hellos:?}: the hello6 counter stays near one"
    );

    // marvelous: policy drop; the exception is a1's IPv6 address on tcp/443, so a1 reaches
    // :443 over IPv6 only, and :22 not at all.
    let r = m.api.put(
        "/v1/vpc-peerings/acme",
        &mirror(json!({"policy": "drop", "ingress_rules": [
            {"source": "2001:db8:1::10/128", "protocol": "tcp", "ports": "443"}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(2), "policy drop", || {
        web(&a1, m1_6, 22).is_none().then_some(())
    })
    .expect("22 refused");
    assert!(web(&a1, m1_6, 443).is_some(), "443 is a1's IPv6 exception");
    assert!(
        a1.curl("http://10.2.0.10:443/", "1").is_none(),
        "the exception names IPv6: IPv4 falls to the drop policy"
    );
    assert!(!a1.pings(m1_6), "ping is not an exception");

    // marvelous withdraws: IPv6 traffic stops within 2 s, acme shows pending.
    let r = m.api.delete("/v1/vpc-peerings/acme");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(2), "cut", || {
        web(&a1, m1_6, 443).is_none().then_some(())
    })
    .expect("cut within 2 s");
    wait_for(Duration::from_secs(2), "acme pending", || {
        (peering_state(&a) == "pending").then_some(())
    })
    .expect("pending");
    assert!(!a1.pings(m1_6), "no IPv6 ping once withdrawn");
}
