//! Upgrades that keep state (issue 22, acceptance 3 and 4): the etcd store of the first schema
//! is migrated by this build and a newer one refused untouched (the SQLite store's migrations
//! are tested in `kawaii-store`); and a rolling upgrade: two zones, one speaking the previous
//! release's messages (`KAWAII_SPEAK_PREVIOUS=1`), one this release's, fail over both ways and
//! the WireGuard peers follow.

use kawaii_testkit::keys::{keypair, write_secret};
use kawaii_testkit::lab::{self, HaLabOptions};
use kawaii_testkit::wg::WireguardGo;
use kawaii_testkit::{Host, Topology, etcd, wait_for};
use std::time::Duration;

const KAWAII: &str = env!("CARGO_BIN_EXE_kawaii");

#[test]
fn etcd_store_of_schema_1_is_migrated_and_a_newer_one_refused_untouched() {
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    let mut topo = Topology::new("up-etcd").expect("topology");
    let mgmt = topo.switch("mgmt").expect("switch");
    let etcd = etcd::start(&mut topo, &mgmt, &["10.254.0.1"]).unwrap_or_else(|e| panic!("{e}"));
    let host = etcd.members[0].host.clone();
    let ctl = |args: &[&str]| etcd.ctl(0, args).unwrap_or_else(|e| panic!("{e}"));
    // The first release's layout, as it wrote it: document, revision, audit, meta; no schema.
    let doc =
        r#"{"gateway":{"name":"acme","private_subnet":"10.1.0.0/24","egress_policy":"accept"}}"#;
    ctl(&["put", "/kawaii/up/document", doc]);
    ctl(&["put", "/kawaii/up/revision", "3"]);
    ctl(&["put", "/kawaii/up/meta/file_sha256", "abc"]);
    let url = "etcd://127.0.0.1:2379/kawaii/up";
    let copy = |state: &str| {
        let dir = topo.dir().join(state);
        host.exec(&[
            KAWAII,
            "store",
            "copy",
            "--from",
            url,
            "--to",
            "sqlite",
            "--state",
            &dir.to_string_lossy(),
        ])
        .expect("kawaii store copy")
    };
    // Opening it (here for a copy) migrates it: schema recorded, the document kept, a backup.
    let out = copy("copy1");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        ctl(&["get", "--print-value-only", "/kawaii/up/schema"]).trim(),
        "2"
    );
    assert_eq!(
        ctl(&[
            "get",
            "--print-value-only",
            "/kawaii/up/backup/schema-1/document"
        ])
        .trim(),
        doc
    );
    assert_eq!(
        ctl(&[
            "get",
            "--print-value-only",
            "/kawaii/up/backup/schema-1/revision"
        ])
        .trim(),
        "3"
    );
    assert_eq!(
        ctl(&["get", "--print-value-only", "/kawaii/up/revision"]).trim(),
        "3"
    );
    let copied = topo.dir().join("copy1");
    let s = kawaii_store::SqliteStore::open(&copied).expect("the copy opens");
    use kawaii_store::Store;
    assert_eq!(
        s.current().expect("copy").revision,
        3,
        "the document came through"
    );
    drop(s);
    // A second open changes nothing more (the etcd revision stays).
    let rev = etcd.revision(0).expect("etcd revision");
    assert!(copy("copy2").status.success());
    assert_eq!(etcd.revision(0).expect("etcd revision"), rev);

    // A store a newer kawaii wrote: refused with a clear message, not one key written.
    ctl(&["put", "/kawaii/up/schema", "3"]);
    let before = ctl(&["get", "--prefix", "/kawaii/up", "-w", "json"]);
    let rev = etcd.revision(0).expect("etcd revision");
    let out = copy("copy3");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema 3")
            && err.contains("newer kawaii")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        etcd.revision(0).expect("etcd revision"),
        rev,
        "nothing written"
    );
    assert_eq!(
        ctl(&["get", "--prefix", "/kawaii/up", "-w", "json"]),
        before
    );
    drop(etcd);
}

/// A zone's daemon is SIGKILLed and its links cut; waits until `taker` holds `vip`.
fn zone_dies(topo: &mut Topology, proc: usize, gw: &Host, (taker, vip): (&Host, &str)) {
    topo.proc(proc).kill();
    for dev in ["wan0", "lan0"] {
        gw.run(&["ip", "link", "set", dev, "down"]).expect("link");
    }
    wait_for(
        Duration::from_secs(20),
        &format!("{} to take {vip}", taker.name),
        || lab::has_address(taker, vip).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn zones_a_release_apart_fail_over_both_ways_and_wireguard_peers_follow() {
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    let keys = || keypair().expect("wg genkey");
    let ((laptop_key, laptop_pub), (laptop2_key, laptop2_pub)) = (keys(), keys());
    let mut topo = Topology::new("up-roll").expect("topology");
    let key_file = topo.dir().join("wg.key");
    write_secret(&key_file, &keys().0, 0o600).expect("key file");
    let peers = [
        ("laptop", laptop_pub.as_str(), ""),
        ("laptop2", laptop2_pub.as_str(), ""),
    ];
    let config = format!(
        "{}{}",
        lab::ha_config(5, "0s"),
        lab::wireguard_toml(&key_file.to_string_lossy(), &peers)
    );
    let cfg = topo.write("gateway.toml", &config).expect("config");
    // Zone A runs this release; zone B, started below, the previous one's messages.
    let opts = HaLabOptions {
        kawaii: KAWAII.into(),
        config: cfg,
        env: vec![("KAWAII_LOG".into(), "info".into())],
        start_b: false,
        etcd: false,
    };
    let mut ha = lab::build_ha(&mut topo, &opts).unwrap_or_else(|e| panic!("lab: {e}"));
    let old = HaLabOptions {
        env: vec![
            ("KAWAII_LOG".into(), "info".into()),
            ("KAWAII_SPEAK_PREVIOUS".into(), "1".into()),
        ],
        ..opts.clone()
    };
    let zone_b =
        lab::zone_serve(&mut topo, &ha.gw_b, "zone-b", &old).unwrap_or_else(|e| panic!("{e}"));
    let (gw_a, gw_b) = (ha.gw_a.clone(), ha.gw_b.clone());
    let settle = Duration::from_secs(20);
    wait_for(settle, "zone-b (N-1) to take its VIPs", || {
        (lab::has_address(&gw_b, lab::ZONE_B_PRIVATE_VIP)
            && !lab::has_address(&gw_a, lab::ZONE_B_PRIVATE_VIP))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", zone_b.log(&mut topo)));
    zone_b.wait_ready(settle).expect("zone-b ready");

    // laptop is zone A's client, laptop2 zone B's.
    let router = ha.router.clone();
    let laptop = lab::router_client(
        &mut topo,
        &router,
        "laptop",
        ("eth3", "192.0.2.1/24"),
        "192.0.2.2/24",
    )
    .expect("laptop");
    let laptop2 = lab::router_client(
        &mut topo,
        &router,
        "laptop2",
        ("eth4", "192.0.2.65/26"),
        "192.0.2.66/26",
    )
    .expect("laptop2");
    let token_a = ha.kawaii_a.token().expect("token a");
    let token_b = zone_b.token().expect("token b");
    let conf = lab::showconf(&gw_a, KAWAII, &token_a, "laptop").unwrap_or_else(|e| panic!("{e}"));
    let conf2 = lab::showconf(&gw_b, KAWAII, &token_b, "laptop2").unwrap_or_else(|e| panic!("{e}"));
    let wg1 = WireguardGo::from_showconf(&mut topo, &laptop, "kwup0", &conf, &laptop_key)
        .expect("wireguard-go");
    let wg2 = WireguardGo::from_showconf(&mut topo, &laptop2, "kwup1", &conf2, &laptop2_key)
        .expect("wireguard-go 2");
    let reach = |h: &Host, ip: &str, what: &str| {
        wait_for(Duration::from_secs(15), what, || h.pings(ip).then_some(()))
            .unwrap_or_else(|e| panic!("{e}"));
    };
    reach(&laptop, lab::VM_A, "laptop to vm-a through zone A");
    reach(&laptop2, lab::VM_B, "laptop2 to vm-b through zone B");
    let on = |wg: &WireguardGo, dev: &str, vip: &str| {
        wg.wg(&["show", dev, "endpoints"])
            .unwrap_or_default()
            .contains(&format!("\t{vip}:51820"))
    };
    // Each side has heard the other (endpoint sync every 0.5 s).
    std::thread::sleep(Duration::from_millis(1500));

    // 1. Zone A (N) dies: zone B (N-1) takes its VIPs and calls its peer over.
    zone_dies(
        &mut topo,
        ha.kawaii_a.proc,
        &gw_a,
        (&gw_b, lab::ZONE_A_PUBLIC_VIP),
    );
    wait_for(settle, "laptop on zone B after zone A failed", || {
        on(&wg1, "kwup0", lab::ZONE_B_PUBLIC_VIP).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", zone_b.log(&mut topo)));
    reach(&laptop, lab::VM_A, "laptop to vm-a through zone B (N-1)");

    // 2. Zone A comes back (rebooted: no VIPs) and takes its zone back; then zone B (N-1)
    // dies: zone A (N) takes zone B and calls over the peers whose sessions were there.
    for (vip, dev) in [
        (lab::ZONE_A_PRIVATE_VIP, "lan0"),
        (lab::ZONE_A_PUBLIC_VIP, "wan0"),
    ] {
        let _ = gw_a.exec(&["ip", "addr", "del", &format!("{vip}/24"), "dev", dev]);
    }
    for dev in ["wan0", "lan0"] {
        gw_a.run(&["ip", "link", "set", dev, "up"]).expect("link");
    }
    ha.kawaii_a.restart(&mut topo).expect("restart zone A");
    wait_for(settle, "zone A (N) back with its VIPs", || {
        lab::has_address(&gw_a, lab::ZONE_A_PUBLIC_VIP).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(1500));
    zone_dies(
        &mut topo,
        zone_b.proc,
        &gw_b,
        (&gw_a, lab::ZONE_B_PUBLIC_VIP),
    );
    wait_for(settle, "laptop2 on zone A after zone B failed", || {
        on(&wg2, "kwup1", lab::ZONE_A_PUBLIC_VIP).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", ha.kawaii_a.log(&mut topo)));
    reach(&laptop2, lab::VM_B, "laptop2 to vm-b through zone A (N)");
    reach(&laptop, lab::VM_A, "laptop to vm-a through zone A (N)");

    // Zone A (N) read every message zone B sent in N-1; zone B dropped only zone A's first
    // N messages, before zone A heard it and answered in N-1.
    let log_a = ha.kawaii_a.log(&mut topo);
    assert!(
        !log_a.contains("endpoint sync message dropped"),
        "zone A (N) refused an N-1 message:\n{log_a}"
    );
    let log_b = zone_b.log(&mut topo);
    assert!(
        log_b.contains("speaking the previous release's version"),
        "{log_b}"
    );
}
