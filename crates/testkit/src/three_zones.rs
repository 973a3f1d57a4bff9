//! The three-zone lab (IPv4 only): an `internet` host behind a `router`, three gateways on one
//! public and one private switch, each running `kawaii serve` for its zone, and two private hosts:
//! vm-a (zone A's, via 10.1.0.1) and vm-c (zone C's, via 10.1.0.3). Zone B has no host of its
//! own: it is the one that takes zone A over (next in the order).

use crate::lab::{self, HaLabOptions};
use crate::serve::Serve;
use crate::{Host, Result, Topology, wait_for};
use std::time::Duration;

/// The zones, in their order.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// Each zone's private VIP.
pub const PRIVATE_VIPS: [&str; 3] = ["10.1.0.1", "10.1.0.2", "10.1.0.3"];
/// Zone C's host.
pub const VM_C: &str = "10.1.0.70";

/// The three-zone config: [`lab::ha_config`] with a zone C whose hosts are 10.1.0.64/27 and
/// whose instance is 10.1.0.253.
pub fn config() -> String {
    let mut c = lab::ha_config(5, "0s");
    let zone_c = r#"
[[zones]]
name = "zone-c"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "203.0.113.30/24"
public_gateway = "203.0.113.1"
private_vip = "10.1.0.3"
public_address = "203.0.113.31"
private_address = "10.1.0.253"
private_hosts = "10.1.0.64/27"
"#;
    let at = c.find("[[ingress_rules]]").unwrap_or(c.len());
    c.insert_str(at, &format!("{}\n", zone_c.trim_start()));
    c
}

/// A built three-zone lab; `kawaii[i]` runs in `gws[i]` for `ZONES[i]`.
#[derive(Debug)]
pub struct ThreeZones {
    pub internet: Host,
    pub router: Host,
    pub gws: Vec<Host>,
    pub vm_a: Host,
    pub vm_c: Host,
    pub kawaii: Vec<Serve>,
}

/// Builds the lab on `opts.config` and starts the three daemons; returns once each zone's VIP is
/// at home and each instance's connection sync is ready.
pub fn build(t: &mut Topology, opts: &HaLabOptions) -> Result<ThreeZones> {
    let internet = t.host("internet")?;
    let router = t.host("router")?;
    let public = t.switch("pub")?;
    let lan = t.switch("lan")?;
    let gws = ["gw-a", "gw-b", "gw-c"]
        .iter()
        .map(|n| t.host(n))
        .collect::<Result<Vec<Host>>>()?;
    let vm_a = t.host("vm-a")?;
    let vm_c = t.host("vm-c")?;
    let mut all = vec![&internet, &router, &public, &lan, &vm_a, &vm_c];
    all.extend(gws.iter());
    for h in all {
        h.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
    }
    t.link(&internet, "eth0", &router, "eth0")?;
    t.plug(&router, "eth1", &public)?;
    internet.addr("eth0", &format!("{}/24", lab::INTERNET))?;
    internet.default_via("198.51.100.1")?;
    router.addr("eth0", "198.51.100.1/24")?;
    router.addr("eth1", "203.0.113.1/24")?;
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    for (gw, n) in gws.iter().zip([1, 2, 3]) {
        t.plug(gw, "wan0", &public)?;
        t.plug(gw, "lan0", &lan)?;
        gw.addr("wan0", &format!("203.0.113.{n}1/24"))?;
        gw.addr("lan0", &format!("10.1.0.25{n}/24"))?;
        gw.run(&["sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1"])?;
    }
    for (vm, ip, via) in [
        (&vm_a, lab::VM_A, PRIVATE_VIPS[0]),
        (&vm_c, VM_C, PRIVATE_VIPS[2]),
    ] {
        t.plug(vm, "eth0", &lan)?;
        vm.addr("eth0", &format!("{ip}/24"))?;
        vm.default_via(via)?;
    }
    let kawaii = gws
        .iter()
        .zip(ZONES)
        .map(|(gw, z)| lab::zone_serve(t, gw, z, opts))
        .collect::<Result<Vec<Serve>>>()?;
    for ((gw, serve), vip) in gws.iter().zip(&kawaii).zip(PRIVATE_VIPS) {
        wait_for(Duration::from_secs(20), "each zone's VIPs at home", || {
            lab::has_address(gw, vip).then_some(())
        })?;
        lab::wait_sync_ready(gw, &serve.state, Duration::from_secs(20))?;
    }
    Ok(ThreeZones {
        internet,
        router,
        gws,
        vm_a,
        vm_c,
        kawaii,
    })
}
