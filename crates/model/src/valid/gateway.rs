//! `[[zones]]` and `[ha]`: each zone's interfaces, VIPs and upstream gateway, and, with HA
//! (several zones or an `[ha]` section), the VRRP settings, each instance's own address, distinct
//! VRIDs and non-overlapping `private_hosts`. The IPv6 twins (`public_vip6`, `private_vip6`,
//! the link-local VIP, the instance's own IPv6 addresses) are checked against
//! `private_subnet6` and each other's family.

use super::primitives::{cidr, cidr_host, cidr6_host, ifname, ipv4, ipv6, is_link_local, unique};
use crate::duration;
use crate::error::Errors;
use crate::spec::{Gateway, Zone};
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
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
    /// IPv6: the zone's public VIP and upstream next hop (both or neither).
    pub public_vip6: Option<Ipv6Net>,
    pub public_gateway6: Option<Ipv6Addr>,
    /// IPv6: the zone's global gateway address, with `private_subnet6`'s prefix.
    pub private_vip6: Option<Ipv6Net>,
    /// IPv6: the virtual router's link-local address on the private side (RA source).
    pub link_local_vip6: Ipv6Addr,
    /// HA, IPv6: the instance's own fixed addresses (host-configured).
    pub public_address6: Option<Ipv6Addr>,
    pub private_address6: Option<Ipv6Addr>,
}

/// The link-local VIP of the first zone's virtual router unless told otherwise; zone `i`'s
/// default is `fe80::1` + `i`, so that the zones' routers stay distinct on a shared link.
pub const DEFAULT_LINK_LOCAL_VIP6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

fn default_link_local_vip6(index: usize) -> Ipv6Addr {
    let last = u16::try_from(index + 1).unwrap_or(u16::MAX);
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last)
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

/// The zones, then HA over them; `private_subnet` and `private_subnet6` are the parsed
/// `gateway.private_subnet` and `gateway.private_subnet6`.
pub(super) fn check_zones(
    g: &Gateway,
    private_subnet: Option<Ipv4Net>,
    private_subnet6: Option<Ipv6Net>,
    e: &mut Errors,
) -> (Vec<ZoneSpec>, Option<HaSpec>) {
    let mut zones = Vec::new();
    unique(e, "zones", g.zones.iter().map(|z| z.name.as_str()), "name");
    // The valid link-local VIPs of the zones with an IPv6 private side.
    let mut link_locals: Vec<(usize, Ipv6Addr)> = Vec::new();
    for (i, z) in g.zones.iter().enumerate() {
        let p = format!("zones[{i}]");
        let v6 = check_zone6(
            z,
            i,
            &p,
            private_subnet6,
            g.gateway.private_subnet6.is_some(),
            e,
        );
        if let (Some(ll), Some(_)) = (v6.link_local_vip6, &z.private_vip6) {
            if let Some((other, _)) = link_locals.iter().find(|(_, a)| *a == ll) {
                e.push(
                    format!("{p}.link_local_vip6"),
                    format!(
                        "{ll} is already zones[{other}]'s link-local VIP (hosts could not tell the routers apart)"
                    ),
                );
            }
            link_locals.push((i, ll));
        }
        if let Some(mut z) = check_zone(z, i, &p, private_subnet, e) {
            z.public_vip6 = v6.public_vip6;
            z.public_gateway6 = v6.public_gateway6;
            z.private_vip6 = v6.private_vip6;
            z.link_local_vip6 = v6.link_local_vip6.unwrap_or(z.link_local_vip6);
            z.public_address6 = v6.public_address6;
            z.private_address6 = v6.private_address6;
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
    // IPv6 virtual routers with unicast adverts go between the instances' own IPv6 addresses
    // (their link-local ones are not in the config).
    if h.unicast && zones.iter().any(|z| z.private_vip6.is_some()) {
        for (i, z) in zones.iter().enumerate() {
            if z.private_address6.is_none() {
                e.push(
                    format!("zones[{i}].private_address6"),
                    "is required with [ha] unicast = true and IPv6 VIPs: the IPv6 virtual router's unicast advert source and peer",
                );
            }
        }
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
        public_vip6: None,
        public_gateway6: None,
        private_vip6: None,
        link_local_vip6: default_link_local_vip6(index),
        public_address6: None,
        private_address6: None,
    })
}

/// A zone's IPv6 fields, typed (None where absent or invalid).
struct Zone6 {
    public_vip6: Option<Ipv6Net>,
    public_gateway6: Option<Ipv6Addr>,
    private_vip6: Option<Ipv6Net>,
    /// None: written but invalid.
    link_local_vip6: Option<Ipv6Addr>,
    public_address6: Option<Ipv6Addr>,
    private_address6: Option<Ipv6Addr>,
}

/// The IPv6 twins of a zone's addresses. `declared6`: the document names `private_subnet6`
/// (parsed into `private6` when valid).
fn check_zone6(
    z: &Zone,
    index: usize,
    p: &str,
    private6: Option<Ipv6Net>,
    declared6: bool,
    e: &mut Errors,
) -> Zone6 {
    let addr = |e: &mut Errors, field: &str, v: &Option<String>| {
        v.as_deref()
            .and_then(|s| e.check(format!("{p}.{field}"), ipv6(s)))
    };
    let public_vip6 = z
        .public_vip6
        .as_deref()
        .and_then(|s| e.check(format!("{p}.public_vip6"), cidr6_host(s)));
    let public_gateway6 = addr(e, "public_gateway6", &z.public_gateway6);
    match (&z.public_vip6, &z.public_gateway6) {
        (Some(_), None) => e.push(
            format!("{p}.public_gateway6"),
            "is required with public_vip6 (the IPv6 upstream next hop)",
        ),
        (None, Some(_)) => e.push(
            format!("{p}.public_vip6"),
            "is required with public_gateway6",
        ),
        _ => {}
    }
    if let (Some(vip), Some(gw)) = (public_vip6, public_gateway6)
        && !vip.contains(&gw)
        && !is_link_local(gw)
    {
        e.warn(
            format!("{p}.public_gateway6"),
            format!(
                "{gw} is outside {} and not link-local; it must be reachable on-link",
                vip.trunc()
            ),
        );
    }
    let private_ip6 = addr(e, "private_vip6", &z.private_vip6);
    let private_vip6 = match (private_ip6, private6) {
        (Some(ip), Some(net)) if net.contains(&ip) && ip != net.network() => {
            Ipv6Net::new(ip, net.prefix_len()).ok()
        }
        (Some(ip), Some(net)) => {
            e.push(
                format!("{p}.private_vip6"),
                format!("{ip} is not a host address in the private subnet {net}"),
            );
            None
        }
        (Some(_), None) if !declared6 => {
            e.push(
                format!("{p}.private_vip6"),
                "needs gateway.private_subnet6 (the routed IPv6 prefix it belongs to)",
            );
            None
        }
        _ => None,
    };
    if declared6 && z.private_vip6.is_none() {
        e.push(
            format!("{p}.private_vip6"),
            "is required when gateway.private_subnet6 is declared (the zone's IPv6 gateway address)",
        );
    }
    let link_local_vip6 = match z.link_local_vip6.as_deref() {
        None => Some(default_link_local_vip6(index)),
        Some(s) => match e.check(format!("{p}.link_local_vip6"), ipv6(s)) {
            Some(a) if is_link_local(a) => Some(a),
            Some(a) => {
                e.push(
                    format!("{p}.link_local_vip6"),
                    format!("{a} is not a link-local address (fe80::/10)"),
                );
                None
            }
            None => None,
        },
    };
    let public_address6 = addr(e, "public_address6", &z.public_address6);
    if let (Some(a), Some(vip)) = (public_address6, public_vip6)
        && a == vip.addr()
    {
        e.push(
            format!("{p}.public_address6"),
            "must differ from public_vip6 (the VIP floats)",
        );
    }
    if public_address6.is_some() && z.public_vip6.is_none() {
        e.push(format!("{p}.public_address6"), "needs public_vip6");
    }
    let private_address6 = addr(e, "private_address6", &z.private_address6);
    if let Some(a) = private_address6 {
        match private6 {
            Some(net) if !net.contains(&a) => e.push(
                format!("{p}.private_address6"),
                format!("{a} is not in the private subnet {net}"),
            ),
            None if !declared6 => e.push(
                format!("{p}.private_address6"),
                "needs gateway.private_subnet6",
            ),
            _ => {}
        }
        if Some(a) == private_ip6 {
            e.push(
                format!("{p}.private_address6"),
                "must differ from private_vip6 (the VIP floats)",
            );
        }
    }
    Zone6 {
        public_vip6,
        public_gateway6,
        private_vip6,
        link_local_vip6,
        public_address6,
        private_address6,
    }
}
