//! Multi-zone HA settings: the defaults, typed. The mistakes, each with its field path, are the
//! `ha-*` and `zone-*` cases in `testdata/invalid/` (run by `cases.rs`).

use kawaii_model::{Format, Gateway, validate};

fn zone(name: &str, n: u8, extra: &str) -> String {
    format!(
        "[[zones]]\nname = \"{name}\"\npublic_interface = \"wan0\"\nprivate_interface = \"lan0\"\npublic_vip = \"203.0.113.{}/24\"\npublic_gateway = \"203.0.113.1\"\nprivate_vip = \"10.1.0.{n}\"\n{extra}\n",
        10 * n
    )
}

const HEAD: &str = "[gateway]\nprivate_subnet = \"10.1.0.0/24\"\n";

#[test]
fn single_zone_without_ha_has_no_vrrp() {
    let g = Gateway::parse(&format!("{HEAD}{}", zone("a", 1, "")), Format::Toml).expect("parses");
    let d = validate(&g).expect("valid").desired;
    assert!(d.ha.is_none());
    assert_eq!(d.zones[0].vrid, 51);
}

#[test]
fn two_zones_get_defaults() {
    let text = format!(
        "{HEAD}{}{}",
        zone("a", 1, "private_address = \"10.1.0.251\""),
        zone("b", 2, "private_address = \"10.1.0.252\"\nvrid = 7")
    );
    let g = Gateway::parse(&text, Format::Toml).expect("parses");
    let d = validate(&g).expect("valid").desired;
    let ha = d.ha.expect("HA on with two zones");
    assert_eq!(ha.advert_interval_cs, 5);
    assert!(ha.preempt);
    assert!(!ha.unicast);
    assert_eq!((d.zones[0].vrid, d.zones[1].vrid), (51, 7));
}

#[test]
fn conntrack_sync_defaults_on_and_checks_its_interface() {
    let zones = format!(
        "{}{}",
        zone("a", 1, "private_address = \"10.1.0.251\""),
        zone("b", 2, "private_address = \"10.1.0.252\"")
    );
    let g = Gateway::parse(&format!("{HEAD}{zones}"), Format::Toml).expect("parses");
    let ha = validate(&g).expect("valid").desired.ha.expect("HA");
    assert!(ha.conntrack_sync);
    assert_eq!(ha.sync_interface, None);
    let text = format!("{HEAD}[ha]\nconntrack_sync = false\nsync_interface = \"sync0\"\n{zones}");
    let g = Gateway::parse(&text, Format::Toml).expect("parses");
    let ha = validate(&g).expect("valid").desired.ha.expect("HA");
    assert!(!ha.conntrack_sync);
    assert_eq!(ha.sync_interface.as_deref(), Some("sync0"));
    let text = format!("{HEAD}[ha]\nsync_interface = \"bad name/x\"\n{zones}");
    let g = Gateway::parse(&text, Format::Toml).expect("parses");
    let errs = validate(&g).expect_err("a bad interface name").0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "ha.sync_interface");
}
