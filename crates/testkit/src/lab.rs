//! The gateway demo topology, shared by `kawaii lab` and the end-to-end tests:
//!
//! ```text
//!  internet 198.51.100.10 ── router (198.51.100.1 | 203.0.113.1) ── gw wan0 203.0.113.10 (VIP)
//!                                                                    gw lan0 10.1.0.1 (VIP)
//!                                                                      │ lan switch
//!                                                         vm1 10.1.0.10 (web :80)   vm2 10.1.0.11 (udp echo :5353)
//! ```
//! The gateway namespace runs `kawaii serve`; the hosts run small Python services.
//!
//! When the config declares `private_subnet6` (as `examples/lab.toml` does) the lab is
//! dual-stack: internet 2001:db8:64::10, the router 2001:db8:64::1 | 2001:db8:ff::1 (routing
//! 2001:db8:1::/64 to the gateway's IPv6 VIP 2001:db8:ff::10), vm1 2001:db8:1::10 and vm2
//! 2001:db8:1::11, both also taking an address and their default route from the gateway's
//! router advertisements.

use crate::serve::{Serve, ServeOptions};
use crate::{Host, Result, Topology, wait_for, wait_tcp};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SVC_PY: &str = include_str!("svc.py");
/// The config the lab runs by default (`examples/lab.toml`).
pub const LAB_TOML: &str = include_str!("../../../examples/lab.toml");
/// Long-lived TCP/UDP flows whose stalls are measured across a failover (`flows.py`).
pub const FLOWS_PY: &str = include_str!("flows.py");
pub const INTERNET: &str = "198.51.100.10";
pub const PUBLIC_VIP: &str = "203.0.113.10";
pub const VM1: &str = "10.1.0.10";
pub const VM2: &str = "10.1.0.11";
pub const INTERNET6: &str = "2001:db8:64::10";
pub const PUBLIC_VIP6: &str = "2001:db8:ff::10";
pub const VM1_6: &str = "2001:db8:1::10";
pub const VM2_6: &str = "2001:db8:1::11";
/// The routed private prefix of a dual-stack lab.
pub const PRIVATE_SUBNET6: &str = "2001:db8:1::/64";

#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The kawaii binary.
    pub kawaii: PathBuf,
    /// The gateway config (interfaces wan0 and lan0).
    pub config: PathBuf,
    /// Extra environment for the daemon (e.g. `KAWAII_LOG`).
    pub env: Vec<(String, String)>,
}

impl LabOptions {
    /// Writes `config` into the topology's directory (`gateway.toml`); no extra environment.
    pub fn new(t: &Topology, kawaii: impl Into<PathBuf>, config: &str) -> Result<LabOptions> {
        Ok(LabOptions {
            kawaii: kawaii.into(),
            config: t.write("gateway.toml", config)?,
            env: Vec::new(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct GatewayLab {
    pub internet: Host,
    pub router: Host,
    pub gw: Host,
    pub lan: Host,
    pub vm1: Host,
    pub vm2: Host,
    /// The daemon in `gw`, with a private `/run/wireguard` (`wg show` through
    /// [`Serve::run_in_mounts`]).
    pub kawaii: Serve,
    pub state: PathBuf,
    /// The services script (its `stream` and `scan` modes are test clients).
    pub svc: String,
}

impl GatewayLab {
    /// The daemon's API as its bootstrap admin.
    pub fn api(&self) -> crate::api::Api {
        self.kawaii.api()
    }
}

/// A `[wireguard]` section (port 51820, 10.8.0.1/24, the key in `key_file`) with one
/// `[[wireguard.peers]]` per `(name, public key, further lines)`.
pub fn wireguard_toml(key_file: &str, peers: &[(&str, &str, &str)]) -> String {
    let mut s = format!(
        "\n[wireguard]\nlisten_port = 51820\naddress = \"10.8.0.1/24\"\nprivate_key_file = \"{key_file}\"\n"
    );
    for (name, key, more) in peers {
        s += &format!("\n[[wireguard.peers]]\nname = \"{name}\"\npublic_key = \"{key}\"\n{more}");
    }
    s
}

/// A new topology (`tag`) with the lab built in it, kawaii running on `config`.
pub fn start(tag: &str, kawaii: &Path, config: &str) -> Result<(Topology, GatewayLab)> {
    if !crate::can_run() {
        return Err(crate::KitError::Command {
            cmd: "ip netns".into(),
            stderr: "end-to-end tests need root and iproute2".into(),
        });
    }
    let mut t = Topology::new(tag)?;
    let opts = LabOptions::new(&t, kawaii, config)?;
    let lab = build(&mut t, &opts)?;
    Ok((t, lab))
}

/// The region's side of every lab: `internet` (198.51.100.10, HTTP on 80) and the `router`
/// (198.51.100.1 | 203.0.113.1 on eth1, forwarding); with `ipv6` also their IPv6 addresses.
fn region(t: &mut Topology, svc: &str, ipv6: bool) -> Result<(Host, Host)> {
    let internet = t.host("internet")?;
    let router = t.host("router")?;
    if !ipv6 {
        for h in [&internet, &router] {
            h.ipv4_only()?;
        }
    }
    t.link(&internet, "eth0", &router, "eth0")?;
    internet.addr("eth0", "198.51.100.10/24")?;
    internet.default_via("198.51.100.1")?;
    router.addr("eth0", "198.51.100.1/24")?;
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    if ipv6 {
        internet.addr6("eth0", &format!("{INTERNET6}/64"))?;
        internet.route6("default", "2001:db8:64::1")?;
        router.addr6("eth0", "2001:db8:64::1/64")?;
        router.run(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
    }
    t.spawn(
        &internet,
        "internet-http-80",
        &["python3", svc, "http", "internet", "80"],
    )?;
    Ok((internet, router))
}

/// Waits until port 80 of `ip` (an address of `host`) accepts connections.
fn wait_http(host: &Host, ip: &str, timeout: Duration) -> Result<()> {
    let addr = std::net::SocketAddr::new(ip.parse().expect("an IP address"), 80);
    wait_tcp(host, addr, timeout)
}

/// A switch that floods multicast: neighbour discovery and advertisements reach every port
/// (there is no MLD querier on the lab's links).
fn flood_multicast(switch: &Host) -> Result<()> {
    switch
        .run(&[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])
        .map(drop)
}

/// The region router's IPv6 side towards the gateway(s): 2001:db8:ff::1 on eth1, and the
/// private prefix routed (no NAT66) to the (first) zone's IPv6 VIP.
fn router6(router: &Host) -> Result<()> {
    router.addr6("eth1", "2001:db8:ff::1/64")?;
    router.route6(PRIVATE_SUBNET6, PUBLIC_VIP6)
}

/// A private host on the lab's switch: `cidr` on eth0, default route via `gateway`; with an
/// IPv6 address `cidr6`, it also takes an address and its IPv6 default route from router
/// advertisements.
fn private_host(
    t: &mut Topology,
    name: &str,
    lan: &Host,
    cidr: &str,
    gateway: &str,
    cidr6: Option<&str>,
) -> Result<Host> {
    let h = t.host(name)?;
    if cidr6.is_none() {
        h.ipv4_only()?;
    } else {
        // Before the link comes up: the host solicits and listens for advertisements.
        h.run(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.accept_ra=1",
            "net.ipv6.conf.default.autoconf=1",
            "net.ipv6.conf.default.accept_dad=0",
        ])?;
    }
    t.plug(&h, "eth0", lan)?;
    h.addr("eth0", cidr)?;
    h.default_via(gateway)?;
    if let Some(c) = cidr6 {
        h.addr6("eth0", c)?;
    }
    Ok(h)
}

/// Builds the topology, starts the services and kawaii, and waits until the table is applied.
pub fn build(t: &mut Topology, opts: &LabOptions) -> Result<GatewayLab> {
    let svc = t.svc()?;
    let ipv6 = std::fs::read_to_string(&opts.config)
        .map(|c| c.contains("private_subnet6"))
        .unwrap_or(false);
    let (internet, router) = region(t, &svc, ipv6)?;
    let gw = t.host("gw")?;
    let lan = t.switch("lan")?;
    if ipv6 {
        flood_multicast(&lan)?;
    } else {
        for h in [&gw, &lan] {
            h.ipv4_only()?;
        }
    }
    t.link(&router, "eth1", &gw, "wan0")?;
    t.plug(&gw, "lan0", &lan)?;
    router.addr("eth1", "203.0.113.1/24")?;
    if ipv6 {
        router6(&router)?;
    }
    let v6 = |a: &str| ipv6.then(|| format!("{a}/64"));
    let vm1 = private_host(
        t,
        "vm1",
        &lan,
        "10.1.0.10/24",
        "10.1.0.1",
        v6(VM1_6).as_deref(),
    )?;
    let vm2 = private_host(
        t,
        "vm2",
        &lan,
        "10.1.0.11/24",
        "10.1.0.1",
        v6(VM2_6).as_deref(),
    )?;

    for port in ["443", "25"] {
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
    let serve_opts = ServeOptions {
        env: opts.env.clone(),
        ..ServeOptions::new(&opts.kawaii)
    };
    let kawaii = Serve::start_with(t, &gw, &opts.config, &state, &serve_opts)?;

    let timeout = Duration::from_secs(20);
    wait_http(&internet, INTERNET, timeout)?;
    wait_http(&vm1, VM1, timeout)?;
    if ipv6 {
        wait_http(&internet, INTERNET6, timeout)?;
        wait_http(&vm1, VM1_6, timeout)?;
    }
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
/// Dual-stack HA lab ([`dual_stack_ha`]): zone-a's IPv6 VIP (the upstream routes the private
/// prefix to it), zone-b's, and the hosts' own IPv6 addresses.
pub const ZONE_A_PUBLIC_VIP6: &str = PUBLIC_VIP6;
pub const ZONE_B_PUBLIC_VIP6: &str = "2001:db8:ff::20";
pub const VM_A6: &str = "2001:db8:1::10";
pub const VM_B6: &str = "2001:db8:1::40";

/// `config` (see [`ha_config`]) made dual-stack: the routed prefix 2001:db8:1::/64 with SLAAC,
/// each zone's IPv6 VIPs (zone-a 2001:db8:ff::10 and 2001:db8:1::1, zone-b ...::20 and ::2),
/// the region router as IPv6 upstream. [`build_ha`] then builds the IPv6 side too.
pub fn dual_stack_ha(config: &str) -> String {
    let zone6 = |v4: &str, n: u8| {
        format!(
            "{v4}\npublic_vip6 = \"2001:db8:ff::{n}0/64\"\npublic_gateway6 = \"2001:db8:ff::1\"\nprivate_vip6 = \"2001:db8:1::{n}\""
        )
    };
    let a = format!("private_vip = \"{ZONE_A_PRIVATE_VIP}\"");
    let b = format!("private_vip = \"{ZONE_B_PRIVATE_VIP}\"");
    config
        .replace(
            "private_subnet = \"10.1.0.0/24\"",
            "private_subnet = \"10.1.0.0/24\"\nprivate_subnet6 = \"2001:db8:1::/64\"\nslaac = true",
        )
        .replace(&a, &zone6(&a, 1))
        .replace(&b, &zone6(&b, 2))
}

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
    /// Both zones share their desired state through an etcd on a management switch
    /// ([`ETCD_IP`], gw-a 10.254.0.11, gw-b 10.254.0.12) under the prefix [`ETCD_PREFIX`].
    pub etcd: bool,
}

impl HaLabOptions {
    /// Both zones run `kawaii` at the default log level, without a shared store; the config
    /// is filled in by [`start_ha`].
    pub fn new(kawaii: impl Into<PathBuf>) -> HaLabOptions {
        HaLabOptions {
            kawaii: kawaii.into(),
            config: PathBuf::new(),
            env: Vec::new(),
            start_b: true,
            etcd: false,
        }
    }

    /// The daemons' `KAWAII_LOG` filter.
    pub fn log(mut self, filter: &str) -> HaLabOptions {
        self.env.push(("KAWAII_LOG".into(), filter.into()));
        self
    }

    /// Share the desired state through the lab's etcd.
    pub fn etcd(mut self) -> HaLabOptions {
        self.etcd = true;
        self
    }

    /// Whether zone-b's gateway runs kawaii.
    pub fn start_b(mut self, start: bool) -> HaLabOptions {
        self.start_b = start;
        self
    }
}

/// A test's two-zone lab: a new topology `tag` and the lab built in it on the config that
/// `config` returns (given the topology's directory; written to `gateway.toml`). A fixture:
/// it panics, naming the step, when the lab cannot be built.
pub fn start_ha(
    tag: &str,
    config: impl FnOnce(&Path) -> String,
    opts: HaLabOptions,
) -> (Topology, HaLab) {
    assert!(crate::can_run(), "end-to-end tests need root and iproute2");
    let mut topo = Topology::new(tag).expect("topology");
    let config = topo
        .write("gateway.toml", &config(topo.dir()))
        .expect("config");
    let opts = HaLabOptions { config, ..opts };
    let lab = build_ha(&mut topo, &opts).unwrap_or_else(|e| {
        // What the instances said: why a zone did not take its VIPs.
        let mut logs = Vec::new();
        for i in 0..topo.pids().len() {
            let p = topo.proc(i);
            if p.name.starts_with("kawaii") {
                let out = p.output();
                let lines: Vec<&str> = out.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                logs.push(format!("--- {}\n{tail}", p.name));
            }
        }
        panic!("lab: {e}\n{}", logs.join("\n"))
    });
    (topo, lab)
}

/// The HA lab's etcd (with [`HaLabOptions::etcd`]) and the key prefix both zones use.
pub const ETCD_IP: &str = "10.254.0.1";
pub const ETCD_PREFIX: &str = "/kawaii/lab-ha";

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
    /// The kawaii instances (zone-b: None if not started).
    pub kawaii_a: Serve,
    pub kawaii_b: Option<Serve>,
    pub svc: String,
    /// The etcd both zones use (with [`HaLabOptions::etcd`]).
    pub etcd: Option<std::sync::Arc<crate::etcd::Etcd>>,
}

/// `kawaii serve --zone ZONE` in `host` with its own state directory (`state-ZONE`) and a
/// private `/run/wireguard` (both zones' devices are `kawaii-wg0`), started; after a kill,
/// [`Serve::restart`] starts it again.
pub fn zone_serve(t: &mut Topology, host: &Host, zone: &str, opts: &HaLabOptions) -> Result<Serve> {
    let state = t.dir().join(format!("state-{zone}"));
    let serve_opts = ServeOptions {
        zone: Some(zone.to_string()),
        env: opts
            .env
            .iter()
            .cloned()
            .chain(opts.etcd.then(|| {
                (
                    "KAWAII_STORE".to_string(),
                    format!("etcd://{ETCD_IP}:{}{ETCD_PREFIX}", crate::etcd::CLIENT_PORT),
                )
            }))
            .collect(),
        ..ServeOptions::new(&opts.kawaii)
    };
    Serve::start_with(t, host, &opts.config, &state, &serve_opts)
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

/// Waits until zone A's IPv6 VIPs (private and public) are on zone A's gateway only: in the
/// dual-stack lab the IPv6 virtual routers start after DAD, so zone B may hold them for a
/// moment after the lab starts.
pub fn wait_ipv6_home(lab: &HaLab) -> Result<()> {
    let vips = |h: &Host| {
        let a = h
            .run(&["ip", "-o", "-6", "addr", "show"])
            .unwrap_or_default();
        [
            a.contains("2001:db8:1::1/64"),
            a.contains(&format!("{ZONE_A_PUBLIC_VIP6}/64")),
        ]
    };
    wait_for(
        Duration::from_secs(15),
        "zone-a's IPv6 VIPs on gw-a only",
        || (vips(&lab.gw_a) == [true; 2] && vips(&lab.gw_b) == [false; 2]).then_some(()),
    )
}

/// Builds the two-zone topology, starts the services and the kawaii instances, and waits until
/// each zone's VIPs are held by its home instance.
pub fn build_ha(t: &mut Topology, opts: &HaLabOptions) -> Result<HaLab> {
    let svc = t.svc()?;
    let ipv6 = std::fs::read_to_string(&opts.config)
        .map(|c| c.contains("private_subnet6"))
        .unwrap_or(false);
    let (internet, router) = region(t, &svc, ipv6)?;
    let public = t.switch("pub")?;
    let lan = t.switch("lan")?;
    let gw_a = t.host("gw-a")?;
    let gw_b = t.host("gw-b")?;
    if ipv6 {
        flood_multicast(&public)?;
        flood_multicast(&lan)?;
    } else {
        for h in [&public, &lan, &gw_a, &gw_b] {
            h.ipv4_only()?;
        }
    }
    t.plug(&router, "eth1", &public)?;
    router.addr("eth1", "203.0.113.1/24")?;
    if ipv6 {
        router6(&router)?;
    }
    for (h, wan, lan_ip) in [
        (&gw_a, "203.0.113.11/24", "10.1.0.251/24"),
        (&gw_b, "203.0.113.21/24", "10.1.0.252/24"),
    ] {
        t.plug(h, "wan0", &public)?;
        t.plug(h, "lan0", &lan)?;
        h.addr("wan0", wan)?;
        h.addr("lan0", lan_ip)?;
        // Removing a VIP must never take the fixed address with it.
        h.run(&["sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1"])?;
    }
    let v6 = |a: &str| ipv6.then(|| format!("{a}/64"));
    let vm_a = private_host(
        t,
        "vm-a",
        &lan,
        "10.1.0.10/24",
        ZONE_A_PRIVATE_VIP,
        v6(VM_A6).as_deref(),
    )?;
    let vm_b = private_host(
        t,
        "vm-b",
        &lan,
        "10.1.0.40/24",
        ZONE_B_PRIVATE_VIP,
        v6(VM_B6).as_deref(),
    )?;
    let etcd = if opts.etcd {
        let mgmt = t.switch("mgmt")?;
        let etcd = crate::etcd::start(t, &mgmt, &[ETCD_IP])?;
        for (h, ip) in [(&gw_a, "10.254.0.11/24"), (&gw_b, "10.254.0.12/24")] {
            t.plug(h, "mgmt0", &mgmt)?;
            h.run(&["ip", "addr", "add", ip, "dev", "mgmt0"])?;
        }
        Some(std::sync::Arc::new(etcd))
    } else {
        None
    };
    let kawaii_a = zone_serve(t, &gw_a, "zone-a", opts)?;
    let kawaii_b = if opts.start_b {
        Some(zone_serve(t, &gw_b, "zone-b", opts)?)
    } else {
        None
    };
    let timeout = Duration::from_secs(20);
    wait_http(&internet, INTERNET, timeout)?;
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
        etcd,
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
        if admin_token(state).is_none() {
            // The config names its own tokens (no bootstrap token): `/metrics`, which needs
            // none, tells the same (no sync metrics while sync is off).
            let out = host
                .exec(&[
                    "curl",
                    "-sf",
                    "--max-time",
                    "2",
                    "http://127.0.0.1:7780/metrics",
                ])
                .ok()
                .filter(|o| o.status.success())?;
            let text = String::from_utf8_lossy(&out.stdout);
            return match text
                .lines()
                .find(|l| l.starts_with("kawaii_conntrack_sync_ready"))
            {
                None => Some(()),
                Some(l) => l.trim_end().ends_with(" 1").then_some(()),
            };
        }
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

/// The office on our own subnet (docs/ipsec.md, "An office on our own subnet"): its host is
/// 10.1.0.10 like vm1; our hosts reach it at [`TWIN_SEEN`], it sees them in 10.73.0.0/24.
pub const TWIN_OFFICE: &str = "198.51.100.8";
pub const TWIN_HOST: &str = "ohost";
pub const TWIN_SEEN: &str = "10.93.0.10";

/// The gateway's `[[ipsec]]` block for the office of [`twin_office`], its key as `psk_line`
/// (`pre_shared_key = "..."` or `pre_shared_key_file = "..."`).
pub fn twin_toml(psk_line: &str) -> String {
    format!(
        r#"
[[ipsec]]
name = "office"
remote_peer = "{TWIN_OFFICE}"
remote_subnet = "10.1.0.0/24"       # the office's own 10.1.0.0/24, like ours
remote_alias = "10.93.0.0/24"       # our hosts reach its 10.1.0.10 at 10.93.0.10
local_alias = "10.73.0.0/24"        # it reaches our 10.1.0.10 at 10.73.0.10
{psk_line}
phase1_dh_group_number = 14
phase1_integrity_algorithm = "SHA256"
phase1_encryption_algorithm = "AES256"
phase2_dh_group_number = 14
phase2_integrity_algorithm = "SHA256"
phase2_encryption_algorithm = "AES256"
"#
    )
}

/// Adds the office of [`twin_toml`] behind a lab's `router` (its eth3; `svc` the services
/// script): strongSwan at
/// [`TWIN_OFFICE`], its LAN 10.1.0.0/24 with its host [`TWIN_HOST`] at 10.1.0.10 (HTTP on 8080),
/// loaded with `psk` for the gateway's public VIP.
pub fn twin_office(
    t: &mut Topology,
    (router, svc): (&Host, &str),
    psk: &str,
) -> Result<crate::office::Office> {
    let place = crate::office::Place {
        name: "office",
        host: TWIN_HOST,
        public: TWIN_OFFICE,
        router_if: "eth3",
        lan: &[("10.1.0.1/24", "10.1.0.10/24")],
        public6: None,
        lan6: &[],
    };
    let office = crate::office::build_at(t, router, svc, &place)?;
    office.load(&crate::office::OfficeConn {
        psk: psk.into(),
        remote_peer: PUBLIC_VIP.into(),
        local_ts: "10.1.0.0/24".into(),
        remote_ts: "10.73.0.0/24".into(),
        ike_proposal: "aes256-sha256-modp2048".into(),
        esp_proposal: "aes256-sha256-modp2048".into(),
    })?;
    Ok(office)
}

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
    let gw = (&lab.gw, lab.state.as_path());
    vpn_laptop_at(t, (&lab.router, "eth2"), gw, kawaii, private_key)
}

/// [`vpn_laptop`] on any lab: linked to `router` on its interface `router_if`, configured from
/// the `showconf` of the daemon in `gw` whose state directory is `state`.
pub fn vpn_laptop_at(
    t: &mut Topology,
    (router, router_if): (&Host, &str),
    (gw, state): (&Host, &Path),
    kawaii: &Path,
    private_key: &str,
) -> Result<Host> {
    let router_side = (router_if, "192.0.2.1/24");
    let laptop = router_client(t, router, "laptop", router_side, &format!("{LAPTOP}/24"))?;
    let token = admin_token(state).unwrap_or_default();
    let kawaii = kawaii.to_string_lossy().into_owned();
    let conf = showconf(gw, &kawaii, &token, "laptop")?;
    crate::wg::WireguardGo::from_showconf(t, &laptop, LAPTOP_IFNAME, &conf, private_key)?;
    Ok(laptop)
}

/// A host `name` on a link of its own to the region `router` (an internet client, e.g. a VPN
/// peer): `(interface, address/prefix)` on the router side, `host_cidr` on the host's eth0,
/// its default route via the router. IPv4 only.
pub fn router_client(
    t: &mut Topology,
    router: &Host,
    name: &str,
    router_side: (&str, &str),
    host_cidr: &str,
) -> Result<Host> {
    let (router_if, router_cidr) = router_side;
    let host = t.host(name)?;
    host.ipv4_only()?;
    t.link(router, router_if, &host, "eth0")?;
    router.addr(router_if, router_cidr)?;
    host.addr("eth0", host_cidr)?;
    host.default_via(router_cidr.split('/').next().unwrap_or(router_cidr))?;
    Ok(host)
}

/// A host with only IPv6 outside, on its own link to `router`: `{net}1/64` on the router's
/// `router_if`, `{net}2/64` on the host's `eth0`, and its default route via the router.
pub fn router_client6(
    t: &mut Topology,
    router: &Host,
    name: &str,
    router_if: &str,
    net: &str,
) -> Result<Host> {
    let host = t.host(name)?;
    t.link(router, router_if, &host, "eth0")?;
    router.addr6(router_if, &format!("{net}1/64"))?;
    host.addr6("eth0", &format!("{net}2/64"))?;
    host.route6("default", &format!("{net}1"))?;
    Ok(host)
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
