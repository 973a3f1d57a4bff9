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
