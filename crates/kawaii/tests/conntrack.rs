//! Connection-state sync end to end (issue 16), in the two-zone lab: established flows through
//! zone A (egress TCP slow streams, inbound port-forwarded TCP streams, UDP exchanges with fixed
//! source ports) survive zone A's loss, its return and a SIGTERM handover on the same sockets;
//! without sync they die (control); kawaii restarts a killed or frozen conntrackd; the sync port
//! is closed to everyone but the siblings. Stalls are measured by `flows.py` at the receivers.

use kawaii_testkit::lab::{self, HaLab, HaLabOptions};
use kawaii_testkit::{Host, Topology, three_zones, wait_for};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Egress TCP streams (vm-a -> internet), inbound port-forwarded streams (internet -> zone A's
/// VIP -> vm-a), UDP exchanges (vm-a -> internet, fixed source ports).
const EGRESS: usize = 200;
const INBOUND: usize = 50;
const UDP: usize = 20;
/// The longest stall allowed for a flow across a VIP move.
const MAX_STALL_MS: u64 = 1000;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The IPv6 twin of the flow test (`conntrack/v6.rs`).
#[path = "conntrack/v6.rs"]
mod v6;

struct Lab {
    topo: Topology,
    lab: HaLab,
    flows: String,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// One measurement window of a client: per flow its longest silence, and the dead flows.
#[derive(Debug, Default)]
struct Window {
    tcp: Vec<u64>,
    udp: Vec<u64>,
    tcp_dead: u64,
}

fn config(sync: bool) -> String {
    let mut c = lab::ha_config(5, "0s");
    if !sync {
        c = c.replace("[ha]\n", "[ha]\nconntrack_sync = false\n");
    }
    c.push_str(
        r#"
[[ingress_rules]]
protocol = "tcp"
ports = "8080"

[[nat_rules]]
destination = "10.1.0.10"
protocol = "tcp"
ports = "8080"
"#,
    );
    c
}

/// Where a lab's flows go: the internet server, and the address the inbound clients dial.
struct Targets {
    internet: &'static str,
    inbound: &'static str,
}

/// IPv4: egress NAT'd to zone A's VIP, inbound through its port forward.
const V4: Targets = Targets {
    internet: lab::INTERNET,
    inbound: lab::ZONE_A_PUBLIC_VIP,
};

impl Lab {
    fn new(tag: &str, sync: bool) -> Lab {
        Lab::with(tag, config(sync))
    }

    /// The two-zone lab on `config`.
    fn with(tag: &str, config: String) -> Lab {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let opts = HaLabOptions::new(env!("CARGO_BIN_EXE_kawaii"))
            .log("info,kawaii_drivers::conntrackd=debug");
        let (topo, lab) = lab::start_ha(tag, |_| config, opts);
        let flows = lab::flows_script(&topo).expect("flows.py");
        Lab {
            topo,
            lab,
            flows,
            _serial: serial,
        }
    }

    fn state(&self, zone: &str) -> PathBuf {
        self.topo.dir().join(format!("state-{zone}"))
    }

    fn status(&self, host: &Host, zone: &str) -> serde_json::Value {
        wait_for(Duration::from_secs(10), "the status API", || {
            lab::status(host, &self.state(zone))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn spawn(&mut self, host: &Host, name: &str, args: &[&str]) -> usize {
        let mut cmd = vec!["python3", self.flows.as_str()];
        cmd.extend_from_slice(args);
        let h = host.clone();
        self.topo.spawn(&h, name, &cmd).expect("spawn")
    }

    /// Starts the servers and the clients; waits until every flow has data. Returns the
    /// client procs (vm-a's egress + UDP, the internet's inbound) and the server procs.
    fn start_flows(&mut self, egress: usize, inbound: usize, udp: usize) -> Flows {
        self.start_flows_at(&V4, egress, inbound, udp)
    }

    /// [`Lab::start_flows`] to the addresses of `to` (UDP: IPv4 only).
    fn start_flows_at(&mut self, to: &Targets, egress: usize, inbound: usize, udp: usize) -> Flows {
        let (internet, vm_a) = (self.lab.internet.clone(), self.lab.vm_a.clone());
        let servers = vec![
            self.spawn(&internet, "streams-internet", &["streams", "9000", "100"]),
            self.spawn(&internet, "udp-echo-internet", &["udp-echo", "9001"]),
            self.spawn(&vm_a, "streams-vm-a", &["streams", "8080", "100"]),
        ];
        for &s in [&servers[0], &servers[2]] {
            let p = self.topo.proc(s);
            p.wait_line("listening", Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let tcp = format!("{}:9000:{egress}", to.internet);
        let udp_spec = format!("{}:9001:{udp}:41000", to.internet);
        let mut args = vec!["client", "--tcp", tcp.as_str()];
        if udp > 0 {
            args.extend(["--udp", udp_spec.as_str()]);
        }
        let mut clients = vec![self.spawn(&vm_a, "client-egress", &args)];
        if inbound > 0 {
            let tcp = format!("{}:8080:{inbound}", to.inbound);
            clients.push(self.spawn(&internet, "client-inbound", &["client", "--tcp", &tcp]));
        }
        for &c in &clients {
            let p = self.topo.proc(c);
            p.wait_line("ready", Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("every flow to carry data: {e}"));
        }
        Flows { clients, servers }
    }

    /// Ends the clients' current windows and returns them merged (SIGUSR1, or SIGTERM: last).
    fn window(&mut self, f: &Flows, last: bool) -> Window {
        let mut w = Window::default();
        for &c in &f.clients {
            let p = self.topo.proc(c);
            let before = p.output().lines().filter(|l| l.starts_with('{')).count();
            p.signal(if last { "TERM" } else { "USR1" });
            let log = p.log.clone();
            let line = wait_for(Duration::from_secs(10), "a flows window", || {
                let out = std::fs::read_to_string(&log).ok()?;
                out.lines()
                    .filter(|l| l.starts_with('{'))
                    .nth(before)
                    .map(str::to_string)
            })
            .unwrap_or_else(|e| panic!("{e}"));
            let v: serde_json::Value = serde_json::from_str(&line).expect("json");
            let list = |k: &str| -> Vec<u64> {
                v[k].as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_u64)
                    .collect()
            };
            w.tcp.extend(list("tcp"));
            w.udp.extend(list("udp"));
            w.tcp_dead += v["tcp_dead"].as_u64().unwrap_or(0);
        }
        w
    }

    /// The servers' last words (SIGTERM): accepted connections, distinct UDP sources.
    fn stop_servers(&mut self, f: &Flows) -> Vec<serde_json::Value> {
        f.servers
            .iter()
            .map(|&s| {
                let p = self.topo.proc(s);
                p.signal("TERM");
                let log = p.log.clone();
                let line = wait_for(Duration::from_secs(5), "a server's summary", || {
                    std::fs::read_to_string(&log)
                        .ok()?
                        .lines()
                        .find(|l| l.starts_with('{'))
                        .map(str::to_string)
                })
                .unwrap_or_else(|e| panic!("{e}"));
                serde_json::from_str(&line).expect("json")
            })
            .collect()
    }

    fn cut(&self, host: &Host, up: bool) {
        for dev in ["wan0", "lan0"] {
            host.run(&["ip", "link", "set", dev, if up { "up" } else { "down" }])
                .expect("link");
        }
    }

    fn wait_vip(&self, host: &Host, vip: &str, held: bool, what: &str) {
        wait_for(Duration::from_secs(20), what, || {
            (lab::has_address(host, vip) == held).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until `host`'s kernel table holds zone A's flows: `egress` entries NAT'd to zone
    /// A's public VIP, `inbound` port forwards on it. Zone B forwards none of them: every one of
    /// them there was injected by the sync.
    fn wait_zone_a_flows(&self, host: &Host, egress: usize, inbound: usize) {
        let count = |args: &[&str]| {
            let mut cmd = vec!["conntrack", "-L"];
            cmd.extend_from_slice(args);
            host.run(&cmd)
                .map(|o| {
                    o.lines()
                        .filter(|l| l.contains("ESTABLISHED") || l.starts_with("udp"))
                        .count()
                })
                .unwrap_or(0)
        };
        let vip = lab::ZONE_A_PUBLIC_VIP;
        wait_for(
            Duration::from_secs(15),
            "zone A's flows in the sibling's table",
            || {
                (count(&["--reply-dst", vip]) >= egress
                    && count(&["-p", "tcp", "--orig-dst", vip, "--dport", "8080"]) >= inbound)
                    .then_some(())
            },
        )
        .unwrap_or_else(|e| {
            for h in [&self.lab.gw_a, &self.lab.gw_b] {
                let t = h
                    .run(&["conntrack", "-L", "-p", "tcp", "--dport", "8080"])
                    .unwrap_or_default();
                eprintln!(
                    "{}:\n{}",
                    h.ns,
                    t.lines().take(4).collect::<Vec<_>>().join("\n")
                );
            }
            panic!(
                "{e}: {} egress, {} inbound",
                count(&["--reply-dst", vip]),
                count(&["-p", "tcp", "--orig-dst", vip, "--dport", "8080"])
            )
        });
    }
}

struct Flows {
    clients: Vec<usize>,
    servers: Vec<usize>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Prints p50/p99/max of the window's stalls and checks every flow lived and stalled < 1 s.
fn check(what: &str, w: &Window, tcp: usize, udp: usize) {
    let mut all: Vec<u64> = w.tcp.iter().chain(&w.udp).copied().collect();
    all.sort_unstable();
    eprintln!(
        "{what}: {} flows, stall p50 {} ms, p99 {} ms, max {} ms; dead TCP flows {}",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0),
        w.tcp_dead
    );
    assert_eq!(w.tcp.len(), tcp, "{what}: TCP flows reported");
    assert_eq!(w.udp.len(), udp, "{what}: UDP flows reported");
    assert_eq!(w.tcp_dead, 0, "{what}: TCP flows reset or closed");
    let worst = all.last().copied().unwrap_or(0);
    assert!(
        worst < MAX_STALL_MS,
        "{what}: longest stall {worst} ms (>= {MAX_STALL_MS} ms)"
    );
}

fn tail(log: &str, filter: &[&str], n: usize) {
    for l in log
        .lines()
        .filter(|l| filter.iter().any(|f| l.contains(f)))
        .rev()
        .take(n)
    {
        eprintln!("  {l}");
    }
}

/// Acceptance 1, 2 and 3: zone A SIGKILLed and cut off, zone A back (waits for its resync,
/// then preempts), then a SIGTERM handover; every flow survives each move on its socket.
#[test]
fn flows_survive_zone_loss_return_and_handover() {
    let mut l = Lab::new("ct-flow", true);
    let (gw_a, gw_b) = (l.lab.gw_a.clone(), l.lab.gw_b.clone());
    let f = l.start_flows(EGRESS, INBOUND, UDP);
    let total = (EGRESS + INBOUND + UDP) as u64;
    // Zone B holds zone A's flows, NAT bindings included, before anything fails.
    l.wait_zone_a_flows(&gw_b, EGRESS + UDP, INBOUND);
    let sync = &l.status(&gw_b, "zone-b")["details"]["conntrack_sync"];
    eprintln!("gw-b before the failure: {sync}");
    let entries = gw_b
        .run(&["conntrack", "-L", "-p", "tcp", "--orig-src", lab::VM_A])
        .expect("conntrack -L");
    assert!(
        entries.contains(&format!("dst={}", lab::ZONE_A_PUBLIC_VIP)),
        "gw-b has no NAT'd copy of zone A's egress flows: {entries}"
    );
    let _ = l.window(&f, false);

    // 1. Zone A dies: kawaii SIGKILLed (its conntrackd with it), links cut.
    l.topo.proc(l.lab.kawaii_a.proc).kill();
    l.cut(&gw_a, false);
    l.wait_vip(&gw_b, lab::ZONE_A_PRIVATE_VIP, true, "gw-b to take zone A");
    std::thread::sleep(Duration::from_secs(3));
    let w = l.window(&f, false);
    if let Some(b) = &l.lab.kawaii_b {
        tail(
            &b.log(&mut l.topo),
            &["VRRP transition", "zones taken", "applied"],
            8,
        );
    }
    check("zone A killed", &w, EGRESS + INBOUND, UDP);

    // 2. Zone A returns as after a reboot (no VIPs, empty conntrack table) and preempts only
    // after its resync.
    for (vip, dev) in [
        (lab::ZONE_A_PRIVATE_VIP, "lan0"),
        (lab::ZONE_B_PRIVATE_VIP, "lan0"),
        (lab::ZONE_A_PUBLIC_VIP, "wan0"),
        (lab::ZONE_B_PUBLIC_VIP, "wan0"),
    ] {
        let _ = gw_a.exec(&["ip", "addr", "del", &format!("{vip}/24"), "dev", dev]);
    }
    gw_a.run(&["conntrack", "-F"]).expect("conntrack -F");
    l.cut(&gw_a, true);
    let started = Instant::now();
    l.lab.kawaii_a.restart(&mut l.topo).expect("restart");
    l.wait_vip(
        &gw_a,
        lab::ZONE_A_PRIVATE_VIP,
        true,
        "gw-a to take zone A back",
    );
    l.wait_vip(
        &gw_b,
        lab::ZONE_A_PRIVATE_VIP,
        false,
        "gw-b to let zone A go",
    );
    let back = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let w = l.window(&f, false);
    let st = l.status(&gw_a, "zone-a");
    let sync = &st["details"]["conntrack_sync"];
    let router = st["details"]["vrrp"]
        .as_array()
        .and_then(|v| v.iter().find(|r| r["zone"] == "zone-a").cloned())
        .expect("zone-a router");
    eprintln!(
        "zone A back after {back:?}: resync {} ms, injected {}, took its VIPs at {} (ready at {})",
        sync["last_resync_ms"],
        sync["injected_entries"],
        router["last_transition_ms"],
        sync["ready_at_ms"]
    );
    tail(
        &l.topo.proc(l.lab.kawaii_a.proc).output(),
        &["resync", "readiness", "VRRP transition", "zones taken"],
        8,
    );
    // A UDP exchange that reaches gw-a before the resync lands makes its entry there first: the
    // resync then updates it instead of creating it. Each flow is one or the other.
    let injected = |k: &str| sync[k].as_u64().unwrap_or(0);
    assert!(
        injected("injected_entries") + injected("injected_updates") >= total,
        "gw-a came back without its flows: {sync}"
    );
    assert!(
        router["last_transition_ms"].as_u64() >= sync["ready_at_ms"].as_u64(),
        "gw-a preempted before its resync: {st}"
    );
    assert_eq!(router["state"], "master", "{st}");
    check("zone A back (preempted)", &w, EGRESS + INBOUND, UDP);

    // 3. SIGTERM on zone A: it resigns, zone B takes over at once.
    l.topo.proc(l.lab.kawaii_a.proc).signal("TERM");
    l.wait_vip(&gw_b, lab::ZONE_A_PRIVATE_VIP, true, "gw-b to take zone A");
    std::thread::sleep(Duration::from_secs(3));
    let w = l.window(&f, false);
    check("SIGTERM handover", &w, EGRESS + INBOUND, UDP);

    // The same sockets all along: no server saw a new connection (one per flow, and no probe: the
    // servers say when they listen), a reset or a new UDP source; every stream is still open.
    let s = l.stop_servers(&f);
    eprintln!("servers: {s:?}");
    for (i, n, what) in [(0, EGRESS, "egress"), (2, INBOUND, "port-forward")] {
        assert_eq!(s[i]["accepted"], n as u64, "{what} server: {}", s[i]);
        assert_eq!(s[i]["errors"], 0, "{what} server: {}", s[i]);
        assert_eq!(s[i]["open"], n as u64, "{what} server: {}", s[i]);
    }
    assert_eq!(s[1]["sources"], UDP as u64, "UDP server: {}", s[1]);
}

/// Acceptance 5: the same failure with `conntrack_sync = false` kills the egress flows, so the
/// test above measures the sync and not luck.
#[test]
fn without_sync_egress_flows_die() {
    const N: usize = 50;
    let mut l = Lab::new("ct-ctrl", false);
    let (gw_a, gw_b) = (l.lab.gw_a.clone(), l.lab.gw_b.clone());
    let st = l.status(&gw_b, "zone-b");
    assert!(st["details"]["conntrack_sync"].is_null(), "{st}");
    // The flows must go through zone A for its loss to mean anything: its VIP at home first.
    l.wait_vip(&gw_a, lab::ZONE_A_PRIVATE_VIP, true, "gw-a to hold zone A");
    l.wait_vip(
        &gw_b,
        lab::ZONE_A_PRIVATE_VIP,
        false,
        "gw-b to hold only zone B",
    );
    let f = l.start_flows(N, 0, 0);
    let _ = l.window(&f, false);
    l.topo.proc(l.lab.kawaii_a.proc).kill();
    l.cut(&gw_a, false);
    l.wait_vip(&gw_b, lab::ZONE_A_PRIVATE_VIP, true, "gw-b to take zone A");
    std::thread::sleep(Duration::from_secs(4));
    let w = l.window(&f, true);
    // Dead: reset, or silent for more than 2 s at the end of a 4 s window after the move.
    let dead = w.tcp.iter().filter(|&&ms| ms >= 2000).count() as u64;
    eprintln!(
        "without sync: {dead} of {N} egress flows stalled for good ({} reset)",
        w.tcp_dead
    );
    assert!(
        dead >= (N as u64) * 9 / 10,
        "egress flows survived without sync: {w:?}"
    );
}

/// Acceptance 6 and 7: kawaii restarts a killed conntrackd within a second and a frozen one
/// (SIGSTOP) through its watchdog, and says so in the status; the sync port answers only the
/// siblings (a sweep from the internet and from a private host is dropped).
#[test]
fn conntrackd_is_supervised_and_its_port_closed() {
    let l = Lab::new("ct-sup", true);
    let (gw_a, gw_b, vm_a, internet) = (
        l.lab.gw_a.clone(),
        l.lab.gw_b.clone(),
        l.lab.vm_a.clone(),
        l.lab.internet.clone(),
    );
    let sync = |l: &Lab| l.status(&gw_b, "zone-b")["details"]["conntrack_sync"].clone();
    let before = sync(&l);
    assert_eq!(before["running"], true, "{before}");
    assert_eq!(before["transport"], "ftfw-unicast", "{before}");
    assert_eq!(
        before["siblings"][0]["address"],
        lab::GW_A_PRIVATE,
        "{before}"
    );
    let pid = before["pid"].as_u64().expect("pid");
    let restarts = before["restarts"].as_u64().unwrap_or(0);

    // 6. Killed: back within a second, the status shows the restart.
    let killed = Instant::now();
    gw_b.run(&["kill", "-KILL", &pid.to_string()])
        .expect("kill");
    let after = wait_for(Duration::from_secs(5), "conntrackd restarted", || {
        let s = lab::status(&gw_b, &l.state("zone-b"))?;
        let c = s["details"]["conntrack_sync"].clone();
        (c["running"] == true && c["pid"].as_u64().is_some_and(|p| p != pid)).then_some(c)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let took = killed.elapsed();
    eprintln!("conntrackd restarted in {took:?}: {after}");
    assert!(took < Duration::from_secs(1), "restart took {took:?}");
    assert_eq!(after["restarts"].as_u64(), Some(restarts + 1), "{after}");
    assert!(
        after["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("signal")),
        "{after}"
    );
    let new_pid = after["pid"].as_u64().expect("pid");
    assert!(
        Path::new(&format!("/proc/{new_pid}")).exists(),
        "the reported pid does not run"
    );
    // It resyncs again and gets ready.
    lab::wait_sync_ready(&gw_b, &l.state("zone-b"), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));

    // Frozen (SIGSTOP): its socket stops answering; the watchdog restarts it.
    gw_b.run(&["kill", "-STOP", &new_pid.to_string()])
        .expect("stop");
    let after = wait_for(Duration::from_secs(15), "the watchdog restart", || {
        let s = lab::status(&gw_b, &l.state("zone-b"))?;
        let c = s["details"]["conntrack_sync"].clone();
        (c["watchdog_restarts"].as_u64() == Some(1)
            && c["running"] == true
            && c["pid"].as_u64().is_some_and(|p| p != new_pid))
        .then_some(c)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("watchdog: {after}");
    assert!(
        after["last_watchdog"]
            .as_str()
            .is_some_and(|w| w.contains("hung")),
        "{after}"
    );
    wait_for(Duration::from_secs(2), "the frozen conntrackd gone", || {
        (!Path::new(&format!("/proc/{new_pid}")).exists()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // 7. Sweep: the sync port from a private host and from the internet, at every address of
    // both instances and the multicast group. Nothing is admitted: a dropped packet leaves no
    // conntrack entry, an admitted one does (the siblings' own sync is the positive control).
    let probe = |from: &Host, to: &str| {
        from.run(&[
            "bash",
            "-c",
            &format!("for i in 1 2 3; do echo probe > /dev/udp/{to}/3780; done"),
        ])
        .expect("probe");
    };
    for to in [
        lab::GW_A_PRIVATE,
        lab::GW_B_PRIVATE,
        lab::ZONE_A_PRIVATE_VIP,
        lab::ZONE_B_PRIVATE_VIP,
        "225.0.0.50",
    ] {
        probe(&vm_a, to);
    }
    for to in [
        lab::ZONE_A_PUBLIC_VIP,
        "203.0.113.11",
        lab::ZONE_B_PUBLIC_VIP,
        "203.0.113.21",
    ] {
        probe(&internet, to);
    }
    std::thread::sleep(Duration::from_millis(300));
    for (gw, sibling) in [(&gw_a, lab::GW_B_PRIVATE), (&gw_b, lab::GW_A_PRIVATE)] {
        let entries = gw
            .run(&["conntrack", "-L", "-p", "udp", "--dport", "3780"])
            .unwrap_or_default();
        assert!(
            entries.contains(&format!("src={sibling} ")),
            "the sibling's sync is missing (positive control): {entries}"
        );
        for stranger in [lab::VM_A, lab::INTERNET] {
            assert!(
                !entries.contains(&format!("src={stranger} ")),
                "{stranger} reached the sync port: {entries}"
            );
        }
    }
    let errors = sync(&l)["errors"].as_u64().unwrap_or(0);
    assert_eq!(errors, 0, "conntrackd saw foreign messages: {}", sync(&l));
}

/// Acceptance 4: three zones (NOTRACK over multicast). Zone A is lost to zone B (next in the
/// order) and zone A's flows survive; zone C's own flows are untouched throughout.
#[test]
fn three_zones_flows_survive_and_the_third_zone_is_untouched() {
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = Topology::new("ct-3z").expect("topology");
    let cfg = t.dir().join("gateway.toml");
    std::fs::write(&cfg, three_zones::config()).expect("config");
    let opts = HaLabOptions {
        kawaii: env!("CARGO_BIN_EXE_kawaii").into(),
        config: cfg,
        env: vec![("KAWAII_LOG".into(), "info".into())],
        start_b: true,
        etcd: false,
    };
    let flows = lab::flows_script(&t).expect("flows.py");
    let spawn = |t: &mut Topology, h: &Host, name: &str, args: &[&str]| {
        let mut cmd = vec!["python3", flows.as_str()];
        cmd.extend_from_slice(args);
        t.spawn(h, name, &cmd).expect("spawn")
    };
    let three_zones::ThreeZones {
        internet,
        gws,
        vm_a,
        vm_c,
        kawaii,
        ..
    } = three_zones::build(&mut t, &opts).unwrap_or_else(|e| panic!("{e}"));
    let streams = spawn(&mut t, &internet, "streams", &["streams", "9000", "100"]);
    let echo = spawn(&mut t, &internet, "udp-echo", &["udp-echo", "9001"]);
    let sync = lab::status(&gws[1], &kawaii[1].state).expect("status")["details"]["conntrack_sync"]
        .clone();
    assert_eq!(sync["transport"], "notrack-multicast", "{sync}");
    t.proc(streams)
        .wait_line("listening", Duration::from_secs(10))
        .expect("stream server");
    let tcp_a = format!("{}:9000:50", lab::INTERNET);
    let udp_a = format!("{}:9001:10:41000", lab::INTERNET);
    let tcp_c = format!("{}:9000:20", lab::INTERNET);
    let udp_c = format!("{}:9001:5:42000", lab::INTERNET);
    let client_a = spawn(
        &mut t,
        &vm_a,
        "client-a",
        &["client", "--tcp", &tcp_a, "--udp", &udp_a],
    );
    let client_c = spawn(
        &mut t,
        &vm_c,
        "client-c",
        &["client", "--tcp", &tcp_c, "--udp", &udp_c],
    );
    for c in [client_a, client_c] {
        t.proc(c)
            .wait_line("ready", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("every flow to carry data: {e}"));
    }
    // Zone A's flows reach both siblings over multicast.
    for gw in &gws[1..] {
        wait_for(
            Duration::from_secs(15),
            "zone A's flows on the siblings",
            || {
                let out = gw
                    .run(&["conntrack", "-L", "--reply-dst", lab::ZONE_A_PUBLIC_VIP])
                    .unwrap_or_default();
                (out.lines().filter(|l| l.contains("src=10.1.0.10 ")).count() >= 60).then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e} ({})", gw.ns));
    }
    let window = |t: &mut Topology, c: usize| -> serde_json::Value {
        let p = t.proc(c);
        let before = p.output().lines().filter(|l| l.starts_with('{')).count();
        p.signal("USR1");
        let log = p.log.clone();
        let line = wait_for(Duration::from_secs(10), "a window", || {
            kawaii_testkit::slurp(&log)
                .lines()
                .filter(|l| l.starts_with('{'))
                .nth(before)
                .map(str::to_string)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&line).expect("json")
    };
    let _ = window(&mut t, client_a);
    let _ = window(&mut t, client_c);

    // Zone A dies; zone B (next in the order) takes its VIPs.
    t.proc(kawaii[0].proc).kill();
    for dev in ["wan0", "lan0"] {
        gws[0]
            .run(&["ip", "link", "set", dev, "down"])
            .expect("link");
    }
    wait_for(Duration::from_secs(10), "gw-b to take zone A", || {
        lab::has_address(&gws[1], lab::ZONE_A_PRIVATE_VIP).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_secs(3));
    let worst = |w: &serde_json::Value| {
        w["tcp"]
            .as_array()
            .into_iter()
            .chain(w["udp"].as_array())
            .flatten()
            .filter_map(serde_json::Value::as_u64)
            .max()
            .unwrap_or(u64::MAX)
    };
    let (wa, wc) = (window(&mut t, client_a), window(&mut t, client_c));
    eprintln!(
        "three zones, zone A lost: zone A's flows longest stall {} ms, zone C's {} ms",
        worst(&wa),
        worst(&wc)
    );
    assert_eq!(wa["tcp_dead"], 0, "{wa}");
    assert!(worst(&wa) < MAX_STALL_MS, "zone A's flows: {wa}");
    assert_eq!(wc["tcp_dead"], 0, "{wc}");
    assert!(worst(&wc) < 400, "zone C's flows were disturbed: {wc}");
    assert!(!lab::has_address(&gws[1], "10.1.0.3"), "zone C moved");
    assert!(lab::has_address(&gws[2], "10.1.0.3"), "zone C moved");
    for p in [streams, echo] {
        t.proc(p).signal("TERM");
    }
    let log = t.proc(streams).log.clone();
    let summary = wait_for(
        Duration::from_secs(5),
        "the stream server's summary",
        || {
            kawaii_testkit::slurp(&log)
                .lines()
                .find(|l| l.starts_with('{'))
                .map(str::to_string)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s: serde_json::Value = serde_json::from_str(&summary).expect("json");
    assert_eq!(s["accepted"], 70, "one connection per flow: {s}");
    assert_eq!(s["errors"], 0, "{s}");
}
