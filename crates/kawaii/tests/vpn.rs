//! WireGuard VPN peers end to end, in the lab topology plus two VPN client namespaces running
//! wireguard-go (the referee): a client configured only from `kawaii peer showconf` reaches a
//! private instance, which sees the client's VPN address; the real `wg show` on the gateway's
//! device; Kilo's peer.yaml through `kawaii apply -f`; allocated addresses across a restart;
//! removing a peer cuts it off while another peer's pings continue; bad input.
//!
//! ```text
//!  alice 192.0.2.2 ──┐
//!                    router ── gw (kawaii-wg0 10.8.0.1/24, udp 51820 on 203.0.113.10) ── vm1 10.1.0.10
//!  bob 192.0.2.130 ──┘
//! ```

use kawaii_testkit::api::Api;
use kawaii_testkit::keys::{keypair, write_secret};
use kawaii_testkit::lab::{self, GatewayLab, LabOptions};
use kawaii_testkit::wg::WireguardGo;
use kawaii_testkit::{Host, Topology, ping, wait_for};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const KAWAII: &str = env!("CARGO_BIN_EXE_kawaii");

/// The seed's Kilo manifest (../shared/seeds/kilo-vpn.md), as written there.
const KILO_PEER: &str = include_str!("testdata/kilo-peer.yaml");

fn stdout(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "kawaii failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn vpn_config(key_file: &Path, alice: &str, bob: &str) -> String {
    let key_file = key_file.to_string_lossy();
    let bob_extra = "allowed_ips = [\"10.8.0.50/32\"]\nallow_internet = true\n";
    lab::LAB_TOML.to_string()
        + &lab::wireguard_toml(&key_file, &[("alice", alice, ""), ("bob", bob, bob_extra)])
}

struct Vpn {
    topo: Topology,
    lab: GatewayLab,
    api: Api,
    token: String,
    alice: Host,
    bob: Host,
}

impl Vpn {
    fn log(&mut self) -> String {
        self.lab.kawaii.log(&mut self.topo)
    }

    /// `wg show kawaii-wg0 [WHAT]` where the daemon sees its UAPI socket.
    fn wg_show(&mut self, what: &str) -> kawaii_testkit::Result<String> {
        let mut args = vec!["wg", "show", "kawaii-wg0"];
        args.extend(Some(what).filter(|w| !w.is_empty()));
        self.lab.kawaii.run_in_mounts(&mut self.topo, &args)
    }

    /// The kawaii CLI on the gateway, as the bootstrap admin; its stdout (it must succeed).
    fn cli(&self, args: &[&str]) -> String {
        stdout(&self.lab.kawaii.cli(&self.token, args).expect("run kawaii"))
    }

    /// wireguard-go in `host`, set up from a showconf text only.
    fn client(&mut self, host: &Host, ifname: &str, showconf: &str, private_key: &str) {
        WireguardGo::from_showconf(&mut self.topo, host, ifname, showconf, private_key)
            .unwrap_or_else(|e| panic!("wireguard-go from showconf: {e}"));
    }

    /// `url` from `host` as soon as it answers (within 10 s: the tunnel handshakes first).
    fn fetch(&mut self, host: &Host, url: &str) -> String {
        wait_for(Duration::from_secs(10), url, || host.curl(url, "2"))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    fn wait_wireguard_driver(&mut self, what: &str) {
        let api = self.api.clone();
        wait_for(Duration::from_secs(15), what, || {
            api.driver_ok("wireguard").then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }
}

/// (private key, public key) of a VPN client.
type Keys = (String, String);

/// The lab with [`vpn_config`] and two IPv4-only laptops, alice and bob, on the router.
fn build(tag: &str) -> (Vpn, Keys, Keys) {
    build_with(tag, vpn_config, |topo, lab| {
        let client = |topo: &mut Topology, name, router_side, cidr| {
            lab::router_client(topo, &lab.router, name, router_side, cidr).expect(name)
        };
        let alice = client(topo, "alice", ("eth2", "192.0.2.1/25"), "192.0.2.2/25");
        let bob = client(topo, "bob", ("eth3", "192.0.2.129/25"), "192.0.2.130/25");
        (alice, bob)
    })
}

/// The gateway lab with `config(key file, alice's public key, bob's)`, then the laptops that
/// `laptops` plugs into it; returns once the WireGuard driver has applied.
fn build_with(
    tag: &str,
    config: fn(&Path, &str, &str) -> String,
    laptops: impl FnOnce(&mut Topology, &GatewayLab) -> (Host, Host),
) -> (Vpn, Keys, Keys) {
    let keys = || keypair().expect("wg genkey");
    let (gw_key, alice_keys, bob_keys) = (keys().0, keys(), keys());
    assert!(
        kawaii_testkit::can_run(),
        "end-to-end tests need root and iproute2"
    );
    let mut topo = Topology::new(tag).expect("topology");
    let key_file = topo.dir().join("wg.key");
    write_secret(&key_file, &gw_key, 0o600).expect("key file");
    let config = config(&key_file, &alice_keys.1, &bob_keys.1);
    let opts = LabOptions::new(&topo, KAWAII, &config).expect("config");
    let lab = lab::build(&mut topo, &opts).unwrap_or_else(|e| panic!("lab: {e}"));
    let api = lab.api();
    let token = lab.kawaii.token().expect("bootstrap token");
    let (alice, bob) = laptops(&mut topo, &lab);
    let mut v = Vpn {
        topo,
        lab,
        api,
        token,
        alice,
        bob,
    };
    v.wait_wireguard_driver("the wireguard driver");
    (v, alice_keys, bob_keys)
}

fn transfer(v: &mut Vpn, public_key: &str) -> (u64, u64) {
    let out = v.wg_show("transfer").expect("wg show transfer");
    out.lines()
        .find(|l| l.starts_with(public_key))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?))
        })
        .unwrap_or((0, 0))
}

#[test]
fn vpn_peers_from_showconf_kilo_restart_and_live_removal() {
    let (mut v, (alice_key, alice_pub), (bob_key, bob_pub)) = build("vpn");
    let gw = v.lab.gw.clone();

    // 1. alice has no allowed_ips: showconf gives her an allocated address; wireguard-go set up
    // from that output alone reaches vm1, which sees her VPN address.
    let conf = v.cli(&["peer", "showconf", "alice"]);
    assert!(conf.contains("Address = 10.8.0.2/32"), "{conf}");
    assert!(conf.contains("Endpoint = 203.0.113.10:51820"), "{conf}");
    assert!(
        conf.contains("AllowedIPs = 10.1.0.0/24, 10.8.0.0/24"),
        "{conf}"
    );
    assert!(
        !conf.lines().any(|l| l.starts_with("PrivateKey")) && conf.contains("# PrivateKey"),
        "only a comment marks the private key: {conf}"
    );
    let alice = v.alice.clone();
    v.client(&alice, "kwa", &conf, &alice_key);
    let page = v.fetch(&alice, &format!("http://{}/", lab::VM1));
    assert!(
        page.starts_with("hello from vm1, you are 10.8.0.2:"),
        "vm1 must see alice's VPN address: {page}"
    );
    // Nothing else on the VPN side is open: the gateway itself answers no TCP port (not even
    // with a reset), while vm1, behind it, answers (80 accepts, 79 and 81 reset).
    let open = alice
        .run(&[
            "python3",
            &v.lab.svc,
            "scan",
            "10.8.0.1",
            "tcp",
            "1-1024,7780,7781",
        ])
        .expect("scan");
    assert_eq!(
        open.trim(),
        "",
        "the gateway's own ports stay closed to VPN peers"
    );
    let open = alice
        .run(&["python3", &v.lab.svc, "scan", lab::VM1, "tcp", "79-81"])
        .expect("scan");
    assert_eq!(
        open.trim(),
        "79\n80\n81",
        "the scan sees through the tunnel"
    );

    // 2. The real `wg show` on the gateway: alice with a recent handshake, growing counters.
    let show = v.wg_show("").expect("wg show");
    assert!(show.contains(&format!("peer: {alice_pub}")), "{show}");
    assert!(show.contains("latest handshake"), "{show}");
    assert!(show.contains("allowed ips: 10.8.0.2/32"), "{show}");
    let before = transfer(&mut v, &alice_pub);
    alice
        .run(&["ping", "-c", "20", "-i", "0.01", "-q", lab::VM1])
        .expect("ping through the tunnel");
    let after = transfer(&mut v, &alice_pub);
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "counters grow: {before:?} -> {after:?}"
    );
    // Status and metrics carry the same per-peer readings (refreshed every 2 s).
    wait_for(Duration::from_secs(6), "wireguard status", || {
        let s = v.api.status();
        let peers = s["details"]["wireguard"]["peers"].as_array()?.clone();
        let a = peers.iter().find(|p| p["name"] == "alice")?;
        (a["rx_bytes"].as_u64()? > 0 && a["last_handshake"].as_u64().is_some()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let metrics = v.api.get("/metrics").body;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("kawaii_wireguard_peer_rx_bytes_total{peer=\"alice\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    let status = v.cli(&["status"]);
    assert!(
        status.contains("alice") && status.contains("wireguard"),
        "{status}"
    );

    // 3. Kilo's peer.yaml as written becomes a peer; showconf -o yaml gives it back.
    let manifest = v.topo.dir().join("peer.yaml");
    std::fs::write(&manifest, KILO_PEER).expect("peer.yaml");
    let applied = v.cli(&["apply", "-f", manifest.to_str().expect("utf-8")]);
    assert!(
        applied.contains("wireguard-peer/squat created"),
        "{applied}"
    );
    let peer = v.api.get("/v1/wireguard/peers/squat").json();
    assert_eq!(peer["allowed_ips"][0], "10.5.0.1/32");
    assert_eq!(peer["persistent_keepalive"], 10);
    let yaml = v.cli(&["peer", "showconf", "squat", "-o", "yaml"]);
    let ours: serde_json::Value = yaml_serde::from_str(&yaml).expect("yaml");
    let seed: serde_json::Value = yaml_serde::from_str(KILO_PEER).expect("yaml");
    assert_eq!(ours, seed, "an equivalent Peer object: {yaml}");
    let json = v.cli(&["peer", "showconf", "squat", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json, seed);
    // Applying it again replaces it in place with the same peer: the store keeps its revision.
    let again = v.cli(&["apply", "-f", manifest.to_str().expect("utf-8")]);
    assert!(again.contains("wireguard-peer/squat unchanged"), "{again}");
    let routes = gw
        .run(&["ip", "route", "show", "dev", "kawaii-wg0"])
        .expect("routes");
    assert!(
        routes.contains("10.5.0.1"),
        "squat's allowed IP is routed to the device: {routes}"
    );

    // 6. Bad input names the field; a shared allowed IP names both peers.
    let r = v.api.post(
        "/v1/wireguard/peers",
        &json!({"name": "mallory", "public_key": "not-a-key"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("public_key"), "{}", r.body);
    let r = v.api.post(
        "/v1/wireguard/peers",
        &json!({"name": "mallory", "public_key": keypair().expect("keys").1, "allowed_ips": ["10.8.0.50/32"]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("\\\"mallory\\\"") && r.body.contains("\\\"bob\\\""),
        "both peers named: {}",
        r.body
    );

    // 4. bob comes up too; both ping vm1 every 10 ms; alice is removed through the API: she is
    // cut off within 1 s, bob loses nothing.
    let conf_bob = v.cli(&["peer", "showconf", "bob"]);
    assert!(
        conf_bob.contains("AllowedIPs = 0.0.0.0/0"),
        "full tunnel: {conf_bob}"
    );
    let bob = v.bob.clone();
    v.client(&bob, "kwb", &conf_bob, &bob_key);
    // Full tunnel: bob reaches the internet masqueraded to the public VIP, filtered by the
    // egress rules like the private subnet (tcp/25 is blocked in the lab's config).
    let seen = v.fetch(&bob, &format!("http://{}/", lab::INTERNET));
    assert!(seen.contains("you are 203.0.113.10:"), "{seen}");
    let smtp = bob.curl(&format!("http://{}:25/", lab::INTERNET), "2");
    assert!(
        smtp.is_none(),
        "egress rule tcp/25 applies to the full tunnel"
    );
    wait_for(Duration::from_secs(10), "bob through the tunnel", || {
        bob.pings(lab::VM1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let pinger = |v: &mut Vpn, h: &Host, name: &str| {
        ping::start(&mut v.topo, h, name, lab::VM1, "0.01", Some(400)).expect("ping")
    };
    let (pa, pb) = (
        pinger(&mut v, &alice, "ping-alice"),
        pinger(&mut v, &bob, "ping-bob"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let r = v.api.delete("/v1/wireguard/peers/alice");
    assert_eq!(r.status, 200, "{}", r.body);
    let removed_at = ping::unix_now();
    let mut finish = |p: usize| {
        let p = v.topo.proc(p);
        p.wait_exit(Duration::from_secs(15));
        p.output()
    };
    let (a, b) = (finish(pa), finish(pb));
    let last_a = ping::reply_times(&a)
        .last()
        .copied()
        .expect("alice had replies");
    assert!(
        last_a - removed_at < 1.0,
        "alice answered {:.3} s after her removal",
        last_a - removed_at
    );
    assert!(
        b.contains("400 packets transmitted, 400 received"),
        "bob must lose nothing: {}",
        b.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
    );
    let show = v.wg_show("").expect("wg show");
    assert!(
        !show.contains(&alice_pub) && show.contains(&bob_pub),
        "{show}"
    );

    // 5. An allocated address is kept across a daemon restart (alice is back, same address).
    let r = v.api.post(
        "/v1/wireguard/peers",
        &json!({"name": "carol", "public_key": keypair().expect("keys").1}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let carol = r.json()["address"].as_str().expect("allocated").to_string();
    let i = v.lab.kawaii.proc;
    v.topo.proc(i).stop(Duration::from_secs(10));
    let started = Instant::now();
    v.lab.kawaii.restart(&mut v.topo).expect("restart");
    v.wait_wireguard_driver("kawaii back with its device");
    eprintln!("restarted in {:?}", started.elapsed());
    let conf = v.cli(&["peer", "showconf", "carol"]);
    assert!(conf.contains(&format!("Address = {carol}/32")), "{conf}");
    let stored = v.api.get("/v1/wireguard/peers/carol").json();
    assert_eq!(stored["address"], carol.as_str());
    // bob re-handshakes with the new device and gets through again.
    wait_for(Duration::from_secs(30), "bob after the restart", || {
        bob.pings(lab::VM1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", v.log()));
    let log = v.log();
    assert!(
        !log.contains(&alice_key) && !log.contains(&bob_key),
        "no private key in the log"
    );
}

#[test]
fn a_key_file_others_can_read_stops_the_daemon_with_one_line() {
    assert!(
        kawaii_testkit::can_run(),
        "end-to-end tests need root and iproute2"
    );
    let mut topo = Topology::new("vpnkey").expect("topology");
    let gw = topo.host("gw").expect("host");
    let (key, _) = keypair().expect("keys");
    let key_file = topo.dir().join("wg.key");
    write_secret(&key_file, &key, 0o644).expect("key file");
    let cfg = topo.dir().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nname = \"edge\"\n\n[wireguard]\ninterface = \"kwkey{}\"\naddress = \"10.8.0.1/24\"\nprivate_key_file = \"{}\"\n",
            std::process::id() % 100_000,
            key_file.display()
        ),
    )
    .expect("config");
    let state = topo.dir().join("state");
    let started = Instant::now();
    let out = gw
        .command(&[
            KAWAII,
            "serve",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--state",
            state.to_str().expect("utf-8"),
        ])
        .output()
        .expect("kawaii serve");
    assert!(!out.status.success(), "the daemon must refuse to start");
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("mode 0644") && last.contains(key_file.to_str().expect("utf-8")),
        "one line with the reason: {err}"
    );
    assert!(!err.contains(&key), "the key itself never appears: {err}");
}

/// The VPN's IPv6 subnet in the dual-stack test: global, routed to the gateway (no NAT66).
const VPN6: &str = "2001:db8:8::/64";

/// The IPv6 test's config: alice without `allowed_ips`, bob with a full tunnel, the VPN's
/// IPv6 prefix beside its IPv4 one, and a pipe to vm1's web server on port 8080.
fn vpn6_config(key_file: &Path, alice: &str, bob: &str) -> String {
    let wg = lab::wireguard_toml(
        &key_file.to_string_lossy(),
        &[
            ("alice", alice, ""),
            ("bob", bob, "allow_internet = true\n"),
        ],
    )
    .replace(
        "address = \"10.8.0.1/24\"\n",
        "address = \"10.8.0.1/24\"\naddress6 = \"2001:db8:8::1/64\"\n",
    );
    let pipe = format!(
        "\n[[pipes]]\nname = \"web\"\nport = 8080\nremote = \"{}:80\"\n",
        lab::VM1
    );
    lab::LAB_TOML.to_string() + &wg + &pipe
}

/// Issue 18, acceptance 5: VPN laptops that reach the gateway at its IPv6 VIP, configured
/// only from `kawaii peer showconf --ipv6` (wireguard-go), with both inner families: alice
/// reaches vm1's IPv4 and IPv6 addresses (which see her VPN addresses); bob's full tunnel
/// leaves masqueraded over IPv4 and routed under his own address over IPv6, where the egress
/// rule still blocks tcp/25. Their outer IPv4 does not exist: everything crossed IPv6.
#[test]
fn vpn_over_ipv6_with_both_inner_families_from_showconf() {
    let (mut v, (alice_key, alice_pub), (bob_key, _)) =
        build_with("vpn6", vpn6_config, |topo, lab| {
            // The upstream routes the VPN's IPv6 prefix to the gateway, as it does the private one.
            lab.router
                .route6(VPN6, lab::PUBLIC_VIP6)
                .expect("route the VPN prefix");
            let alice = lab::router_client6(topo, &lab.router, "alice", "eth2", "2001:db8:65::")
                .expect("alice");
            let bob = lab::router_client6(topo, &lab.router, "bob", "eth3", "2001:db8:66::")
                .expect("bob");
            (alice, bob)
        });

    // 1. alice: both allocated addresses, the private and VPN subnets of both families, and
    // the zone's IPv6 VIP as the endpoint (the IPv4 one as a comment).
    let conf = v.cli(&["peer", "showconf", "alice", "--ipv6"]);
    for line in [
        "Address = 10.8.0.2/32, 2001:db8:8::2/128",
        "Endpoint = [2001:db8:ff::10]:51820",
        "# Endpoint = 203.0.113.10:51820  (IPv4)",
        "AllowedIPs = 10.1.0.0/24, 10.8.0.0/24, 2001:db8:1::/64, 2001:db8:8::/64",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line:?} in {conf}");
    }
    let alice = v.alice.clone();
    v.client(&alice, "kwa6", &conf, &alice_key);
    let page = v.fetch(&alice, &format!("http://{}/", lab::VM1));
    assert!(
        page.starts_with("hello from vm1, you are 10.8.0.2:"),
        "vm1 sees alice's IPv4 VPN address: {page}"
    );
    let page = v.fetch(&alice, &format!("http://[{}]/", lab::VM1_6));
    assert!(
        page.starts_with("hello from vm1, you are 2001:db8:8::2:"),
        "vm1 sees alice's IPv6 VPN address (routed, no NAT66): {page}"
    );
    for target in [lab::VM1, lab::VM1_6] {
        alice
            .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", target])
            .unwrap_or_else(|e| panic!("ping {target} through the tunnel: {e}"));
    }
    // The pipe (no `listen`) answers at the gateway's VPN address of either family.
    for gw in ["10.8.0.1", "[2001:db8:8::1]"] {
        let page = v.fetch(&alice, &format!("http://{gw}:8080/"));
        assert!(page.starts_with("hello from vm1"), "pipe at {gw}: {page}");
    }
    // The gateway's own ports stay closed over IPv6 too; vm1 answers behind it.
    let scan = |h: &Host, target: &str, ports: &str| {
        let svc = v.lab.svc.clone();
        h.run(&["python3", &svc, "scan", target, "tcp", ports])
            .expect("scan")
    };
    assert_eq!(scan(&alice, "2001:db8:8::1", "1-1024,7780,7781").trim(), "");
    assert_eq!(scan(&alice, lab::VM1_6, "79-81").trim(), "79\n80\n81");
    // An IPv6 ingress rule, applied live: IPv6 narrows to what it names, and IPv4, with no rule
    // of its own, reaches nothing private. Without rules both are open again.
    let mut peer = v.api.get("/v1/wireguard/peers/alice").json();
    let set_rules = |peer: &mut serde_json::Value, rules: serde_json::Value| {
        peer["ingress_rules"] = rules;
        let r = v.api.put("/v1/wireguard/peers/alice", peer);
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let vm1_80 =
        json!([{"destination": format!("{}/128", lab::VM1_6), "protocol": "tcp", "ports": "80"}]);
    set_rules(&mut peer, vm1_80);
    wait_for(
        Duration::from_secs(10),
        "alice's IPv6 rule in force",
        || (scan(&alice, lab::VM1_6, "79-81").trim() == "80").then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        scan(&alice, lab::VM1, "79-81").trim(),
        "",
        "no IPv4 rule: closed"
    );
    set_rules(&mut peer, json!([]));
    wait_for(Duration::from_secs(10), "alice's rules gone", || {
        (scan(&alice, lab::VM1, "79-81").trim() == "79\n80\n81").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // The session came over IPv6: alice has no IPv4 outside the tunnel at all.
    let show = v.wg_show("").expect("wg show");
    assert!(show.contains(&format!("peer: {alice_pub}")), "{show}");
    assert!(
        show.contains("endpoint: [2001:db8:65::2]:"),
        "alice's endpoint is her IPv6 address: {show}"
    );
    assert!(
        show.contains("allowed ips: 10.8.0.2/32, 2001:db8:8::2/128"),
        "{show}"
    );
    let routes4 = alice.run(&["ip", "-4", "route"]).expect("routes");
    assert!(
        !routes4.contains("default") && !routes4.contains("eth0"),
        "no IPv4 outside: {routes4}"
    );

    // 2. bob: a full tunnel of both families. IPv4 leaves masqueraded to the public VIP; IPv6
    // leaves routed under his own VPN address, filtered by the egress rules (tcp/25 blocked).
    let conf = v.cli(&["peer", "showconf", "bob", "--ipv6"]);
    assert!(
        conf.lines().any(|l| l == "AllowedIPs = 0.0.0.0/0, ::/0"),
        "{conf}"
    );
    let bob = v.bob.clone();
    v.client(&bob, "kwb6", &conf, &bob_key);
    let seen = v.fetch(&bob, &format!("http://[{}]/", lab::INTERNET6));
    assert!(
        seen.starts_with("hello from internet, you are 2001:db8:8::3:"),
        "bob's own IPv6 address, no NAT66: {seen}"
    );
    let seen = v.fetch(&bob, &format!("http://{}/", lab::INTERNET));
    assert!(seen.contains("you are 203.0.113.10:"), "{seen}");
    assert!(
        bob.curl(&format!("http://[{}]:25/", lab::INTERNET6), "2")
            .is_none(),
        "the egress rule tcp/25 applies to the IPv6 full tunnel"
    );
    let seen = v.fetch(&bob, &format!("http://[{}]/", lab::VM1_6));
    assert!(
        seen.starts_with("hello from vm1, you are 2001:db8:8::3:"),
        "{seen}"
    );

    // 3. Bad IPv6 input names the field (an address6 outside the subnet is not an error: like
    // an IPv4 one, a wish that cannot be granted gets the lowest free address instead).
    let r = v.api.post(
        "/v1/wireguard/peers",
        &json!({"name": "mallory", "public_key": keypair().expect("keys").1, "address6": "10.8.0.5"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("wireguard.peers[2].address6") && r.body.contains("is an IPv4 address"),
        "{}",
        r.body
    );
    let r = v.api.post(
        "/v1/wireguard/peers",
        &json!({"name": "mallory", "public_key": keypair().expect("keys").1, "address6": "2001:db8:9::5"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["address6"], "2001:db8:8::4", "{}", r.body);
    let log = v.log();
    assert!(
        !log.contains(&alice_key) && !log.contains(&bob_key),
        "no private key in the log"
    );
}
