//! `[[zones]]` and `[ha]`: each zone's interfaces, VIPs and upstream gateway, and, with HA
//! (several zones or an `[ha]` section), the VRRP settings, each instance's own address, distinct
//! VRIDs and non-overlapping `private_hosts`.

use super::primitives::{cidr, cidr_host, ifname, ipv4, unique};
use crate::duration;
use crate::error::Errors;
use crate::spec::{Gateway, Zone};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    pub name: String,
    pub public_interface: String,
    pub private_interface: String,
    pub public_vip: Ipv4Net,
    pub public_gateway: Ipv4Addr,
    pub private_vip: Ipv4Net,
    /// HA: the instance's own fixed addresses (host-configured).
    pub public_address: Option<Ipv4Addr>,
    pub private_address: Option<Ipv4Addr>,
    /// HA: this zone's VRID.
    pub vrid: u8,
    /// HA: the private instances whose gateway is this zone's private VIP.
    pub private_hosts: Option<Ipv4Net>,
}

/// Multi-zone HA, typed. Present when the config has several zones or an `[ha]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSpec {
    pub advert_interval_cs: u16,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub unicast: bool,
    /// Connection-state sync (conntrackd) between the zones' instances.
    pub conntrack_sync: bool,
    /// Where the sync runs (None: each instance's private interface).
    pub sync_interface: Option<String>,
}

/// Default VRRP advert interval: 5 cs, so a backup takes over ~0.18 s after the last advert.
pub const DEFAULT_ADVERT_INTERVAL_CS: u16 = 5;
/// Default VRID of zone `i` is `DEFAULT_VRID_BASE + i`.
pub const DEFAULT_VRID_BASE: u32 = 51;

/// The zones, then HA over them; `private_subnet` is the parsed `gateway.private_subnet`.
pub(super) fn check_zones(
    g: &Gateway,
    private_subnet: Option<Ipv4Net>,
    e: &mut Errors,
) -> (Vec<ZoneSpec>, Option<HaSpec>) {
    let mut zones = Vec::new();
    unique(e, "zones", g.zones.iter().map(|z| z.name.as_str()), "name");
    for (i, z) in g.zones.iter().enumerate() {
        let p = format!("zones[{i}]");
        if let Some(z) = check_zone(z, i, &p, private_subnet, e) {
            zones.push(z);
        }
    }
    let ha = check_ha(g, &zones, e);
    if private_subnet.is_none() && !g.zones.is_empty() && g.gateway.private_subnet.is_none() {
        e.push(
            "gateway.private_subnet",
            "is required when zones are declared",
        );
    }
    (zones, ha)
}

/// `[ha]` and the per-zone HA fields: VRRP runs when there are several zones or an `[ha]` section.
fn check_ha(g: &Gateway, zones: &[ZoneSpec], e: &mut Errors) -> Option<HaSpec> {
    if g.ha.is_none() && g.zones.len() <= 1 {
        return None;
    }
    let h = g.ha.clone().unwrap_or_default();
    let advert_interval_cs = match h.advert_interval_cs {
        None => DEFAULT_ADVERT_INTERVAL_CS,
        Some(c @ 1..=4095) => c as u16,
        Some(c) => {
            e.push(
                "ha.advert_interval_cs",
                format!("{c} is outside 1..=4095 (centiseconds)"),
            );
            DEFAULT_ADVERT_INTERVAL_CS
        }
    };
    let preempt_delay = match &h.preempt_delay {
        None => Duration::ZERO,
        Some(s) => e
            .check("ha.preempt_delay", duration::parse(s))
            .unwrap_or_default(),
    };
    for (i, z) in g.zones.iter().enumerate() {
        if z.private_address.is_none() {
            e.push(
                format!("zones[{i}].private_address"),
                "is required with HA (several zones or [ha]): the instance's own address, the VRRP source",
            );
        }
    }
    let mut vrids = BTreeMap::new();
    for (i, z) in zones.iter().enumerate() {
        if let Some(other) = vrids.insert(z.vrid, i) {
            e.push(
                format!("zones[{i}].vrid"),
                format!("{} is already zones[{other}]'s VRID", z.vrid),
            );
        }
    }
    for (i, a) in zones.iter().enumerate() {
        for b in &zones[..i] {
            if let (Some(x), Some(y)) = (a.private_hosts, b.private_hosts)
                && (x.contains(&y.network()) || y.contains(&x.network()))
            {
                e.push(
                    format!("zones[{i}].private_hosts"),
                    format!("{x} overlaps zone {}'s {y}", b.name),
                );
            }
        }
    }
    if let Some(i) = &h.sync_interface {
        e.check("ha.sync_interface", ifname(i));
    }
    Some(HaSpec {
        advert_interval_cs,
        preempt: h.preempt.unwrap_or(true),
        preempt_delay,
        unicast: h.unicast,
        conntrack_sync: h.conntrack_sync.unwrap_or(true),
        sync_interface: h.sync_interface.clone(),
    })
}

fn check_zone(
    z: &Zone,
    index: usize,
    p: &str,
    private: Option<Ipv4Net>,
    e: &mut Errors,
) -> Option<ZoneSpec> {
    if z.name.trim().is_empty() {
        e.push(format!("{p}.name"), "must not be empty");
    }
    for (field, v) in [
        ("public_interface", &z.public_interface),
        ("private_interface", &z.private_interface),
    ] {
        if let Err(reason) = ifname(v) {
            e.push(format!("{p}.{field}"), reason);
        }
    }
    let public_vip = e.check(format!("{p}.public_vip"), cidr_host(&z.public_vip));
    let public_gateway = e.check(format!("{p}.public_gateway"), ipv4(&z.public_gateway));
    if let (Some(vip), Some(gw)) = (public_vip, public_gateway)
        && !vip.contains(&gw)
    {
        e.warn(
            format!("{p}.public_gateway"),
            format!(
                "{gw} is outside {}; it must be reachable on-link",
                vip.trunc()
            ),
        );
    }
    let private_ip = e.check(format!("{p}.private_vip"), ipv4(&z.private_vip));
    let private_vip = match (private_ip, private) {
        (Some(ip), Some(net)) if net.contains(&ip) => Ipv4Net::new(ip, net.prefix_len()).ok(),
        (Some(ip), Some(net)) => {
            e.push(
                format!("{p}.private_vip"),
                format!("{ip} is not in the private subnet {net}"),
            );
            None
        }
        _ => None,
    };
    let public_address = z
        .public_address
        .as_deref()
        .and_then(|s| e.check(format!("{p}.public_address"), ipv4(s)));
    let private_address = z
        .private_address
        .as_deref()
        .and_then(|s| e.check(format!("{p}.private_address"), ipv4(s)));
    if let (Some(a), Some(net)) = (private_address, private)
        && !net.contains(&a)
    {
        e.push(
            format!("{p}.private_address"),
            format!("{a} is not in the private subnet {net}"),
        );
    }
    if private_address.is_some() && private_address == private_ip {
        e.push(
            format!("{p}.private_address"),
            "must differ from private_vip (the VIP floats)",
        );
    }
    let vrid = match z.vrid {
        None => u8::try_from(DEFAULT_VRID_BASE + index as u32).unwrap_or(255),
        Some(v @ 1..=255) => v as u8,
        Some(v) => {
            e.push(format!("{p}.vrid"), format!("{v} is outside 1..=255"));
            1
        }
    };
    let private_hosts = z
        .private_hosts
        .as_deref()
        .and_then(|s| e.check(format!("{p}.private_hosts"), cidr(s)));
    if let (Some(h), Some(net)) = (private_hosts, private)
        && !(net.contains(&h.network()) && net.prefix_len() <= h.prefix_len())
    {
        e.push(
            format!("{p}.private_hosts"),
            format!("{h} is not inside the private subnet {net}"),
        );
    }
    Some(ZoneSpec {
        name: z.name.clone(),
        public_interface: z.public_interface.clone(),
        private_interface: z.private_interface.clone(),
        public_vip: public_vip?,
        public_gateway: public_gateway?,
        private_vip: private_vip?,
        public_address,
        private_address,
        vrid,
        private_hosts,
    })
}
