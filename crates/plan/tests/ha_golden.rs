//! Golden files for multi-zone HA: `testdata/ha/<case>/config.toml` planned for zone-b's node as
//! master of its own zone only (`own/`) and of both zones (`both/`): `nft.txt`, `routes.txt`,
//! `vrrp.txt`. `UPDATE_GOLDEN=1` regenerates them; the rulesets also pass `nft -c`. The
//! connection-state sync: `conntrackd.conf` per case (two zones: FTFW unicast; three: NOTRACK
//! multicast), and its firewall opening in `nft.txt`.

use kawaii_model::{Format, Gateway, validate};
use kawaii_plan::{Observed, plan_with};
use kawaii_testkit::golden::{check_golden, nft_check};
use std::path::Path;

/// Plans `text` for zone-b's node as master of its own zone (`own/`) and of both (`both/`),
/// checking each artefact against its golden file under `case`.
fn check_ownership(case: &Path, text: &str) -> kawaii_model::Desired {
    let mut g = Gateway::parse(text, Format::Toml).expect("parses");
    g.assign_rule_ids(&Gateway::default());
    let d = validate(&g).expect("valid").desired;
    for (dir, zones) in [("own", vec!["zone-b"]), ("both", vec!["zone-a", "zone-b"])] {
        let observed = Observed {
            vip_zones: Some(zones.iter().map(|z| z.to_string()).collect()),
            ..Observed::default()
        };
        let p = plan_with(&d, Some("zone-b"), &observed).expect("plan");
        let nft = p.nftables.as_ref().expect("table").render();
        check_golden(&case.join(dir).join("nft.txt"), &nft);
        check_golden(&case.join(dir).join("routes.txt"), &p.net.render());
        if !p.ra.is_empty() {
            check_golden(
                &case.join(dir).join("ra.json"),
                &(serde_json::to_string_pretty(&p.ra).expect("json") + "\n"),
            );
        }
        check_golden(
            &case.join(dir).join("vrrp.txt"),
            &kawaii_plan::vrrp::render(&p.vrrp),
        );
        let ipsec: Vec<String> = p
            .ipsec
            .iter()
            .map(|c| format!("{} from {:?}\n", c.id, c.local_addrs))
            .collect();
        check_golden(&case.join(dir).join("ipsec.txt"), &ipsec.concat());
        nft_check(&nft).unwrap_or_else(|e| panic!("{e}"));
    }
    d
}

#[test]
fn two_zones_follow_vip_ownership() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ha/two-zones");
    let text = std::fs::read_to_string(case.join("config.toml")).expect("config");
    let d = check_ownership(&case, &text);
    // Holding only another zone's VIPs (own zone not yet won): the host's own choice of
    // source, since the own VIP is not there to leave from.
    let observed = Observed {
        vip_zones: Some(["zone-a".to_string()].into_iter().collect()),
        ..Observed::default()
    };
    let p = plan_with(&d, Some("zone-b"), &observed).expect("plan");
    let default = &p.net.routes[0];
    assert_eq!(
        (default.destination, default.source),
        (kawaii_plan::Destination::Default, None)
    );
    // plan() (nothing observed) is "own zone's VIPs held", as in `kawaii render`.
    let p = kawaii_plan::plan(&d, Some("zone-a")).expect("plan");
    // The two VIPs, and the tunnel Branch's local alias of the private VIP.
    assert_eq!(p.net.addresses.len(), 3);
    assert!(p.net.render().contains("203.0.113.10/24"));
    assert!(p.net.render().contains("10.71.0.1/32 dev lan0"));
}

/// The same two zones dual-stack: each zone's IPv6 VIPs and link-local VIP follow its virtual
/// router (addresses held, or removed when a sibling holds them), and the holder advertises
/// each held zone from that zone's link-local VIP.
#[test]
fn two_zones_dual_stack_follow_vip_ownership() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ha/two-zones-dual-stack");
    let text = std::fs::read_to_string(case.join("config.toml")).expect("config");
    check_ownership(&case, &text);
}

/// HA with WireGuard: a peer whose freshest session is on the sibling is routed to it, and
/// the private hosts' answers may go back out of the private interface to get there.
#[test]
fn a_vpn_peer_connected_to_a_sibling_is_routed_to_it() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ha/two-zones");
    let text = std::fs::read_to_string(case.join("config.toml")).expect("config");
    let text = text
        + &kawaii_testkit::lab::wireguard_toml(
            "/etc/kawaii/wg.key",
            &[(
                "alice",
                "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=",
                "allowed_ips = [\"10.8.0.2/32\", \"192.168.7.0/24\"]\n",
            )],
        );
    let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
    g.assign_rule_ids(&Gateway::default());
    let d = validate(&g).expect("valid").desired;
    let mut observed = Observed {
        vip_zones: Some(["zone-b".to_string()].into_iter().collect()),
        ..Observed::default()
    };
    let p = plan_with(&d, Some("zone-b"), &observed).expect("plan");
    let routes = p.net.render();
    assert!(
        routes.contains("route 192.168.7.0/24 dev kawaii-wg0"),
        "{routes}"
    );
    assert!(!routes.contains("10.8.0.2/32"), "{routes}");
    let nft = p.nftables.as_ref().expect("table").render();
    assert!(
        nft.contains(
            "iifname \"lan0\" oifname \"lan0\" ip daddr { 10.8.0.0/24, 192.168.7.0/24 } counter accept comment \"vpn-via-sibling\""
        ),
        "{nft}"
    );
    nft_check(&nft).unwrap_or_else(|e| panic!("{e}"));

    observed.wg_elsewhere.insert(
        "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=".into(),
        "10.1.0.251".parse().expect("addr"),
    );
    let routes = plan_with(&d, Some("zone-b"), &observed)
        .expect("plan")
        .net
        .render();
    assert!(
        routes.contains("route 10.8.0.2/32 via 10.1.0.251 dev lan0"),
        "{routes}"
    );
    assert!(
        routes.contains("route 192.168.7.0/24 via 10.1.0.251 dev lan0")
            && !routes.contains("192.168.7.0/24 dev kawaii-wg0"),
        "{routes}"
    );
}

/// The conntrackd config each case renders for zone-b's node (FTFW unicast with two zones,
/// NOTRACK multicast with three), and the opening that admits only the siblings.
#[test]
fn conntrack_sync_config_and_opening() {
    for (case, dir) in [("two-zones", None), ("three-zones", Some("own"))] {
        let case = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/ha")
            .join(case);
        let text = std::fs::read_to_string(case.join("config.toml")).expect("config");
        let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
        g.assign_rule_ids(&Gateway::default());
        let d = validate(&g).expect("valid").desired;
        let observed = Observed {
            vip_zones: Some(["zone-b".to_string()].into_iter().collect()),
            ..Observed::default()
        };
        let p = plan_with(&d, Some("zone-b"), &observed).expect("plan");
        let sync = p.conntrackd.as_ref().expect("sync on by default with HA");
        check_golden(
            &case.join("conntrackd.conf"),
            &kawaii_plan::conntrackd::render(sync, "/var/lib/kawaii/conntrackd"),
        );
        let nft = p.nftables.as_ref().expect("table").render();
        assert!(nft.contains("udp dport 3780 counter accept comment \"conntrack-sync\""));
        if let Some(dir) = dir {
            check_golden(&case.join(dir).join("nft.txt"), &nft);
            check_golden(
                &case.join(dir).join("vrrp.txt"),
                &kawaii_plan::vrrp::render(&p.vrrp),
            );
        }
        nft_check(&nft).expect("nft -c");
        // Off: no daemon, no opening, no preemption gate.
        let text = text.replace("[ha]\n", "[ha]\nconntrack_sync = false\n");
        let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
        g.assign_rule_ids(&Gateway::default());
        let d = validate(&g).expect("valid").desired;
        let p = plan_with(&d, Some("zone-b"), &observed).expect("plan");
        assert!(p.conntrackd.is_none());
        assert!(p.vrrp.iter().all(|i| !i.sync_gate));
        let nft = p.nftables.as_ref().expect("table").render();
        assert!(!nft.contains("conntrack-sync"), "{nft}");
    }
}
