//! Multi-zone HA end to end: two zones sharing a private and a public segment, one kawaii per
//! zone, a private host per zone using its zone's private VIP as gateway, and an internet host.
//! Losses are measured as the longest gap between ping replies (one echo every 10 ms).

use kawaii_testkit::lab::{self, HaLab, HaLabOptions};
use kawaii_testkit::serve::Serve;
use kawaii_testkit::{Host, Topology, ping, wait_for};
use std::path::Path;
use std::time::Duration;

const KAWAII: &str = env!("CARGO_BIN_EXE_kawaii");

/// The VPN on both families across the zones (`ha/vpn6.rs`).
#[path = "ha/vpn6.rs"]
mod vpn6;

/// A site-to-site tunnel over IPv6 follows its VIP (`ha/ipsec6.rs`).
#[path = "ha/ipsec6.rs"]
mod ipsec6;

/// An office on our own subnet with two zones (`ha/twin.rs`).
#[path = "ha/twin.rs"]
mod twin;

/// Three zones: the third follows a VPN peer's takeover (`ha/three_zones.rs`).
#[path = "ha/three_zones.rs"]
mod three_zones;

struct Ha {
    topo: Topology,
    lab: HaLab,
    /// The tests here measure loss windows of a few hundred ms, and one saturates both CPUs:
    /// they run one at a time (declared last: released after the topology is gone).
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Ha {
    /// The two-zone lab on the config `config` returns (given the topology's directory).
    fn new(tag: &str, start_b: bool, config: impl FnOnce(&Path) -> String) -> Ha {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let opts = HaLabOptions::new(KAWAII)
            .log("info,kawaii_drivers::vrrp=debug")
            .start_b(start_b);
        let (topo, lab) = lab::start_ha(tag, config, opts);
        Ha {
            topo,
            lab,
            _serial: serial,
        }
    }

    /// The two-zone lab's own config (adverts every 50 ms, no preemption delay).
    fn plain(tag: &str, start_b: bool) -> Ha {
        Ha::new(tag, start_b, |_| lab::ha_config(5, "0s"))
    }

    /// Starts pinging `target` from `host` every `interval` s; returns the proc index.
    fn ping(&mut self, host: &Host, name: &str, target: &str, interval: &str) -> usize {
        ping::start(&mut self.topo, host, name, target, interval, None).expect("ping")
    }

    /// Stops the pinger and returns the longest gap between two replies, and the reply count.
    fn gap(&mut self, ping: usize) -> (Duration, usize) {
        ping::stop(&mut self.topo, ping)
    }

    /// Zone A's daemon starts again (after a kill or its exit).
    fn restart_a(&mut self) {
        self.lab.kawaii_a.restart(&mut self.topo).expect("restart");
    }

    /// Zone A dies (kawaii SIGKILLed, links cut); waits until zone B holds zone A's `vip`.
    fn zone_a_dies(&mut self, vip: &str) {
        self.topo.proc(self.lab.kawaii_a.proc).kill();
        self.cut(&self.lab.gw_a, false);
        self.wait_vip(&self.lab.gw_b, vip, true, "zone-b to take zone-a's VIPs");
    }

    fn cut(&self, host: &Host, up: bool) {
        for dev in ["wan0", "lan0"] {
            host.run(&["ip", "link", "set", dev, if up { "up" } else { "down" }])
                .expect("link");
        }
    }

    /// What a reboot does to a failed gateway: its floating addresses are gone.
    fn forget_vips(&self, host: &Host) {
        for (vip, dev) in [
            (lab::ZONE_A_PRIVATE_VIP, "lan0"),
            (lab::ZONE_B_PRIVATE_VIP, "lan0"),
            (lab::ZONE_A_PUBLIC_VIP, "wan0"),
            (lab::ZONE_B_PUBLIC_VIP, "wan0"),
        ] {
            let _ = host.exec(&["ip", "addr", "del", &format!("{vip}/24"), "dev", dev]);
        }
    }

    fn source_seen_from(&self, host: &Host) -> String {
        let out = host
            .curl(&format!("http://{}/", lab::INTERNET), "3")
            .unwrap_or_default();
        out.split("you are ")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .unwrap_or_default()
            .to_string()
    }

    fn wait_vip(&self, host: &Host, vip: &str, held: bool, what: &str) {
        wait_for(Duration::from_secs(10), what, || {
            (lab::has_address(host, vip) == held).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until zone A's IPv6 VIPs are home (see [`lab::wait_ipv6_home`]).
    fn wait_ipv6_home(&self) {
        lab::wait_ipv6_home(&self.lab).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until zone A's private VIP has left `from` and is on `to` (each with what it
    /// waits for); the order of the two waits is `to` first, as a takeover happens.
    fn wait_moved(&self, from: (&Host, &str), to: (&Host, &str)) {
        self.wait_vip(to.0, lab::ZONE_A_PRIVATE_VIP, true, to.1);
        self.wait_vip(from.0, lab::ZONE_A_PRIVATE_VIP, false, from.1);
    }

    /// Zone A (links cut, daemon stopped) comes back and preempts while `host` pings `target`;
    /// the longest gap (reported as `what`).
    fn comes_back(&mut self, host: &Host, target: &str, what: &str) -> Duration {
        let ping = self.ping(
            host,
            &format!("ping-{}", what.replace(' ', "-")),
            target,
            "0.01",
        );
        std::thread::sleep(Duration::from_millis(1000));
        let (gw_a, gw_b) = (self.lab.gw_a.clone(), self.lab.gw_b.clone());
        self.cut(&gw_a, true);
        self.restart_a();
        self.wait_moved(
            (&gw_b, "zone-b to release zone-a's VIPs"),
            (&gw_a, "zone-a to take its VIPs back"),
        );
        self.settled_gap(ping, what).0
    }

    /// A second after the move, the pinger's longest gap (reported as `what`).
    fn settled_gap(&mut self, ping: usize, what: &str) -> (Duration, usize) {
        std::thread::sleep(Duration::from_millis(1000));
        let (gap, replies) = self.gap(ping);
        eprintln!("{what}: longest gap {gap:?} over {replies} replies");
        (gap, replies)
    }

    fn zone_b(&self) -> &Serve {
        self.lab.kawaii_b.as_ref().expect("zone-b runs kawaii")
    }

    /// The VRRP routers of one node's `/v1/status`, and the whole status.
    fn vrrp(serve: &Serve) -> (Vec<serde_json::Value>, serde_json::Value) {
        let st = serve.api().status();
        let routers = st["details"]["vrrp"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (routers, st)
    }

    /// One node's VRRP router for `zone`, and the whole status.
    fn router(serve: &Serve, zone: &str) -> (serde_json::Value, serde_json::Value) {
        let (routers, st) = Ha::vrrp(serve);
        let r = routers
            .into_iter()
            .find(|r| r["zone"] == zone)
            .unwrap_or_else(|| panic!("no {zone} router: {st}"));
        (r, st)
    }
}

#[test]
fn zone_failure_moves_vips_and_preemption_brings_them_back() {
    let mut ha = Ha::plain("ha-fail", true);
    let HaLab {
        gw_a,
        gw_b,
        vm_a,
        vm_b,
        ..
    } = ha.lab.clone();
    // Affinity: each zone's traffic leaves through its own zone with its own public VIP.
    assert_eq!(ha.source_seen_from(&vm_a), lab::ZONE_A_PUBLIC_VIP);
    assert_eq!(ha.source_seen_from(&vm_b), lab::ZONE_B_PUBLIC_VIP);
    let (vrrp, st) = Ha::vrrp(&ha.lab.kawaii_a);
    assert_eq!(vrrp.len(), 2, "{st}");
    assert!(
        vrrp.iter()
            .any(|r| r["zone"] == "zone-a" && r["state"] == "master" && r["priority"] == 150),
        "{st}"
    );
    assert!(
        vrrp.iter()
            .any(|r| r["zone"] == "zone-b" && r["state"] == "backup" && r["priority"] == 100),
        "{st}"
    );

    // Zone A dies: kawaii SIGKILLed, links cut.
    let ping = ha.ping(&vm_a, "ping-kill", lab::INTERNET, "0.01");
    std::thread::sleep(Duration::from_millis(1000));
    ha.zone_a_dies(lab::ZONE_A_PRIVATE_VIP);
    let (gap, replies) = ha.settled_gap(ping, "failover");
    if let Some(b) = ha.lab.kawaii_b.clone() {
        let log = b.log(&mut ha.topo);
        for l in log
            .lines()
            .filter(|l| {
                l.contains("VRRP transition") || l.contains("applied") || l.contains("gratuitous")
            })
            .rev()
            .take(14)
        {
            eprintln!("  gw-b: {l}");
        }
    }
    assert!(replies > 100, "too few replies: {replies}");
    assert!(gap < Duration::from_millis(250), "failover gap {gap:?}");
    assert!(lab::has_address(&gw_b, lab::ZONE_A_PUBLIC_VIP));
    // Zone A's traffic now leaves through zone B, with zone A's public VIP.
    assert_eq!(ha.source_seen_from(&vm_a), lab::ZONE_A_PUBLIC_VIP);
    assert_eq!(ha.source_seen_from(&vm_b), lab::ZONE_B_PUBLIC_VIP);
    let (a, st) = Ha::router(ha.zone_b(), "zone-a");
    assert_eq!(a["state"], "master", "{st}");
    assert_eq!(a["last_reason"]["reason"], "master_down", "{st}");

    // Zone A comes back (rebooted: no VIPs) and preempts.
    ha.forget_vips(&gw_a);
    let gap = ha.comes_back(&vm_a, lab::INTERNET, "preemption");
    assert!(gap < Duration::from_millis(300), "preemption gap {gap:?}");
    assert_eq!(ha.source_seen_from(&vm_a), lab::ZONE_A_PUBLIC_VIP);
    assert!(!lab::has_address(&gw_b, lab::ZONE_A_PUBLIC_VIP));
}

/// Dual-stack: zone-a's IPv6 VIPs and router (preferred by RFC 4191) follow it. On its loss
/// zone-b announces them (unsolicited neighbour advertisements, a router advertisement) and the
/// hosts' IPv6 traffic moves with them; the preemption brings it back.
#[test]
fn ipv6_follows_the_zone_on_failure_and_preemption() {
    let mut ha = Ha::new("ha-v6", true, |_| {
        lab::dual_stack_ha(&lab::ha_config(5, "0s"))
    });
    let HaLab {
        gw_a, gw_b, vm_a, ..
    } = ha.lab.clone();
    let route = wait_for(Duration::from_secs(15), "vm-a's IPv6 default route", || {
        let r = vm_a.run(&["ip", "-6", "route", "show", "default"]).ok()?;
        r.contains("fe80::1").then_some(r)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(route.contains("pref high"), "{route}");
    wait_for(Duration::from_secs(10), "IPv6 from vm-a", || {
        vm_a.pings(lab::INTERNET6).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // Per zone an IPv4 and an IPv6 virtual router, with the same priorities. The IPv6 ones
    // start once the new links' link-local addresses have passed DAD (about a second), so
    // zone-a's may still be taking its zone back from zone-b's instance.
    wait_for(
        Duration::from_secs(10),
        "zone-a's IPv6 router master on gw-a",
        || {
            let (routers, _) = Ha::vrrp(&ha.lab.kawaii_a);
            (routers.len() == 4
                && routers.iter().any(|r| {
                    r["zone"] == "zone-a"
                        && r["family"] == "ipv6"
                        && r["state"] == "master"
                        && r["priority"] == 150
                        && r["vips"][0] == "fe80::1"
                }))
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", Ha::vrrp(&ha.lab.kawaii_a).1));
    ha.wait_ipv6_home();
    let ping = ha.ping(&vm_a, "ping6-kill", lab::INTERNET6, "0.01");
    std::thread::sleep(Duration::from_millis(1000));
    ha.zone_a_dies(lab::ZONE_A_PRIVATE_VIP);
    let (gap, replies) = ha.settled_gap(ping, "IPv6 failover");
    assert!(replies > 100, "too few replies: {replies}");
    // Issue 18: under 250 ms, as IPv4 (zone-b's IPv6 virtual router takes over; hosts and the
    // upstream follow its unsolicited neighbour advertisements).
    assert!(
        gap < Duration::from_millis(250),
        "IPv6 failover gap {gap:?}"
    );
    let (routers, st) = Ha::vrrp(ha.zone_b());
    assert!(
        routers.iter().any(|r| r["zone"] == "zone-a"
            && r["family"] == "ipv6"
            && r["state"] == "master"
            && r["last_reason"]["reason"] == "master_down"),
        "{st}"
    );
    let held = gw_b.run(&["ip", "-6", "addr", "show"]).expect("ip");
    assert!(
        held.contains(&format!("{}/64", lab::ZONE_A_PUBLIC_VIP6)) && held.contains("fe80::1/64"),
        "{held}"
    );

    // Zone A comes back (rebooted: no VIPs) and preempts.
    ha.forget_vips(&gw_a);
    for (vip, dev) in [
        ("fe80::1/64", "lan0"),
        ("2001:db8:1::1/64", "lan0"),
        ("2001:db8:ff::10/64", "wan0"),
    ] {
        let _ = gw_a.exec(&["ip", "addr", "del", vip, "dev", dev]);
    }
    let gap = ha.comes_back(&vm_a, lab::INTERNET6, "IPv6 preemption");
    assert!(
        gap < Duration::from_millis(300),
        "IPv6 preemption gap {gap:?}"
    );
}

#[test]
fn sigterm_hands_over_at_once() {
    let mut ha = Ha::plain("ha-term", true);
    let HaLab {
        gw_a, gw_b, vm_a, ..
    } = ha.lab.clone();
    let ping = ha.ping(&vm_a, "ping-term", lab::INTERNET, "0.01");
    std::thread::sleep(Duration::from_millis(1000));
    ha.topo.proc(ha.lab.kawaii_a.proc).signal("TERM");
    ha.wait_moved(
        (&gw_a, "zone-a to drop its VIPs on exit"),
        (&gw_b, "zone-b to take zone-a's VIPs"),
    );
    let (gap, _) = ha.settled_gap(ping, "sigterm handover");
    assert!(gap < Duration::from_millis(300), "handover gap {gap:?}");
    let (a, st) = Ha::router(ha.zone_b(), "zone-a");
    assert_eq!(a["last_reason"]["reason"], "master_resigned", "{st}");
    assert_eq!(ha.source_seen_from(&vm_a), lab::ZONE_A_PUBLIC_VIP);
}

/// keepalived (vrrp_version 3) in zone B's gateway as backup for zone A's virtual router.
#[test]
fn keepalived_backs_up_kawaii_and_yields_back() {
    let mut ha = Ha::plain("ha-keep", false);
    let HaLab { gw_a, gw_b, .. } = ha.lab.clone();
    let dir = ha.topo.dir().to_path_buf();
    let conf = dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global_defs {{
    vrrp_version 3
    script_user root
    enable_script_security
}}
vrrp_instance zone_a {{
    state BACKUP
    interface lan0
    virtual_router_id 51
    priority 100
    advert_int 0.05
    virtual_ipaddress {{
        {pa}/24 dev lan0
        {pu}/24 dev wan0
    }}
}}
"#,
            pa = lab::ZONE_A_PRIVATE_VIP,
            pu = lab::ZONE_A_PUBLIC_VIP
        ),
    )
    .expect("keepalived.conf");
    let pid = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let conf_s = conf.to_string_lossy().into_owned();
    let (p1, p2) = (pid("keepalived.pid"), pid("vrrp.pid"));
    ha.topo
        .spawn(
            &gw_b,
            "keepalived",
            &[
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--vrrp",
                "-f",
                &conf_s,
                "-p",
                &p1,
                "-r",
                &p2,
            ],
        )
        .expect("keepalived");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        lab::has_address(&gw_a, lab::ZONE_A_PRIVATE_VIP),
        "kawaii stays master"
    );
    assert!(
        !lab::has_address(&gw_b, lab::ZONE_A_PRIVATE_VIP),
        "keepalived stays backup"
    );

    ha.topo.proc(ha.lab.kawaii_a.proc).kill();
    ha.wait_vip(
        &gw_b,
        lab::ZONE_A_PRIVATE_VIP,
        true,
        "keepalived to take over",
    );
    assert!(lab::has_address(&gw_b, lab::ZONE_A_PUBLIC_VIP));

    ha.forget_vips(&gw_a);
    ha.restart_a();
    ha.wait_vip(
        &gw_a,
        lab::ZONE_A_PRIVATE_VIP,
        true,
        "kawaii to take zone-a back",
    );
    ha.wait_vip(&gw_b, lab::ZONE_A_PRIVATE_VIP, false, "keepalived to yield");
    let log = ha.lab.kawaii_a.log(&mut ha.topo);
    assert!(
        log.contains("Preempted"),
        "kawaii preempted keepalived:\n{log}"
    );
}

/// Whether `host` has the IPv6 address `ip` on some interface.
fn has_address6(host: &Host, ip: &str) -> bool {
    host.run(&["ip", "-o", "-6", "addr", "show"])
        .map(|s| {
            s.split_whitespace()
                .any(|w| w.split('/').next() == Some(ip))
        })
        .unwrap_or(false)
}

/// Starts keepalived in `host` with an IPv6 `vrrp_instance` for zone A's IPv6 virtual router
/// (VRID 51, 50 ms adverts, its three IPv6 VIPs, the link-local one first) at `priority`.
fn keepalived6(ha: &mut Ha, host: &Host, name: &str, priority: u8) -> usize {
    let dir = ha.topo.dir().to_path_buf();
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            r#"global_defs {{
    vrrp_version 3
    script_user root
    enable_script_security
}}
vrrp_instance zone_a6 {{
    state BACKUP
    interface lan0
    virtual_router_id 51
    priority {priority}
    advert_int 0.05
    virtual_ipaddress {{
        fe80::1/64 dev lan0
        2001:db8:1::1/64 dev lan0
        {pu}/64 dev wan0
    }}
}}
"#,
            pu = lab::ZONE_A_PUBLIC_VIP6
        ),
    )
    .expect("keepalived.conf");
    let path = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (conf, p1, p2) = (
        path(&format!("{name}.conf")),
        path(&format!("{name}.pid")),
        path(&format!("{name}-vrrp.pid")),
    );
    ha.topo
        .spawn(
            host,
            name,
            &[
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--vrrp",
                "-f",
                &conf,
                "-p",
                &p1,
                "-r",
                &p2,
            ],
        )
        .expect("keepalived")
}

/// SIGKILLs keepalived `name` (spawned as proc `index`): its VRRP child, which speaks for it
/// (pid from its pid file; it would resign with priority 0 if only its parent died), then the
/// parent (before it restarts the child).
fn kill_keepalived(ha: &mut Ha, index: usize, name: &str) {
    let pidfile = ha.topo.dir().join(format!("{name}-vrrp.pid"));
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let pid = pid.trim();
    assert!(
        pid.parse::<u32>().is_ok(),
        "keepalived's VRRP child pid in {pidfile:?}: {pid:?}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-KILL", pid])
        .status();
    ha.topo.proc(index).kill();
}

/// Issue 18, item 7: keepalived's IPv6 VRRP and kawaii's IPv6 virtual router of zone A agree
/// on the master both ways (the higher priority wins, the other backs off), and the IPv6 VIPs
/// move when the master dies.
#[test]
fn keepalived_ipv6_and_kawaii_agree_on_the_master() {
    let mut ha = Ha::new("ha-keep6", false, |_| {
        lab::dual_stack_ha(&lab::ha_config(5, "0s"))
    });
    let HaLab { gw_a, gw_b, .. } = ha.lab.clone();
    let vip6 = "2001:db8:1::1";
    let zone_a6 = |ha: &Ha| -> serde_json::Value {
        let (routers, st) = Ha::vrrp(&ha.lab.kawaii_a);
        routers
            .into_iter()
            .find(|r| r["zone"] == "zone-a" && r["family"] == "ipv6")
            .unwrap_or_else(|| panic!("no IPv6 router for zone-a: {st}"))
    };
    let wait6 = |host: &Host, held: bool, what: &str| {
        wait_for(Duration::from_secs(10), what, || {
            (has_address6(host, vip6) == held).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    };
    wait6(&gw_a, true, "kawaii to hold zone-a's IPv6 VIPs");

    // keepalived at 200 > kawaii's 150: kawaii's IPv6 router backs off to it; the IPv4 one
    // (no IPv4 peer here) keeps the IPv4 VIPs.
    let strong = keepalived6(&mut ha, &gw_b, "keepalived-200", 200);
    wait6(&gw_b, true, "keepalived (200) to take the IPv6 VIPs");
    wait6(&gw_a, false, "kawaii (150) to release the IPv6 VIPs");
    let r = zone_a6(&ha);
    assert_eq!(r["state"], "backup", "{r}");
    assert_eq!(r["last_reason"]["reason"], "higher_priority", "{r}");
    let master = r["master"].as_str().unwrap_or_default().to_string();
    assert!(
        master.starts_with("fe80::"),
        "keepalived's link-local source: {r}"
    );
    assert!(!has_address6(&gw_a, lab::ZONE_A_PUBLIC_VIP6));
    assert!(
        lab::has_address(&gw_a, lab::ZONE_A_PRIVATE_VIP),
        "IPv4 stays"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has_address6(&gw_a, vip6), "kawaii stays backup");

    // keepalived (the master) dies: kawaii takes the IPv6 VIPs after Master_Down_Interval.
    kill_keepalived(&mut ha, strong, "keepalived-200");
    wait6(&gw_a, true, "kawaii to take over from the dead keepalived");
    let r = zone_a6(&ha);
    assert_eq!(r["state"], "master", "{r}");
    assert_eq!(r["last_reason"]["reason"], "master_down", "{r}");
    // What a killed keepalived leaves behind; a reboot clears it.
    for (vip, dev) in [
        ("fe80::1/64", "lan0"),
        ("2001:db8:1::1/64", "lan0"),
        ("2001:db8:ff::10/64", "wan0"),
    ] {
        let _ = gw_b.exec(&["ip", "addr", "del", vip, "dev", dev]);
    }

    // keepalived at 100 < 150: it stays backup, kawaii keeps the VIPs.
    let weak = keepalived6(&mut ha, &gw_b, "keepalived-100", 100);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(has_address6(&gw_a, vip6), "kawaii stays master");
    assert!(!has_address6(&gw_b, vip6), "keepalived stays backup");
    let log = ha.topo.proc(weak).output();
    assert!(log.contains("Entering BACKUP STATE"), "keepalived:\n{log}");

    // kawaii dies: keepalived takes the IPv6 VIPs; kawaii comes back and preempts it.
    ha.topo.proc(ha.lab.kawaii_a.proc).kill();
    wait6(
        &gw_b,
        true,
        "keepalived (100) to take over from the dead kawaii",
    );
    assert!(has_address6(&gw_b, lab::ZONE_A_PUBLIC_VIP6));
    for (vip, dev) in [
        ("fe80::1/64", "lan0"),
        ("2001:db8:1::1/64", "lan0"),
        ("2001:db8:ff::10/64", "wan0"),
    ] {
        let _ = gw_a.exec(&["ip", "addr", "del", vip, "dev", dev]);
    }
    ha.forget_vips(&gw_a);
    ha.restart_a();
    wait6(&gw_a, true, "kawaii to take zone-a's IPv6 VIPs back");
    wait6(&gw_b, false, "keepalived to yield");
    let r = zone_a6(&ha);
    assert_eq!(r["state"], "master", "{r}");
    assert_eq!(r["last_reason"]["reason"], "preempted", "{r}");
}

/// Both CPUs saturated for `KAWAII_HA_SATURATE_SECS` (default 60) by busy loops in the lab:
/// no spurious transition on either node (the speaker has its own real-time thread). The other
/// HA tests wait (see `SERIAL`); `KAWAII_HA_SATURATE_SECS` shortens it for a quick local run.
#[test]
fn no_spurious_failover_under_cpu_saturation() {
    let mut ha = Ha::plain("ha-cpu", true);
    let HaLab {
        gw_a, gw_b, vm_b, ..
    } = ha.lab.clone();
    let secs: u64 = std::env::var("KAWAII_HA_SATURATE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let transitions = |ha: &Ha| -> Vec<u64> {
        [&ha.lab.kawaii_a, ha.zone_b()]
            .into_iter()
            .flat_map(|serve| Ha::vrrp(serve).0)
            .map(|r| r["transitions"].as_u64().unwrap_or(u64::MAX))
            .collect()
    };
    std::thread::sleep(Duration::from_millis(1500));
    let before = transitions(&ha);
    assert_eq!(before.len(), 4);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut hogs = Vec::new();
    for i in 0..cpus * 2 {
        hogs.push(
            ha.topo
                .spawn(
                    &vm_b,
                    &format!("hog-{i}"),
                    &["sh", "-c", "while :; do :; done"],
                )
                .expect("hog"),
        );
    }
    std::thread::sleep(Duration::from_secs(secs));
    for h in hogs {
        ha.topo.proc(h).kill();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let after = transitions(&ha);
    assert_eq!(before, after, "master transitions during saturation");
    assert!(lab::has_address(&gw_a, lab::ZONE_A_PRIVATE_VIP));
    assert!(lab::has_address(&gw_b, lab::ZONE_B_PRIVATE_VIP));
    assert!(!lab::has_address(&gw_b, lab::ZONE_A_PRIVATE_VIP));
}

/// Issue 8, item 5: with an IPsec tunnel to an office and a WireGuard VPN peer both carrying
/// traffic through zone A, zone A dies; both carry traffic again through zone B within 5 s
/// (zone B starts the tunnel from zone A's VIP, and handshakes with the VPN peer at the endpoint
/// zone A last told it about).
#[test]
fn ipsec_and_vpn_carry_traffic_again_after_failover() {
    use kawaii_testkit::keys::{keypair, write_secret};
    use kawaii_testkit::office::{self, OfficeConn};
    use kawaii_testkit::wg::WireguardGo;
    let keys = || keypair().expect("wg genkey");
    let ((laptop_key, laptop_pub), (laptop2_key, laptop2_pub)) = (keys(), keys());
    let psk = "office-psk-for-the-ha-test";
    // The WireGuard key is shared by both zone instances.
    let mut ha = Ha::new("ha-vpn", true, |dir| {
        let key_file = dir.join("wg.key");
        write_secret(&key_file, &keys().0, 0o600).expect("key file");
        let peers = [
            ("laptop", laptop_pub.as_str(), ""),
            ("laptop2", laptop2_pub.as_str(), ""),
        ];
        format!(
            "{}{}{}dpd_timeout = \"8s\"\n",
            lab::ha_config(5, "0s"),
            lab::wireguard_toml(&key_file.to_string_lossy(), &peers),
            office::ipsec_toml(psk)
        )
    });
    let HaLab {
        gw_a,
        gw_b,
        vm_a,
        router,
        ..
    } = ha.lab.clone();
    // The office, behind the region router, answering for zone A's public VIP.
    let svc = ha.lab.svc.clone();
    let off = office::build(&mut ha.topo, &router, &svc).expect("office");
    off.load(&OfficeConn {
        psk: psk.into(),
        remote_peer: lab::ZONE_A_PUBLIC_VIP.into(),
        local_ts: "172.16.1.0/24".into(),
        remote_ts: "10.1.0.0/24".into(),
        ike_proposal: "aes256-sha256-modp2048".into(),
        esp_proposal: "aes256-sha256-modp2048".into(),
    })
    .expect("office conn");
    // The laptop, on the public side, configured from zone A's showconf.
    let token_a = ha.lab.kawaii_a.token().expect("token");
    let laptop = lab::router_client(
        &mut ha.topo,
        &router,
        "laptop",
        ("eth3", "192.0.2.1/24"),
        "192.0.2.2/24",
    )
    .expect("laptop");
    let conf = lab::showconf(&gw_a, KAWAII, &token_a, "laptop").unwrap_or_else(|e| panic!("{e}"));
    assert!(conf.contains("Endpoint = 203.0.113.10:51820"), "{conf}");
    assert!(
        conf.contains("# Endpoint = 203.0.113.20:51820  (zone zone-b)"),
        "{conf}"
    );
    let wg_laptop = WireguardGo::from_showconf(&mut ha.topo, &laptop, "kwha0", &conf, &laptop_key)
        .expect("wireguard-go");

    // Both carry traffic through zone A.
    let ok = |h: &Host, ip: &str| h.pings(ip).then_some(());
    wait_for(
        Duration::from_secs(20),
        "vm-a to the office through IPsec",
        || ok(&vm_a, office::OFFICE_HOST),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", ha.lab.kawaii_a.log(&mut ha.topo)));
    wait_for(
        Duration::from_secs(10),
        "the laptop to vm-a through WireGuard",
        || ok(&laptop, lab::VM_A),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The gateway answers from the zone's VIP, not from its own fixed address (203.0.113.11),
    // so the laptop's endpoint is the address that moves on failover.
    let endpoints = wg_laptop
        .wg(&["show", "kwha0", "endpoints"])
        .expect("wg show");
    assert!(
        endpoints.contains(&format!("\t{}:51820", lab::ZONE_A_PUBLIC_VIP)),
        "laptop's endpoint: {endpoints}"
    );
    // A second laptop, a client of zone B (configured from zone B's showconf), on its own link.
    let laptop2 = lab::router_client(
        &mut ha.topo,
        &router,
        "laptop2",
        ("eth4", "192.0.2.65/26"),
        "192.0.2.66/26",
    )
    .expect("laptop2");
    let token_b = ha.zone_b().token().expect("token");
    let conf2 = lab::showconf(&gw_b, KAWAII, &token_b, "laptop2").unwrap_or_else(|e| panic!("{e}"));
    assert!(conf2.contains("Endpoint = 203.0.113.20:51820"), "{conf2}");
    let wg_laptop2 =
        WireguardGo::from_showconf(&mut ha.topo, &laptop2, "kwha1", &conf2, &laptop2_key)
            .expect("wireguard-go 2");
    wait_for(
        Duration::from_secs(10),
        "laptop2 to vm-b through zone B",
        || ok(&laptop2, lab::VM_B),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // vm-a's gateway is zone A, which has no session with laptop2: zone A routes the answer
    // to zone B, where the session is (it learns so from the endpoint sync).
    wait_for(
        Duration::from_secs(10),
        "laptop2 to vm-a, answered through zone A and then zone B",
        || ok(&laptop2, lab::VM_A),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Zone B has heard where the laptop is (sync every 0.5 s).
    std::thread::sleep(Duration::from_millis(1500));

    let p_ipsec = ha.ping(&vm_a, "ping-office", office::OFFICE_HOST, "0.05");
    let p_vpn = ha.ping(&laptop, "ping-vpn", lab::VM_A, "0.05");
    std::thread::sleep(Duration::from_millis(1000));
    ha.zone_a_dies(lab::ZONE_A_PUBLIC_VIP);
    // Give both 8 s after the failure, then look at the longest silence.
    std::thread::sleep(Duration::from_secs(8));
    let gaps = [ha.gap(p_ipsec), ha.gap(p_vpn)];
    let zone_b = ha.zone_b().clone();
    let log_b = zone_b.log(&mut ha.topo);
    let interesting: Vec<&str> = log_b
        .lines()
        .filter(|l| l.contains("takeover") || l.contains("VIPs taken over") || l.contains("ipsec"))
        .collect();
    eprintln!(
        "after failover: IPsec longest gap {:?} ({} replies), WireGuard {:?} ({} replies)\n{}",
        gaps[0].0,
        gaps[0].1,
        gaps[1].0,
        gaps[1].1,
        interesting.join("\n")
    );
    let wg_b = |ha: &mut Ha| {
        zone_b
            .run_in_mounts(&mut ha.topo, &["wg", "show", "kawaii-wg0"])
            .unwrap_or_default()
    };
    let endpoint = || {
        wg_laptop
            .wg(&["show", "kwha0", "endpoints"])
            .unwrap_or_default()
    };
    assert!(
        gaps[0].1 > 100 && gaps[1].1 > 100,
        "both recovered: {gaps:?}\nzone B routes:\n{}\n{}\n{}\n{}",
        gw_b.run(&["ip", "route"]).unwrap_or_default(),
        wg_b(&mut ha),
        endpoint(),
        log_b
    );
    assert!(
        gaps[0].0 < Duration::from_secs(5),
        "IPsec gap {:?}\n{}",
        gaps[0].0,
        off.log()
    );
    assert!(
        gaps[1].0 < Duration::from_secs(5),
        "WireGuard gap {:?}\n{log_b}",
        gaps[1].0
    );
    // Zone B carries both now: the tunnel from zone A's VIP, the laptop's session.
    // `wg` where kawaii runs: its private /run/wireguard.
    let show = wg_b(&mut ha);
    assert!(show.contains("latest handshake"), "{show}");
    // The laptop now talks to zone B's own VIP (zone B answers from it).
    let on = |vip: &str| endpoint().contains(&format!("\t{vip}:51820"));
    assert!(on(lab::ZONE_B_PUBLIC_VIP), "after takeover: {}", endpoint());

    // Zone A comes back (rebooted: no VIPs) and preempts: zone B tells it the laptop is its
    // guest, and zone A calls it home; the laptop follows zone A's VIP again.
    ha.forget_vips(&gw_a);
    ha.cut(&gw_a, true);
    ha.restart_a();
    ha.wait_vip(
        &gw_a,
        lab::ZONE_A_PUBLIC_VIP,
        true,
        "zone-a to take its VIPs back",
    );
    wait_for(Duration::from_secs(10), "the laptop back on zone A", || {
        on(lab::ZONE_A_PUBLIC_VIP).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", endpoint(), ha.lab.kawaii_a.log(&mut ha.topo)));
    wait_for(
        Duration::from_secs(10),
        "the laptop to vm-a through zone A",
        || ok(&laptop, lab::VM_A),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Zone B's own client was never zone A's: it stays on zone B.
    assert!(ok(&laptop2, lab::VM_B).is_some(), "laptop2 still connected");
    let endpoint2 = wg_laptop2
        .wg(&["show", "kwha1", "endpoints"])
        .unwrap_or_default();
    assert!(
        endpoint2.contains(&format!("\t{}:51820", lab::ZONE_B_PUBLIC_VIP)),
        "laptop2 pulled away from zone B: {endpoint2}"
    );
}
