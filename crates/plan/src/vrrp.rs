//! The VRRPv3 virtual routers this node takes part in: one per zone, holding that zone's private
//! and public VIP. Priority 150 in the home zone, then 100, 90, ... in zone order after it, so
//! every instance derives the same failover order. Empty without HA (one zone, no `[ha]`).
//!
//! A zone with IPv6 VIPs has a second virtual router, for IPv6 (RFC 5798 runs one per family,
//! each family with its own VRID space: both use the zone's `vrid`). It holds the link-local
//! VIP (first, as §5.2.9 requires), `private_vip6` and `public_vip6`, and runs with the IPv4
//! router's priority, interval and preemption, so that among kawaii instances both routers of a
//! zone elect the same master; it still speaks VRRPv3 over IPv6 on the wire, so a keepalived
//! IPv6 instance sees a proper virtual router.

use kawaii_model::Desired;
use kawaii_model::valid::ZoneSpec;
use serde::Serialize;
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Priority of an instance in its own zone's virtual router.
pub const HOME_PRIORITY: u8 = 150;

/// One virtual router as this node runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// The zone whose VIPs this virtual router holds.
    pub zone: String,
    pub vrid: u8,
    pub priority: u8,
    /// Where adverts go out and are heard: this node's private interface.
    pub interface: String,
    /// Where the public VIP goes (gratuitous ARP for it too): this node's public interface.
    pub public_interface: String,
    /// This node's own private address: the advert source.
    pub source: Ipv4Addr,
    /// Unicast peers (the siblings' private addresses); empty: multicast 224.0.0.18.
    pub peers: Vec<Ipv4Addr>,
    /// The VIPs in advert order: the private VIP, then the public VIP.
    pub addresses: Vec<Ipv4Addr>,
    pub advert_interval_cs: u16,
    pub preempt: bool,
    pub preempt_delay_ms: u64,
    /// Connection-state sync is on: until it has the siblings' flows, this node must not take
    /// VIPs from a live sibling (the speaker's `sync_ready` input holds its priority down).
    pub sync_gate: bool,
    /// The zone's IPv6 virtual router (same VRID, priority and timers), if it has IPv6 VIPs.
    pub v6: Option<Instance6>,
}

/// What the IPv6 virtual router of a zone adds to [`Instance`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance6 {
    /// The advert source. `None`: the private interface's own link-local address, found at run
    /// time (RFC 5798 §5.1.2.1), adverts to ff02::12. With unicast peers: this node's
    /// `private_address6`.
    pub source: Option<Ipv6Addr>,
    /// Unicast peers (the siblings' `private_address6`); empty: multicast ff02::12.
    pub peers: Vec<Ipv6Addr>,
    /// The VIPs in advert order: the link-local VIP, `private_vip6`, then `public_vip6`.
    pub addresses: Vec<Ipv6Addr>,
}

/// The priority `node` has in `zone`'s virtual router: 150 at home, then 100, 90, ... (at
/// least 1) by distance after `zone` in the declared zone order.
pub fn priority(d: &Desired, zone: usize, node: usize) -> u8 {
    if zone == node {
        return HOME_PRIORITY;
    }
    let n = d.zones.len().max(1);
    let rank = (node + n - zone - 1) % n;
    u8::try_from(100usize.saturating_sub(10 * rank).max(1)).unwrap_or(1)
}

/// The instances node `z` runs (one per zone), or none without HA.
pub fn plan(d: &Desired, z: &ZoneSpec) -> Vec<Instance> {
    let (Some(ha), Some(source)) = (&d.ha, z.private_address) else {
        return Vec::new();
    };
    let Some(node) = d.zones.iter().position(|s| s.name == z.name) else {
        return Vec::new();
    };
    let sibs = siblings(d, z);
    let sync_gate = ha.conntrack_sync && !sibs.is_empty();
    let peers: Vec<Ipv4Addr> = if ha.unicast { sibs } else { Vec::new() };
    // IPv6 unicast: from this node's private_address6 to the siblings' (validation requires
    // them with `unicast = true`); otherwise multicast from the link-local address.
    let (source6, peers6) = match z.private_address6 {
        Some(own) if ha.unicast => (
            Some(own),
            sibling_zones(d, z)
                .filter_map(|(s, _)| s.private_address6)
                .collect(),
        ),
        _ => (None, Vec::new()),
    };
    d.zones
        .iter()
        .enumerate()
        .map(|(i, zone)| Instance {
            zone: zone.name.clone(),
            vrid: zone.vrid,
            priority: priority(d, i, node),
            interface: z.private_interface.clone(),
            public_interface: z.public_interface.clone(),
            source,
            peers: peers.clone(),
            addresses: vec![zone.private_vip.addr(), zone.public_vip.addr()],
            advert_interval_cs: ha.advert_interval_cs,
            preempt: ha.preempt,
            preempt_delay_ms: u64::try_from(ha.preempt_delay.as_millis()).unwrap_or(u64::MAX),
            sync_gate,
            v6: zone.private_vip6.map(|private6| Instance6 {
                source: source6,
                peers: peers6.clone(),
                addresses: std::iter::once(zone.link_local_vip6)
                    .chain(Some(private6.addr()))
                    .chain(zone.public_vip6.map(|v| v.addr()))
                    .collect(),
            }),
        })
        .collect()
}

/// The other zones' instances' private addresses (VRRP is accepted from these only).
pub fn siblings(d: &Desired, z: &ZoneSpec) -> Vec<Ipv4Addr> {
    sibling_zones(d, z).map(|(_, a)| a).collect()
}

/// The other zones, with their instances' private addresses.
pub fn sibling_zones<'a>(
    d: &'a Desired,
    z: &'a ZoneSpec,
) -> impl Iterator<Item = (&'a ZoneSpec, Ipv4Addr)> + 'a {
    d.zones
        .iter()
        .filter(move |s| s.name != z.name)
        .filter_map(|s| Some((s, s.private_address?)))
}

/// The zones whose VIPs this node holds, in declared order: its own zone without HA or when
/// nothing was observed; otherwise the zones whose virtual router it is master of.
pub fn owned<'a>(d: &'a Desired, z: &'a ZoneSpec, observed: &crate::Observed) -> Vec<&'a ZoneSpec> {
    match (&d.ha, &observed.vip_zones) {
        (Some(_), Some(zones)) => d.zones.iter().filter(|s| zones.contains(&s.name)).collect(),
        _ => vec![z],
    }
}

/// The zones whose IPv6 VIPs this node holds: those whose IPv6 virtual router it is master of
/// when observed, else the same as [`owned`].
pub fn owned6<'a>(
    d: &'a Desired,
    z: &'a ZoneSpec,
    observed: &crate::Observed,
) -> Vec<&'a ZoneSpec> {
    match (&d.ha, &observed.vip6_zones) {
        (Some(_), Some(zones)) => d.zones.iter().filter(|s| zones.contains(&s.name)).collect(),
        _ => owned(d, z, observed),
    }
}

/// The text `kawaii render --what vrrp` prints (also the golden file).
pub fn render(instances: &[Instance]) -> String {
    let mut out = String::new();
    for i in instances {
        let addrs: Vec<String> = i.addresses.iter().map(Ipv4Addr::to_string).collect();
        let peers = if i.peers.is_empty() {
            "multicast 224.0.0.18".to_string()
        } else {
            let p: Vec<String> = i.peers.iter().map(Ipv4Addr::to_string).collect();
            format!("unicast {}", p.join(","))
        };
        let _ = writeln!(
            out,
            "vrrp zone {} vrid {} priority {} dev {} src {} {peers} vips {} advert {}cs preempt {} delay {}ms{}",
            i.zone,
            i.vrid,
            i.priority,
            i.interface,
            i.source,
            addrs.join(","),
            i.advert_interval_cs,
            i.preempt,
            i.preempt_delay_ms,
            if i.sync_gate {
                " waits-for-conntrack-sync"
            } else {
                ""
            }
        );
        if let Some(v6) = &i.v6 {
            let addrs: Vec<String> = v6.addresses.iter().map(Ipv6Addr::to_string).collect();
            let peers = if v6.peers.is_empty() {
                "multicast ff02::12".to_string()
            } else {
                let p: Vec<String> = v6.peers.iter().map(Ipv6Addr::to_string).collect();
                format!("unicast {}", p.join(","))
            };
            let src = v6
                .source
                .map_or_else(|| "link-local".to_string(), |s| s.to_string());
            let _ = writeln!(
                out,
                "vrrp6 zone {} vrid {} priority {} dev {} src {src} {peers} vips {}",
                i.zone,
                i.vrid,
                i.priority,
                i.interface,
                addrs.join(","),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(n: usize) -> Desired {
        let toml = kawaii_testkit::configs::zones(n, "");
        let g = kawaii_model::Gateway::parse(&toml, kawaii_model::Format::Toml).expect("toml");
        kawaii_model::validate(&g).expect("valid").desired
    }

    #[test]
    fn priorities_are_stable_and_distinct() {
        let d = desired(3);
        // Zone 0's router: home 150, zone 1 next (100), zone 2 last (90).
        assert_eq!(
            (priority(&d, 0, 0), priority(&d, 0, 1), priority(&d, 0, 2)),
            (150, 100, 90)
        );
        // Zone 2's router wraps around: zone 0 comes next.
        assert_eq!((priority(&d, 2, 0), priority(&d, 2, 1)), (100, 90));
    }

    #[test]
    fn unicast_sends_to_the_siblings() {
        let mut d = desired(3);
        if let Some(ha) = d.ha.as_mut() {
            ha.unicast = true;
        }
        let p = plan(&d, &d.zones[0]);
        let want: Vec<Ipv4Addr> = vec![
            "10.1.0.101".parse().expect("ip"),
            "10.1.0.102".parse().expect("ip"),
        ];
        assert!(p.iter().all(|i| i.peers == want));
        assert!(render(&p).contains("unicast 10.1.0.101,10.1.0.102"));
    }

    #[test]
    fn single_zone_has_no_vrrp() {
        let d = desired(1);
        assert!(d.ha.is_none());
        assert!(plan(&d, &d.zones[0]).is_empty());
    }

    /// The two dual-stack zones of the HA goldens.
    fn dual_stack() -> Desired {
        let text = include_str!("../testdata/ha/two-zones-dual-stack/config.toml");
        let g = kawaii_model::Gateway::parse(text, kawaii_model::Format::Toml).expect("toml");
        kawaii_model::validate(&g).expect("valid").desired
    }

    #[test]
    fn a_zone_with_ipv6_vips_has_an_ipv6_router_link_local_vip_first() {
        let d = dual_stack();
        let p = plan(&d, &d.zones[0]);
        let v6 = p[0].v6.as_ref().expect("zone-a has IPv6 VIPs");
        assert_eq!(v6.source, None, "the interface's link-local address");
        assert!(v6.peers.is_empty());
        let ll: Ipv6Addr = "fe80::1".parse().expect("ip");
        assert_eq!(v6.addresses.first(), Some(&ll));
        assert_eq!((p[0].vrid, p[0].priority), (51, 150));
        assert!(render(&p).contains("vrrp6 zone zone-a vrid 51 priority 150 dev lan0 src link-local multicast ff02::12 vips fe80::1,"));
    }

    #[test]
    fn ipv6_unicast_goes_between_the_private_address6() {
        let mut d = dual_stack();
        if let Some(ha) = d.ha.as_mut() {
            ha.unicast = true;
        }
        let (a, b): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:1::251".parse().expect("ip"),
            "2001:db8:1::252".parse().expect("ip"),
        );
        d.zones[0].private_address6 = Some(a);
        d.zones[1].private_address6 = Some(b);
        let p = plan(&d, &d.zones[0]);
        let v6 = p[1].v6.as_ref().expect("zone-b has IPv6 VIPs");
        assert_eq!((v6.source, v6.peers.clone()), (Some(a), vec![b]));
        assert!(render(&p).contains("src 2001:db8:1::251 unicast 2001:db8:1::252"));
    }

    #[test]
    fn every_node_runs_every_zone() {
        let d = desired(2);
        let p = plan(&d, &d.zones[1]);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].vrid, p[0].priority), (51, 100));
        assert_eq!((p[1].vrid, p[1].priority), (52, 150));
        assert_eq!(p[0].source, "10.1.0.101".parse::<Ipv4Addr>().expect("ip"));
    }
}
