//! The IPv6 twin of the flow test: the two-zone lab dual-stack, TCP streams routed (no NAT66)
//! from vm-a to the internet's IPv6 address and from the internet to vm-a's own IPv6 address
//! (an opening: `nat_rules` with an IPv6 destination). Zone B holds copies of them before
//! anything fails (conntrackd syncs both families), and every stream lives on its socket when
//! zone A dies: with the SYN proxy on, conntrack picks up no flow it did not see start, so
//! without the copies zone B would drop them as invalid.

use super::{Lab, Targets, check, config};
use kawaii_testkit::lab;
use kawaii_testkit::{Host, wait_for};
use std::time::Duration;

const EGRESS: usize = 60;
const INBOUND: usize = 20;

const V6: Targets = Targets {
    internet: lab::INTERNET6,
    inbound: lab::VM_A6,
};

/// ESTABLISHED IPv6 TCP entries in `host`'s table to `dst` port `port`.
fn established(host: &Host, dst: &str, port: &str) -> usize {
    host.run(&[
        "conntrack",
        "-L",
        "-f",
        "ipv6",
        "-p",
        "tcp",
        "--orig-dst",
        dst,
        "--dport",
        port,
    ])
    .map(|o| o.lines().filter(|l| l.contains("ESTABLISHED")).count())
    .unwrap_or(0)
}

#[test]
fn ipv6_flows_survive_zone_loss() {
    let opening6 = format!(
        "\n[[nat_rules]]\ndestination = \"{}\"\nprotocol = \"tcp\"\nports = \"8080\"\n",
        lab::VM_A6
    );
    let mut l = Lab::with("ct-v6", lab::dual_stack_ha(&config(true)) + &opening6);
    lab::wait_ipv6_home(&l.lab).unwrap_or_else(|e| panic!("{e}"));
    let (gw_a, gw_b) = (l.lab.gw_a.clone(), l.lab.gw_b.clone());
    let f = l.start_flows_at(&V6, EGRESS, INBOUND, 0);
    wait_for(
        Duration::from_secs(15),
        "zone A's IPv6 flows in zone B's table",
        || {
            (established(&gw_b, lab::INTERNET6, "9000") >= EGRESS
                && established(&gw_b, lab::VM_A6, "8080") >= INBOUND)
                .then_some(())
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {} egress, {} inbound (zone A: {}, {})",
            established(&gw_b, lab::INTERNET6, "9000"),
            established(&gw_b, lab::VM_A6, "8080"),
            established(&gw_a, lab::INTERNET6, "9000"),
            established(&gw_a, lab::VM_A6, "8080"),
        )
    });
    let _ = l.window(&f, false);

    // Zone A dies: kawaii SIGKILLed (its conntrackd with it), links cut; zone B's IPv6 router
    // takes the IPv6 VIPs.
    l.topo.proc(l.lab.kawaii_a.proc).kill();
    l.cut(&gw_a, false);
    wait_for(
        Duration::from_secs(20),
        "gw-b to take zone A's IPv6 VIP",
        || {
            gw_b.run(&["ip", "-6", "addr", "show", "dev", "wan0"])
                .ok()
                .filter(|a| a.contains(&format!("{}/64", lab::ZONE_A_PUBLIC_VIP6)))
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_secs(3));
    let w = l.window(&f, false);
    check("zone A killed (IPv6)", &w, EGRESS + INBOUND, 0);
    let s = l.stop_servers(&f);
    for (i, n, what) in [(0, EGRESS, "egress"), (2, INBOUND, "inbound")] {
        assert_eq!(s[i]["accepted"], n as u64, "{what} server: {}", s[i]);
        assert_eq!(s[i]["open"], n as u64, "{what} server: {}", s[i]);
    }
}
