//! Dual-stack HA of the VPN: the tunnel carries IPv6 (`address6`), the private side is routed
//! IPv6 (`private_subnet6`), and both zones know each other's fixed IPv6 addresses
//! (`private_address6`). A laptop of zone A reaches vm-a's IPv6 address through the tunnel, and
//! again through zone B once zone A dies; a laptop of zone B reaches vm-a, whose IPv6 gateway is
//! zone A, because zone A routes the answer to zone B's `private_address6`, where the session is.
//! A third laptop reaches zone A over IPv6 outside (its endpoint is zone A's `public_vip6`): the
//! endpoint sync carries IPv6 endpoints, so zone B calls it over too when zone A dies.
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
/// addresses declared, for the peers `laptop`, `laptop2` and `laptop3`.
fn config(key_file: &str, laptop: &str, laptop2: &str, laptop3: &str) -> String {
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
    let peers = [
        ("laptop", laptop, ""),
        ("laptop2", laptop2, ""),
        ("laptop3", laptop3, ""),
    ];
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
    let (laptop3_key, laptop3_pub) = keys();
    let mut ha = Ha::new("ha-vpn6", true, |dir| {
        let key_file = dir.join("wg.key");
        write_secret(&key_file, &keys().0, 0o600).expect("key file");
        let key_file = key_file.to_string_lossy();
        config(&key_file, &laptop_pub, &laptop2_pub, &laptop3_pub)
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
    // laptop3 has only IPv6 outside: its endpoint is zone A's IPv6 VIP (`showconf --ipv6`).
    let laptop3 = lab::router_client6(&mut ha.topo, &router, "laptop3", "eth5", "2001:db8:67::")
        .expect("laptop3");
    let conf3 = {
        let token = ha.lab.kawaii_a.token().expect("token");
        let out = gw_a
            .command(&[KAWAII, "peer", "showconf", "laptop3", "--ipv6"])
            .env("KAWAII_TOKEN", token)
            .output()
            .expect("showconf --ipv6");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let endpoint_a6 = format!("Endpoint = [{}]:51820", lab::ZONE_A_PUBLIC_VIP6);
    assert!(conf3.lines().any(|l| l == endpoint_a6), "{conf3}");
    let wg_laptop3 =
        WireguardGo::from_showconf(&mut ha.topo, &laptop3, "kw63", &conf3, &laptop3_key)
            .expect("wireguard-go");
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

    reach(
        &laptop3,
        lab::VM_A,
        "laptop3 to vm-a through zone A, over IPv6 outside",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ping = ha.ping(&laptop, "ping-vpn6", lab::VM_A6, "0.05");
    let ping3 = ha.ping(&laptop3, "ping-vpn-over6", lab::VM_A, "0.05");
    std::thread::sleep(Duration::from_millis(1000));
    ha.zone_a_dies(lab::ZONE_A_PUBLIC_VIP);
    std::thread::sleep(Duration::from_secs(8));
    let (gap, replies) = ha.gap(ping);
    let (gap3, replies3) = ha.gap(ping3);
    eprintln!(
        "after failover: the VPN's IPv6, longest gap {gap:?} over {replies} replies; over IPv6 outside, {gap3:?} over {replies3} replies"
    );
    // laptop3 was called over at its IPv6 endpoint, and follows zone B (one of the IPv6 VIPs
    // zone B now holds answers it).
    let endpoint3 = wg_laptop3
        .wg(&["show", "kw63", "endpoints"])
        .unwrap_or_default();
    assert!(
        replies3 > 100 && gap3 < Duration::from_secs(5),
        "over IPv6 outside: gap {gap3:?}, {replies3} replies; laptop3's endpoint {endpoint3}\n{}",
        ha.zone_b().clone().log(&mut ha.topo)
    );
    assert!(
        [lab::ZONE_A_PUBLIC_VIP6, lab::ZONE_B_PUBLIC_VIP6]
            .iter()
            .any(|vip| endpoint3.contains(&format!("\t[{vip}]:51820"))),
        "{endpoint3}"
    );
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
