//! Router advertisements on the private side: one per held zone with an IPv6 gateway, sent from
//! that zone's link-local VIP by the node that holds it (without HA: always). Hosts take their
//! default route from them and, with `[gateway] slaac`, their addresses in `private_subnet6`.
//! No radvd: the driver encodes them with `kawaii_vrrp::ra`.

use ipnet::Ipv6Net;
use kawaii_model::Desired;
use kawaii_model::valid::ZoneSpec;
use serde::Serialize;
use std::net::Ipv6Addr;

/// Seconds hosts keep this router as their default (RFC 4861 §6.2.1: 3 × the interval).
pub const ROUTER_LIFETIME_S: u16 = 1800;
/// Seconds between unsolicited advertisements.
pub const INTERVAL_S: u16 = 30;
/// Seconds a SLAAC address stays valid and preferred after the last advertisement.
pub const VALID_LIFETIME_S: u32 = 86_400;
pub const PREFERRED_LIFETIME_S: u32 = 14_400;

/// RFC 4191 default router preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterPreference {
    Low,
    Medium,
    High,
}

/// One advertising interface as the driver runs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Advertiser {
    /// The zone whose link-local VIP is the source.
    pub zone: String,
    /// This node's private interface.
    pub interface: String,
    /// The zone's link-local VIP.
    pub source: Ipv6Addr,
    /// The routed prefix, announced on-link; autonomous (SLAAC) when `slaac`.
    pub prefix: Ipv6Net,
    pub slaac: bool,
    pub router_lifetime_s: u16,
    pub interval_s: u16,
    /// RFC 4191 default router preference: the first zone with an IPv6 gateway is preferred
    /// (`high`), the others are `low`, so that every host leaves through the zone the upstream
    /// routes `private_subnet6` to (the first zone's `public_vip6`), wherever it is held, and
    /// its answers come back the same way. One zone alone: `medium`.
    pub preference: RouterPreference,
    /// Send a final advertisement with router lifetime 0 when this advertiser stops: without
    /// HA only. With HA the link-local VIP moves to a sibling, which advertises it at once with
    /// its own link-layer address; a withdrawal from the old holder would take the hosts'
    /// default route away from the new one.
    pub withdraw: bool,
    /// The zone's IPv6 VIPs, `(interface, address)`, announced by unsolicited neighbour
    /// advertisements when this node starts holding them (RFC 4861 §7.2.6).
    pub neighbours: Vec<(String, Ipv6Addr)>,
}

/// The advertisers node `z` runs: one per zone whose VIPs it holds, if it has an IPv6 gateway.
pub fn plan(d: &Desired, z: &ZoneSpec, observed: &crate::Observed) -> Vec<Advertiser> {
    let Some(prefix) = d.private_subnet6 else {
        return Vec::new();
    };
    let v6_zones: Vec<&str> = d
        .zones
        .iter()
        .filter(|o| o.private_vip6.is_some())
        .map(|o| o.name.as_str())
        .collect();
    let preference = |zone: &str| match v6_zones.as_slice() {
        [_] => RouterPreference::Medium,
        [first, ..] if *first == zone => RouterPreference::High,
        _ => RouterPreference::Low,
    };
    crate::vrrp::owned6(d, z, observed)
        .into_iter()
        .filter(|o| o.private_vip6.is_some())
        .map(|o| {
            let lan = |a: Ipv6Addr| (z.private_interface.clone(), a);
            let mut neighbours = vec![lan(o.link_local_vip6)];
            neighbours.extend(o.private_vip6.map(|v| lan(v.addr())));
            neighbours.extend(
                o.public_vip6
                    .map(|v| (z.public_interface.clone(), v.addr())),
            );
            Advertiser {
                zone: o.name.clone(),
                interface: z.private_interface.clone(),
                source: o.link_local_vip6,
                prefix,
                slaac: d.slaac,
                router_lifetime_s: ROUTER_LIFETIME_S,
                interval_s: INTERVAL_S,
                preference: preference(&o.name),
                withdraw: d.ha.is_none(),
                neighbours,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kawaii_model::{Format, Gateway, validate};

    /// Two dual-stack zones (SLAAC on), or with `slaac = false`.
    fn desired(slaac: bool) -> Desired {
        let text = include_str!("../testdata/ha/two-zones-dual-stack/config.toml");
        let text = text.replace("slaac = true", &format!("slaac = {slaac}"));
        let g = Gateway::parse(&text, Format::Toml).expect("parses");
        validate(&g).expect("valid").desired
    }

    #[test]
    fn one_advertiser_per_held_zone_from_its_link_local_vip() {
        let d = desired(false);
        let b = &d.zones[1];
        // Nothing observed: the node's own zone.
        let own = plan(&d, b, &crate::Observed::default());
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].source, "fe80::2".parse::<Ipv6Addr>().expect("ip"));
        assert!(!own[0].slaac);
        // HA: the VIP moves on to a sibling, so no withdrawal.
        assert!(!own[0].withdraw);
        assert_eq!(
            own[0].neighbours,
            [
                ("lan0".to_string(), "fe80::2".parse().expect("ip")),
                ("lan0".to_string(), "2001:db8:1::2".parse().expect("ip")),
                ("wan0".to_string(), "2001:db8:ff::20".parse().expect("ip")),
            ]
        );
        // Holding both zones (a sibling is down): both advertise, each from its own address.
        let both = crate::Observed {
            vip_zones: Some(["zone-a".to_string(), "zone-b".to_string()].into()),
            ..crate::Observed::default()
        };
        let sources: Vec<Ipv6Addr> = plan(&d, b, &both).iter().map(|a| a.source).collect();
        assert_eq!(
            sources,
            [
                "fe80::1".parse::<Ipv6Addr>().expect("ip"),
                "fe80::2".parse().expect("ip")
            ]
        );
        // The first zone is the preferred IPv6 router (the upstream routes the prefix to it).
        let prefs: Vec<RouterPreference> =
            plan(&d, b, &both).iter().map(|a| a.preference).collect();
        assert_eq!(prefs, [RouterPreference::High, RouterPreference::Low]);
        // Holding none: silent.
        let none = crate::Observed {
            vip_zones: Some(Default::default()),
            ..crate::Observed::default()
        };
        assert!(plan(&d, b, &none).is_empty());
    }

    #[test]
    fn slaac_is_announced_when_asked() {
        let d = desired(true);
        assert!(plan(&d, &d.zones[0], &crate::Observed::default())[0].slaac);
    }
}
