//! Dual-stack HA of a site-to-site tunnel: the office talks IKE and ESP over IPv6 to zone A's
//! `public_vip6` and carries its IPv6 prefix, routed to ours. When zone A dies, zone B's IPv6
//! virtual router takes that VIP, and with it the tunnel (a connection ends on the zone that
//! holds the VIP of the remote peer's family): the private host's IPv6 pings to the office
//! resume through zone B.

use super::Ha;
use kawaii_testkit::lab::{self, HaLab};
use kawaii_testkit::office::{self, OfficeConn};
use kawaii_testkit::wait_for;
use std::time::Duration;

const PSK: &str = "office-psk-for-the-ha-v6-test";
const ZONE_A_PUBLIC_VIP6: &str = "2001:db8:ff::10";

#[test]
fn an_ipv6_tunnel_follows_its_vip_to_the_other_zone() {
    let mut ha = Ha::new("ha-ipsec6", true, |_| {
        format!(
            "{}{}dpd_timeout = \"8s\"\n",
            lab::dual_stack_ha(&lab::ha_config(5, "0s")),
            office::ipsec6_toml(PSK, "")
        )
    });
    let HaLab {
        gw_b, vm_a, router, ..
    } = ha.lab.clone();
    let svc = ha.lab.svc.clone();
    let off = office::build_dual(&mut ha.topo, &router, &svc).expect("office");
    off.load(&OfficeConn {
        psk: PSK.into(),
        remote_peer: ZONE_A_PUBLIC_VIP6.into(),
        local_ts: office::OFFICE_SUBNET6.into(),
        remote_ts: "2001:db8:1::/64".into(),
        ike_proposal: "aes256-sha256-modp2048".into(),
        esp_proposal: "aes256-sha256-modp2048".into(),
    })
    .expect("office conn");
    ha.wait_ipv6_home();
    wait_for(
        Duration::from_secs(30),
        "vm-a to the office over IPv6 through the tunnel",
        || vm_a.pings(office::OFFICE_HOST6).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", off.sas(), ha.lab.kawaii_a.log(&mut ha.topo)));
    let sas = off.sas();
    assert!(sas.contains(ZONE_A_PUBLIC_VIP6), "{sas}");
    let on_a = &ha.lab.kawaii_a.api().status()["details"]["ipsec"]["connections"][0];
    assert_eq!(
        on_a["ike_state"], "ESTABLISHED",
        "zone A carries the tunnel: {on_a}"
    );

    let ping = ha.ping(&vm_a, "ping-office6", office::OFFICE_HOST6, "0.05");
    std::thread::sleep(Duration::from_millis(1000));
    ha.zone_a_dies(lab::ZONE_A_PUBLIC_VIP);
    std::thread::sleep(Duration::from_secs(8));
    let (gap, replies) = ha.gap(ping);
    eprintln!("after failover: IPsec over IPv6, longest gap {gap:?} over {replies} replies");
    let zone_b = ha.zone_b().clone();
    assert!(
        replies > 100 && gap < Duration::from_secs(5),
        "gap {gap:?}, {replies} replies\noffice SAs:\n{}\nzone B:\n{}",
        off.sas(),
        zone_b.log(&mut ha.topo)
    );
    // Zone B holds zone A's IPv6 VIP and its charon the tunnel.
    let held = gw_b
        .run(&["ip", "-6", "addr", "show", "dev", "wan0"])
        .unwrap_or_default();
    assert!(held.contains(&format!("{ZONE_A_PUBLIC_VIP6}/64")), "{held}");
    let st = zone_b.api().status();
    let conn = &st["details"]["ipsec"]["connections"][0];
    assert!(
        conn["ike_state"] == "ESTABLISHED" && conn["child_state"] == "INSTALLED",
        "{conn}"
    );
}
