//! Addresses, routes and sysctls a zone's gateway needs, typed. Each address and route has one
//! `Display` (iproute2's words: `203.0.113.10/24 dev wan0`, `default via 203.0.113.1 dev wan0`),
//! shared by `kawaii render --what routes` and the netlink driver's `ip -batch` lines.

use ipnet::IpNet;
use kawaii_model::Desired;
use kawaii_model::valid::ZoneSpec;
use serde::{Serialize, Serializer};
use std::fmt::{self, Write};
use std::net::IpAddr;

/// An address kawaii puts on an interface (a VIP, the WireGuard device's address).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Address {
    pub interface: String,
    /// `203.0.113.10/24`: the address with its prefix.
    pub address: IpNet,
}

impl fmt::Display for Address {
    /// `203.0.113.10/24 dev wan0`, as `ip addr add|del` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dev {}", self.address, self.interface)
    }
}

/// Where a route leads: the default route or one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    Default,
    Net(IpNet),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Default => f.write_str("default"),
            Destination::Net(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<N: Into<IpNet>> From<N> for Destination {
    fn from(n: N) -> Destination {
        Destination::Net(n.into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    pub destination: Destination,
    /// The next hop; None for a route onto the interface itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    /// None: the kernel picks the interface that reaches `via`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Preferred source for traffic this host originates over the route; None: the kernel's
    /// choice (the interface's first address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
}

impl RouteEntry {
    /// The route to `destination` onto `interface` (no next hop, no preferred source).
    pub fn onto(destination: impl Into<Destination>, interface: &str) -> RouteEntry {
        RouteEntry {
            destination: destination.into(),
            via: None,
            interface: Some(interface.to_string()),
            source: None,
        }
    }
}

impl fmt::Display for RouteEntry {
    /// `10.2.0.0/24 via 198.51.100.2 dev wan0 src 203.0.113.10`, the optional parts left out,
    /// as `ip route replace` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.destination)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if let Some(dev) = &self.interface {
            write!(f, " dev {dev}")?;
        }
        if let Some(src) = self.source {
            write!(f, " src {src}")?;
        }
        Ok(())
    }
}

/// A policy routing rule kawaii owns (see [`crate::twin`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleEntry {
    pub priority: u32,
    /// Matches packets with this mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    /// Matches packets to this network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<IpNet>,
    /// The routing table looked up (254: main).
    pub table: u32,
}

impl fmt::Display for RuleEntry {
    /// `priority 218 fwmark 0x6b61 lookup 220`, as `ip rule add|del` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "priority {}", self.priority)?;
        if let Some(m) = self.fwmark {
            write!(f, " fwmark {m:#x}")?;
        }
        if let Some(to) = self.to {
            write!(f, " to {to}")?;
        }
        write!(f, " lookup {}", self.table)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

/// Everything the netlink driver converges: the VIPs kawaii owns, its routes, and sysctls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetPlan {
    pub addresses: Vec<Address>,
    pub routes: Vec<RouteEntry>,
    /// Policy routing rules (IPv4), only for an office on our own subnet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleEntry>,
    pub sysctls: Vec<Sysctl>,
    /// HA: VIPs of the zones this node does not hold; removed if present (e.g. left over by a
    /// killed previous run). Not rendered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<Address>,
}

impl NetPlan {
    /// The text `kawaii render --what routes` prints (also the golden file).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for a in &self.addresses {
            let _ = writeln!(out, "address {a}");
        }
        for r in &self.routes {
            let _ = writeln!(out, "route {r}");
        }
        for r in &self.rules {
            let _ = writeln!(out, "rule {r}");
        }
        for s in &self.sysctls {
            let _ = writeln!(out, "sysctl {}={}", s.key, s.value);
        }
        out
    }
}

pub fn plan(d: &Desired, z: &ZoneSpec, observed: &crate::Observed) -> NetPlan {
    let held = crate::vrrp::owned(d, z, observed);
    // What the gateway itself sends out (WireGuard and IKE answers, the router's and pipes'
    // own connections to the outside) leaves from the zone's public VIP while this node holds
    // it, never from the host's own fixed address: a VPN peer then follows the VIP on failover.
    let source = held
        .iter()
        .any(|h| h.name == z.name)
        .then(|| IpAddr::V4(z.public_vip.addr()));
    let mut routes = vec![RouteEntry {
        destination: Destination::Default,
        via: Some(IpAddr::V4(z.public_gateway)),
        interface: Some(z.public_interface.clone()),
        source,
    }];
    // A global IPv6 next hop is on-link through the VIP's prefix, also while a sibling holds
    // the VIP (an IPv4 backup has its fixed address for that; an IPv6 one may have none).
    if let (Some(gw6), Some(vip6)) = (z.public_gateway6, z.public_vip6)
        && !kawaii_model::valid::is_link_local(gw6)
        && vip6.contains(&gw6)
    {
        routes.push(RouteEntry::onto(vip6.trunc(), &z.public_interface));
    }
    // Likewise on the private side: routes through a sibling's IPv6 address (an office's
    // prefix via its home zone's private_vip6, a VPN peer via a sibling) need the private
    // prefix on-link before this node holds an IPv6 VIP in it ("No route to host" otherwise).
    if let (Some(_), Some(private6)) = (&d.ha, d.private_subnet6) {
        routes.push(RouteEntry::onto(private6, &z.private_interface));
    }
    if let Some(gw6) = z.public_gateway6 {
        // The IPv6 VIPs follow the zone's IPv6 virtual router.
        let source6 = crate::vrrp::owned6(d, z, observed)
            .iter()
            .any(|h| h.name == z.name)
            .then_some(z.public_vip6)
            .flatten()
            .map(|v| IpAddr::V6(v.addr()));
        routes.push(RouteEntry {
            destination: Destination::Default,
            via: Some(IpAddr::V6(gw6)),
            interface: Some(z.public_interface.clone()),
            source: source6,
        });
    }
    // Peered subnets: routed (never NATed) via the other project's gateway; the kernel picks
    // the interface that reaches `via`.
    for p in &d.vpc_peerings {
        routes.push(RouteEntry {
            destination: p.subnet.into(),
            via: Some(IpAddr::V4(p.via)),
            interface: None,
            source: None,
        });
        // Dual stack: the IPv6 subnet through the peer's IPv6 backbone address.
        if let (Some(subnet6), Some(via6)) = (p.subnet6, p.via6) {
            routes.push(RouteEntry {
                destination: subnet6.into(),
                via: Some(IpAddr::V6(via6)),
                interface: None,
                source: None,
            });
        }
    }
    // HA: a tunnel terminated by another zone's instance is reached through that zone's
    // private VIP (it follows the tunnel on failover), never through the default route.
    for c in &d.ipsec {
        if let Some(home) = crate::ipsec::home(d, c)
            && d.ha.is_some()
            && !crate::ipsec::terminated_here(d, z, observed, c)
        {
            // Aliased: our hosts address the alias; the home instance translates it.
            if let Some(seen) = c.remote_seen() {
                routes.push(RouteEntry {
                    destination: seen.into(),
                    via: Some(IpAddr::V4(home.private_vip.addr())),
                    interface: Some(z.private_interface.clone()),
                    source: None,
                });
            }
            if let (Some(r6), Some(vip6)) = (c.remote_subnet6, home.private_vip6) {
                routes.push(RouteEntry {
                    destination: r6.into(),
                    via: Some(IpAddr::V6(vip6.addr())),
                    interface: Some(z.private_interface.clone()),
                    source: None,
                });
            }
        }
    }
    let sys = |k: &str, v: &str| Sysctl {
        key: k.into(),
        value: v.into(),
    };
    let ipv6 = d.private_subnet6.is_some()
        || z.public_vip6.is_some()
        || d.wireguard.as_ref().is_some_and(|w| w.address6.is_some());
    let ipv6_sysctls = if ipv6 {
        vec![
            sys("net.ipv6.conf.all.forwarding", "1"),
            sys("net.ipv6.conf.all.accept_redirects", "0"),
            sys("net.ipv6.conf.default.accept_redirects", "0"),
        ]
    } else {
        Vec::new()
    };
    NetPlan {
        // The VIPs of every zone this node holds, on this node's own interfaces; and where a
        // tunnel shows the office a local alias, the alias of its zone's private VIP.
        // The IPv6 VIPs follow the zone's IPv6 virtual router.
        addresses: crate::vrrp::owned(d, z, observed)
            .into_iter()
            .flat_map(|o| vips(o, z))
            .chain(
                crate::vrrp::owned6(d, z, observed)
                    .into_iter()
                    .flat_map(|o| vips6(o, z)),
            )
            .chain(alias_addresses(d, z, &held))
            .collect(),
        absent: match &d.ha {
            None => Vec::new(),
            Some(_) => {
                let held = crate::vrrp::owned(d, z, observed);
                let held6 = crate::vrrp::owned6(d, z, observed);
                let out = |h: &[&ZoneSpec], o: &ZoneSpec| !h.iter().any(|h| h.name == o.name);
                d.zones
                    .iter()
                    .filter(|o| out(&held, o))
                    .flat_map(|o| vips(o, z))
                    .chain(
                        d.zones
                            .iter()
                            .filter(|o| out(&held6, o))
                            .flat_map(|o| vips6(o, z)),
                    )
                    .collect()
            }
        },
        routes,
        rules: crate::twin::rules(d),
        sysctls: [
            sys("net.ipv4.ip_forward", "1"),
            sys("net.ipv4.conf.all.send_redirects", "0"),
            sys("net.ipv4.conf.default.send_redirects", "0"),
            sys("net.ipv4.conf.all.accept_redirects", "0"),
            sys("net.ipv4.conf.default.accept_redirects", "0"),
        ]
        .into_iter()
        .chain(ipv6_sysctls)
        .chain(flood_sysctls(d, z))
        .collect(),
    }
}

/// kernel-libipsec routes a tunnel only from an address inside its local traffic selector: a
/// tunnel with a `local_alias` gets the alias of its zone's private VIP (the gateway as the
/// office sees it) on the private interface, while this node holds that zone.
fn alias_addresses<'a>(
    d: &'a Desired,
    z: &'a ZoneSpec,
    held: &'a [&'a ZoneSpec],
) -> impl Iterator<Item = Address> + 'a {
    d.ipsec.iter().filter_map(move |c| {
        let alias = c.local_alias?;
        let private = d.private_subnet?;
        let home = crate::ipsec::home(d, c).filter(|h| held.iter().any(|o| o.name == h.name))?;
        let vip = ipnet::Ipv4Net::from(home.private_vip.addr());
        Some(Address {
            interface: z.private_interface.clone(),
            address: kawaii_model::valid::map_net(vip, private, alias).into(),
        })
    })
}

/// Zone `o`'s IPv4 VIPs on the interfaces of this node's zone `z`: public and private.
fn vips(o: &ZoneSpec, z: &ZoneSpec) -> Vec<Address> {
    vec![
        Address {
            interface: z.public_interface.clone(),
            address: o.public_vip.into(),
        },
        Address {
            interface: z.private_interface.clone(),
            address: o.private_vip.into(),
        },
    ]
}

/// Zone `o`'s IPv6 VIPs on the interfaces of this node's zone `z`: public and private, with the
/// link-local VIP (the router advertisements' source).
fn vips6(o: &ZoneSpec, z: &ZoneSpec) -> Vec<Address> {
    let public = |address: IpNet| Address {
        interface: z.public_interface.clone(),
        address,
    };
    let private = |address: IpNet| Address {
        interface: z.private_interface.clone(),
        address,
    };
    let mut out = Vec::new();
    out.extend(o.public_vip6.map(|v| public(v.into())));
    if let Some(v) = o.private_vip6 {
        out.push(private(v.into()));
        let ll = ipnet::Ipv6Net::new(o.link_local_vip6, 64).expect("64 is a valid prefix length");
        out.push(private(ll.into()));
    }
    out
}

/// The conntrack settings of the flood protections (see [`crate::flood`]).
fn flood_sysctls(d: &Desired, z: &ZoneSpec) -> Vec<Sysctl> {
    let router_ports = crate::router::plan(d, Some(z))
        .map(|r| r.ports())
        .unwrap_or_default();
    crate::flood::sysctls(d, &router_ports, z.public_vip6.is_some())
        .into_iter()
        .map(|(key, value)| Sysctl {
            key: key.to_string(),
            value,
        })
        .collect()
}
