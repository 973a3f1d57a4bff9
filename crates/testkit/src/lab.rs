//! The gateway demo topology, shared by `kawaii lab` and the end-to-end tests:
//!
//! ```text
//!  internet 198.51.100.10 ── router (198.51.100.1 | 203.0.113.1) ── gw wan0 203.0.113.10 (VIP)
//!                                                                    gw lan0 10.1.0.1 (VIP)
//!                                                                      │ lan switch
//!                                                         vm1 10.1.0.10 (web :80)   vm2 10.1.0.11 (udp echo :5353)
//! ```
//! The gateway namespace runs `kawaii serve`; the hosts run small Python services.

use crate::{Host, Result, Topology, wait_for, wait_tcp};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SVC_PY: &str = include_str!("svc.py");
/// Long-lived TCP/UDP flows whose stalls are measured across a failover (`flows.py`).
pub const FLOWS_PY: &str = include_str!("flows.py");
pub const INTERNET: &str = "198.51.100.10";
pub const PUBLIC_VIP: &str = "203.0.113.10";
pub const VM1: &str = "10.1.0.10";
pub const VM2: &str = "10.1.0.11";

#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The kawaii binary.
    pub kawaii: PathBuf,
    /// The gateway config (interfaces wan0 and lan0).
    pub config: PathBuf,
    /// Extra environment for the daemon (e.g. `KAWAII_LOG`).
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct GatewayLab {
    pub internet: Host,
    pub router: Host,
    pub gw: Host,
    pub lan: Host,
    pub vm1: Host,
    pub vm2: Host,
    /// Index of the kawaii process in the topology.
    pub kawaii: usize,
    pub state: PathBuf,
    /// The services script (its `stream` and `scan` modes are test clients).
    pub svc: String,
}

/// Builds the topology, starts the services and kawaii, and waits until the table is applied.
pub fn build(t: &mut Topology, opts: &LabOptions) -> Result<GatewayLab> {
    let svc = t.dir().join("svc.py");
    std::fs::write(&svc, SVC_PY).map_err(|error| crate::KitError::Spawn {
        cmd: "write svc.py".into(),
        error,
    })?;
    let svc = svc.to_string_lossy().into_owned();

    let internet = t.host("internet")?;
    let router = t.host("router")?;
    let gw = t.host("gw")?;
    let lan = t.switch("lan")?;
    let vm1 = t.host("vm1")?;
    let vm2 = t.host("vm2")?;

    // IPv4 only: no IPv6 chatter (router solicitations, MLD) on the lab's links.
    for h in [&internet, &router, &gw, &lan, &vm1, &vm2] {
        h.run(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
    }
    t.link(&internet, "eth0", &router, "eth0")?;
    t.link(&router, "eth1", &gw, "wan0")?;
    t.plug(&gw, "lan0", &lan)?;
    t.plug(&vm1, "eth0", &lan)?;
    t.plug(&vm2, "eth0", &lan)?;

    internet.run(&["ip", "addr", "add", "198.51.100.10/24", "dev", "eth0"])?;
    internet.run(&["ip", "route", "add", "default", "via", "198.51.100.1"])?;
    router.run(&["ip", "addr", "add", "198.51.100.1/24", "dev", "eth0"])?;
    router.run(&["ip", "addr", "add", "203.0.113.1/24", "dev", "eth1"])?;
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    for (h, ip) in [(&vm1, "10.1.0.10/24"), (&vm2, "10.1.0.11/24")] {
        h.run(&["ip", "addr", "add", ip, "dev", "eth0"])?;
        h.run(&["ip", "route", "add", "default", "via", "10.1.0.1"])?;
    }

    for port in ["80", "443", "25"] {
        t.spawn(
            &internet,
            &format!("internet-http-{port}"),
            &["python3", &svc, "http", "internet", port],
        )?;
    }
    t.spawn(
        &internet,
        "internet-echo",
        &["python3", &svc, "tcp-echo", "7"],
    )?;
    t.spawn(&vm1, "vm1-http", &["python3", &svc, "http", "vm1", "80"])?;
    t.spawn(
        &vm2,
        "vm2-udp",
        &["python3", &svc, "udp-echo", "vm2", "5353"],
    )?;

    let state = t.dir().join("state");
    let mut cmd: Vec<String> = vec!["env".into()];
    cmd.extend(opts.env.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.extend([
        opts.kawaii.to_string_lossy().into_owned(),
        "serve".into(),
        "--config".into(),
        opts.config.to_string_lossy().into_owned(),
        "--state".into(),
        state.to_string_lossy().into_owned(),
    ]);
    let kawaii = t.spawn(&gw, "kawaii", &cmd)?;

    let timeout = Duration::from_secs(20);
    wait_tcp(
        &internet,
        format!("{INTERNET}:80").parse().expect("address"),
        timeout,
    )?;
    wait_tcp(&vm1, format!("{VM1}:80").parse().expect("address"), timeout)?;
    let gw2 = gw.clone();
    wait_for(timeout, "kawaii to apply its table", || {
        gw2.exec(&["nft", "list", "table", "inet", "kawaii"])
            .ok()
            .filter(|o| o.status.success())
            .map(|_| ())
    })?;
    Ok(GatewayLab {
        internet,
        router,
        gw,
        lan,
        vm1,
        vm2,
        kawaii,
        state,
        svc,
    })
}

/// The token the gateway's bootstrap wrote (the lab config configures none).
pub fn admin_token(state: &Path) -> Option<String> {
    std::fs::read_to_string(state.join("admin.token"))
        .ok()
        .map(|s| s.trim().to_string())
}

// ---------------------------------------------------------------------------------------------
// Multi-zone HA (`kawaii lab up --zones 2`, crates/kawaii/tests/ha.rs):
//
//  internet 198.51.100.10 ── router (198.51.100.1 | 203.0.113.1) ── pub switch
//                                          ├── gw-a wan0 203.0.113.11   (zone-a public VIP 203.0.113.10)
//                                          └── gw-b wan0 203.0.113.21   (zone-b public VIP 203.0.113.20)
//  lan switch ── gw-a lan0 10.1.0.251 (zone-a private VIP 10.1.0.1)
//             ├─ gw-b lan0 10.1.0.252 (zone-b private VIP 10.1.0.2)
//             ├─ vm-a 10.1.0.10, default via 10.1.0.1 (zone-a's hosts: 10.1.0.0/27)
//             └─ vm-b 10.1.0.40, default via 10.1.0.2 (zone-b's hosts: 10.1.0.32/27)
// ---------------------------------------------------------------------------------------------

pub const ZONE_A_PUBLIC_VIP: &str = "203.0.113.10";
pub const ZONE_B_PUBLIC_VIP: &str = "203.0.113.20";
pub const ZONE_A_PRIVATE_VIP: &str = "10.1.0.1";
pub const ZONE_B_PRIVATE_VIP: &str = "10.1.0.2";
pub const VM_A: &str = "10.1.0.10";
pub const VM_B: &str = "10.1.0.40";
/// The instances' own fixed addresses (host-configured; the VRRP sources).
pub const GW_A_PRIVATE: &str = "10.1.0.251";
pub const GW_B_PRIVATE: &str = "10.1.0.252";

/// The two-zone lab's config: `advert_interval_cs` and `preempt_delay` as given.
pub fn ha_config(advert_interval_cs: u16, preempt_delay: &str) -> String {
    format!(
        r#"[gateway]
name = "lab-ha"
private_subnet = "10.1.0.0/24"

[ha]
advert_interval_cs = {advert_interval_cs}
preempt_delay = "{preempt_delay}"

[[zones]]
name = "zone-a"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "{ZONE_A_PUBLIC_VIP}/24"
public_gateway = "203.0.113.1"
private_vip = "{ZONE_A_PRIVATE_VIP}"
public_address = "203.0.113.11"
private_address = "{GW_A_PRIVATE}"
private_hosts = "10.1.0.0/27"

[[zones]]
name = "zone-b"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "{ZONE_B_PUBLIC_VIP}/24"
public_gateway = "203.0.113.1"
private_vip = "{ZONE_B_PRIVATE_VIP}"
public_address = "203.0.113.21"
private_address = "{GW_B_PRIVATE}"
private_hosts = "10.1.0.32/27"

[[ingress_rules]]
protocol = "tcp"
ports = "22"
"#
    )
}

#[derive(Debug, Clone)]
pub struct HaLabOptions {
    /// The kawaii binary.
    pub kawaii: PathBuf,
    /// The shared config (see [`ha_config`]).
    pub config: PathBuf,
    /// Extra environment for the daemons.
    pub env: Vec<(String, String)>,
    /// Start kawaii in zone-b's gateway (false: the caller runs something else there, e.g.
    /// keepalived).
    pub start_b: bool,
}

#[derive(Debug, Clone)]
pub struct HaLab {
    pub internet: Host,
    pub router: Host,
    pub gw_a: Host,
    pub gw_b: Host,
    pub vm_a: Host,
    pub vm_b: Host,
    pub lan: Host,
    pub public: Host,
    /// Indexes of the kawaii processes in the topology (zone-b: None if not started).
    pub kawaii_a: usize,
    pub kawaii_b: Option<usize>,
    pub svc: String,
}

/// Starts `kawaii serve --zone ZONE` in `host` with its own state directory.
pub fn spawn_zone(t: &mut Topology, host: &Host, zone: &str, opts: &HaLabOptions) -> Result<usize> {
    let state = t.dir().join(format!("state-{zone}"));
    // Each instance gets a private /run/wireguard (both zones' devices are `kawaii-wg0`).
    let mut cmd: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        "mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 kawaii-wg /run/wireguard && exec \"$@\"".into(),
        "sh".into(),
        "env".into(),
    ];
    cmd.extend(opts.env.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.extend([
        opts.kawaii.to_string_lossy().into_owned(),
        "serve".into(),
        "--config".into(),
        opts.config.to_string_lossy().into_owned(),
        "--zone".into(),
        zone.into(),
        "--state".into(),
        state.to_string_lossy().into_owned(),
    ]);
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t.spawn(host, &format!("kawaii-{zone}-{n}"), &cmd)
}

/// Whether `host` has `ip` on one of its interfaces.
pub fn has_address(host: &Host, ip: &str) -> bool {
    host.run(&["ip", "-o", "-4", "addr", "show"])
        .map(|s| {
            s.split_whitespace()
                .any(|w| w.split('/').next() == Some(ip))
        })
        .unwrap_or(false)
}

/// Builds the two-zone topology, starts the services and the kawaii instances, and waits until
/// each zone's VIPs are held by its home instance.
pub fn build_ha(t: &mut Topology, opts: &HaLabOptions) -> Result<HaLab> {
    let svc = t.dir().join("svc.py");
    std::fs::write(&svc, SVC_PY).map_err(|error| crate::KitError::Spawn {
        cmd: "write svc.py".into(),
        error,
    })?;
    let svc = svc.to_string_lossy().into_owned();
    let internet = t.host("internet")?;
    let router = t.host("router")?;
    let public = t.switch("pub")?;
    let lan = t.switch("lan")?;
    let gw_a = t.host("gw-a")?;
    let gw_b = t.host("gw-b")?;
    let vm_a = t.host("vm-a")?;
    let vm_b = t.host("vm-b")?;
    for h in [
        &internet, &router, &public, &lan, &gw_a, &gw_b, &vm_a, &vm_b,
    ] {
        h.run(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
    }
    t.link(&internet, "eth0", &router, "eth0")?;
    t.plug(&router, "eth1", &public)?;
    t.plug(&gw_a, "wan0", &public)?;
    t.plug(&gw_b, "wan0", &public)?;
    t.plug(&gw_a, "lan0", &lan)?;
    t.plug(&gw_b, "lan0", &lan)?;
    t.plug(&vm_a, "eth0", &lan)?;
    t.plug(&vm_b, "eth0", &lan)?;
    internet.run(&["ip", "addr", "add", "198.51.100.10/24", "dev", "eth0"])?;
    internet.run(&["ip", "route", "add", "default", "via", "198.51.100.1"])?;
    router.run(&["ip", "addr", "add", "198.51.100.1/24", "dev", "eth0"])?;
    router.run(&["ip", "addr", "add", "203.0.113.1/24", "dev", "eth1"])?;
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    for (h, wan, lan_ip) in [
        (&gw_a, "203.0.113.11/24", "10.1.0.251/24"),
        (&gw_b, "203.0.113.21/24", "10.1.0.252/24"),
    ] {
        h.run(&["ip", "addr", "add", wan, "dev", "wan0"])?;
        h.run(&["ip", "addr", "add", lan_ip, "dev", "lan0"])?;
        // Removing a VIP must never take the fixed address with it.
        h.run(&["sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1"])?;
    }
    for (h, ip, gw) in [
        (&vm_a, "10.1.0.10/24", ZONE_A_PRIVATE_VIP),
        (&vm_b, "10.1.0.40/24", ZONE_B_PRIVATE_VIP),
    ] {
        h.run(&["ip", "addr", "add", ip, "dev", "eth0"])?;
        h.run(&["ip", "route", "add", "default", "via", gw])?;
    }
    t.spawn(
        &internet,
        "internet-http-80",
        &["python3", &svc, "http", "internet", "80"],
    )?;
    let kawaii_a = spawn_zone(t, &gw_a, "zone-a", opts)?;
    let kawaii_b = if opts.start_b {
        Some(spawn_zone(t, &gw_b, "zone-b", opts)?)
    } else {
        None
    };
    let timeout = Duration::from_secs(20);
    wait_tcp(
        &internet,
        format!("{INTERNET}:80").parse().expect("address"),
        timeout,
    )?;
    wait_for(timeout, "zone-a's VIPs on gw-a", || {
        has_address(&gw_a, ZONE_A_PRIVATE_VIP).then_some(())
    })?;
    if opts.start_b {
        wait_for(timeout, "zone-b's VIPs on gw-b", || {
            (has_address(&gw_b, ZONE_B_PRIVATE_VIP) && !has_address(&gw_a, ZONE_B_PRIVATE_VIP))
                .then_some(())
        })?;
    }
    // With connection-state sync, settled means resynced too (priorities no longer held).
    let state = |zone: &str| t.dir().join(format!("state-{zone}"));
    wait_sync_ready(&gw_a, &state("zone-a"), timeout)?;
    if opts.start_b {
        wait_sync_ready(&gw_b, &state("zone-b"), timeout)?;
    }
    Ok(HaLab {
        internet,
        router,
        gw_a,
        gw_b,
        vm_a,
        vm_b,
        lan,
        public,
        kawaii_a,
        kawaii_b,
        svc,
    })
}

/// `GET /v1/status` of the kawaii in `host` (API on 127.0.0.1:7780), with the bootstrap token
/// from `state`; None while it does not answer.
pub fn status(host: &Host, state: &Path) -> Option<serde_json::Value> {
    let token = admin_token(state)?;
    let out = host
        .exec(&[
            "curl",
            "-sf",
            "--max-time",
            "2",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "http://127.0.0.1:7780/v1/status",
        ])
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits until the kawaii in `host` reports its connection-state sync ready (its siblings'
/// flows resynced), or runs without sync.
pub fn wait_sync_ready(host: &Host, state: &Path, timeout: Duration) -> Result<()> {
    wait_for(timeout, "the connection-state sync to be ready", || {
        let st = status(host, state)?;
        let sync = &st["details"]["conntrack_sync"];
        (sync.is_null() || sync["ready"] == true).then_some(())
    })
}

/// Writes `flows.py` into the topology's directory; returns its path.
pub fn flows_script(t: &Topology) -> Result<String> {
    let path = t.dir().join("flows.py");
    std::fs::write(&path, FLOWS_PY).map_err(|error| crate::KitError::Spawn {
        cmd: "write flows.py".into(),
        error,
    })?;
    Ok(path.to_string_lossy().into_owned())
}

// ---------------------------------------------------------------------------------------------
// The VPN part of the single-zone lab: a `laptop` on the public side of the region router
// (192.0.2.2) running wireguard-go, set up only from `kawaii peer showconf laptop`.
// ---------------------------------------------------------------------------------------------

pub const LAPTOP: &str = "192.0.2.2";
pub const LAPTOP_IFNAME: &str = "klab-laptop";

/// Adds the laptop to a built lab and connects it: waits for the gateway's WireGuard device,
/// fetches the peer's config with the kawaii CLI in the gateway namespace, starts wireguard-go.
pub fn vpn_laptop(
    t: &mut Topology,
    lab: &GatewayLab,
    kawaii: &Path,
    private_key: &str,
) -> Result<Host> {
    let laptop = t.host("laptop")?;
    laptop.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
    t.link(&lab.router, "eth2", &laptop, "eth0")?;
    lab.router
        .run(&["ip", "addr", "add", "192.0.2.1/24", "dev", "eth2"])?;
    laptop.run(&["ip", "addr", "add", &format!("{LAPTOP}/24"), "dev", "eth0"])?;
    laptop.run(&["ip", "route", "add", "default", "via", "192.0.2.1"])?;
    let token = admin_token(&lab.state).unwrap_or_default();
    let kawaii = kawaii.to_string_lossy().into_owned();
    let conf = showconf(&lab.gw, &kawaii, &token, "laptop")?;
    crate::services::wireguard_go_client(t, &laptop, LAPTOP_IFNAME, &conf, private_key)?;
    Ok(laptop)
}

/// `kawaii peer showconf PEER` run on `gw` (as soon as the gateway answers, within 15 s).
pub fn showconf(gw: &Host, kawaii: &str, token: &str, peer: &str) -> Result<String> {
    wait_for(
        Duration::from_secs(15),
        &format!("kawaii peer showconf {peer}"),
        || {
            let out = gw
                .command(&[kawaii, "peer", "showconf", peer])
                .env("KAWAII_TOKEN", token)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    )
}
