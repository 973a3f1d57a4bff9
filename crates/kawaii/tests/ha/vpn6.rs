//! Dual-stack HA of the VPN: the tunnel carries IPv6 (`address6`), the private side is routed
//! IPv6 (`private_subnet6`), and both zones know each other's fixed IPv6 addresses
//! (`private_address6`). A laptop of zone A reaches vm-a's IPv6 address through the tunnel, and
//! again through zone B once zone A dies; a laptop of zone B reaches vm-a, whose IPv6 gateway is
//! zone A, because zone A routes the answer to zone B's `private_address6`, where the session is.
//! (Private hosts do not open connections to VPN peers, in either family: they answer them.)

use super::{Ha, KAWAII};
use kawaii_testkit::keys::{keypair, write_secret};
use kawaii_testkit::lab::{self, HaLab};
use kawaii_testkit::wg::WireguardGo;
use kawaii_testkit::{Host, wait_for};
use std::time::Duration;

const GW_A_PRIVATE6: &str = "2001:db8:1::a";
const GW_B_PRIVATE6: &str = "2001:db8:1::b";

/// The two-zone dual-stack lab with the VPN on both families and the zones' fixed IPv6
/// addresses declared, for the peers `laptop` and `laptop2`.
fn config(key_file: &str, laptop: &str, laptop2: &str) -> String {
    let zones = lab::dual_stack_ha(&lab::ha_config(5, "0s"))
        .replace(
            &format!("private_address = \"{}\"", lab::GW_A_PRIVATE),
            &format!(
                "private_address = \"{}\"\nprivate_address6 = \"{GW_A_PRIVATE6}\"",
                lab::GW_A_PRIVATE
            ),
        )
        .replace(
            &format!("private_address = \"{}\"", lab::GW_B_PRIVATE),
            &format!(
                "private_address = \"{}\"\nprivate_address6 = \"{GW_B_PRIVATE6}\"",
                lab::GW_B_PRIVATE
            ),
        );
    let peers = [("laptop", laptop, ""), ("laptop2", laptop2, "")];
    let vpn = lab::wireguard_toml(key_file, &peers).replace(
        "address = \"10.8.0.1/24\"\n",
        "address = \"10.8.0.1/24\"\naddress6 = \"fd00:8::1/64\"\n",
    );
    format!("{zones}{vpn}")
}

#[test]
fn the_vpns_ipv6_follows_the_zone_and_crosses_to_the_sibling_with_the_session() {
    let keys = || keypair().expect("wg genkey");
    let ((laptop_key, laptop_pub), (laptop2_key, laptop2_pub)) = (keys(), keys());
    let mut ha = Ha::new("ha-vpn6", true, |dir| {
        let key_file = dir.join("wg.key");
        write_secret(&key_file, &keys().0, 0o600).expect("key file");
        config(&key_file.to_string_lossy(), &laptop_pub, &laptop2_pub)
    });
    let HaLab {
        gw_a, gw_b, router, ..
    } = ha.lab.clone();
    // The instances' own IPv6 addresses, host-configured as `private_address6` says.
    for (gw, a) in [(&gw_a, GW_A_PRIVATE6), (&gw_b, GW_B_PRIVATE6)] {
        gw.run(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{a}/64"),
            "dev",
            "lan0",
            "nodad",
        ])
        .expect("address6");
    }
    let client = |ha: &mut Ha, gw: &Host, name: &str, side: (&str, &str), cidr: &str, key| {
        let host = lab::router_client(&mut ha.topo, &router, name, side, cidr).expect(name);
        let serve = if gw.name == gw_a.name {
            ha.lab.kawaii_a.clone()
        } else {
            ha.zone_b().clone()
        };
        let token = serve.token().expect("token");
        let conf = lab::showconf(gw, KAWAII, &token, name).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            conf.contains("fd00:8::"),
            "no IPv6 address in the showconf: {conf}"
        );
        assert!(
            conf.contains("2001:db8:1::/64"),
            "the private prefix is not routed: {conf}"
        );
        let ifname = format!("kw6{}", name.len());
        let wg = WireguardGo::from_showconf(&mut ha.topo, &host, &ifname, &conf, key)
            .expect("wireguard-go");
        (host, wg, ifname)
    };
    let (laptop, wg_laptop, if1) = client(
        &mut ha,
        &gw_a,
        "laptop",
        ("eth3", "192.0.2.1/24"),
        "192.0.2.2/24",
        &laptop_key,
    );
    let (laptop2, _wg_laptop2, _) = client(
        &mut ha,
        &gw_b,
        "laptop2",
        ("eth4", "192.0.2.65/26"),
        "192.0.2.66/26",
        &laptop2_key,
    );
    ha.wait_ipv6_home();
    let reach = |h: &Host, ip: &str, what: &str| {
        wait_for(Duration::from_secs(20), what, || h.pings(ip).then_some(()))
    };
    reach(
        &laptop,
        lab::VM_A6,
        "the laptop to vm-a over IPv6 through zone A",
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", ha.lab.kawaii_a.log(&mut ha.topo)));
    // vm-a's IPv6 gateway is zone A, which has no session with laptop2: zone A routes the
    // answer to zone B's private_address6 (it learns where the session is from the sync).
    reach(
        &laptop2,
        lab::VM_A6,
        "laptop2 to vm-a over IPv6, answered through zone B",
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nzone A's IPv6 routes:\n{}\nzone A's log:\n{}\nzone B's log:\n{}",
            gw_a.run(&["ip", "-6", "route"]).unwrap_or_default(),
            ha.lab.kawaii_a.log(&mut ha.topo),
            ha.zone_b().clone().log(&mut ha.topo)
        )
    });
    let via_b = gw_a.run(&["ip", "-6", "route"]).unwrap_or_default();
    assert!(
        via_b
            .lines()
            .any(|l| l.starts_with("fd00:8::") && l.contains(&format!("via {GW_B_PRIVATE6}"))),
        "{via_b}"
    );
    // Zone B has heard where the laptop is (sync every 0.5 s).
    std::thread::sleep(Duration::from_millis(1500));

    let ping = ha.ping(&laptop, "ping-vpn6", lab::VM_A6, "0.05");
    std::thread::sleep(Duration::from_millis(1000));
    ha.zone_a_dies(lab::ZONE_A_PUBLIC_VIP);
    std::thread::sleep(Duration::from_secs(8));
    let (gap, replies) = ha.gap(ping);
    eprintln!("after failover: the VPN's IPv6, longest gap {gap:?} over {replies} replies");
    let endpoints = wg_laptop
        .wg(&["show", &if1, "endpoints"])
        .unwrap_or_default();
    assert!(
        replies > 100 && gap < Duration::from_secs(5),
        "gap {gap:?}, {replies} replies; laptop's endpoint {endpoints}\nzone B's IPv6 routes:\n{}\n{}",
        gw_b.run(&["ip", "-6", "route"]).unwrap_or_default(),
        ha.zone_b().clone().log(&mut ha.topo)
    );
    assert!(
        endpoints.contains(&format!("\t{}:51820", lab::ZONE_B_PUBLIC_VIP)),
        "after takeover: {endpoints}"
    );
    // Zone B's own client still reaches vm-a, now through zone B alone; the laptop's flow came
    // through zone B's rule for it (counted once: the rest of a flow is `established`).
    assert!(laptop2.pings(lab::VM_A6), "laptop2 lost vm-a");
    let forward = gw_b
        .run(&["nft", "list", "chain", "inet", "kawaii", "forward"])
        .unwrap_or_default();
    let counted = forward
        .lines()
        .find(|l| l.contains("ip6 saddr fd00:8::2 "))
        .and_then(|l| l.split("counter packets ").nth(1))
        .and_then(|c| c.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n >= 1), "{forward}");
}
