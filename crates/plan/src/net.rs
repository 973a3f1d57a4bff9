//! Addresses, routes and sysctls a zone's gateway needs.

use kawaii_model::Desired;
use kawaii_model::valid::ZoneSpec;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub interface: String,
    /// `203.0.113.10/24`.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    /// `default` or a CIDR.
    pub destination: String,
    /// The next hop; empty for a route onto the interface itself.
    pub via: String,
    pub interface: String,
    /// Preferred source for traffic this host originates over the route; empty: the kernel's
    /// choice (the interface's first address).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
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
            let _ = writeln!(out, "address {} dev {}", a.address, a.interface);
        }
        for r in &self.routes {
            let dev = if r.interface.is_empty() {
                String::new()
            } else {
                format!(" dev {}", r.interface)
            };
            let via = if r.via.is_empty() {
                String::new()
            } else {
                format!(" via {}", r.via)
            };
            let src = if r.source.is_empty() {
                String::new()
            } else {
                format!(" src {}", r.source)
            };
            let _ = writeln!(out, "route {}{via}{dev}{src}", r.destination);
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
    let source = if held.iter().any(|h| h.name == z.name) {
        z.public_vip.addr().to_string()
    } else {
        String::new()
    };
    let mut routes = vec![RouteEntry {
        destination: "default".into(),
        via: z.public_gateway.to_string(),
        interface: z.public_interface.clone(),
        source,
    }];
    // Peered subnets: routed (never NATed) via the other project's gateway; the kernel picks
    // the interface that reaches `via`.
    for p in &d.vpc_peerings {
        routes.push(RouteEntry {
            destination: p.subnet.to_string(),
            via: p.via.to_string(),
            interface: String::new(),
            source: String::new(),
        });
    }
    // HA: a tunnel terminated by another zone's instance is reached through that zone's
    // private VIP (it follows the tunnel on failover), never through the default route.
    for c in &d.ipsec {
        if let Some(home) = crate::ipsec::home(d, c)
            && d.ha.is_some()
            && !held.iter().any(|h| h.name == home.name)
        {
            routes.push(RouteEntry {
                destination: c.remote_subnet.to_string(),
                via: home.private_vip.addr().to_string(),
                interface: z.private_interface.clone(),
                source: String::new(),
            });
        }
    }
    let sys = |k: &str, v: &str| Sysctl {
        key: k.into(),
        value: v.into(),
    };
    NetPlan {
        // The VIPs of every zone this node holds, on this node's own interfaces.
        addresses: crate::vrrp::owned(d, z, observed)
            .into_iter()
            .flat_map(|o| {
                [
                    Address {
                        interface: z.public_interface.clone(),
                        address: o.public_vip.to_string(),
                    },
                    Address {
                        interface: z.private_interface.clone(),
                        address: o.private_vip.to_string(),
                    },
                ]
            })
            .collect(),
        absent: match &d.ha {
            None => Vec::new(),
            Some(_) => {
                let held = crate::vrrp::owned(d, z, observed);
                d.zones
                    .iter()
                    .filter(|o| !held.iter().any(|h| h.name == o.name))
                    .flat_map(|o| {
                        [
                            Address {
                                interface: z.public_interface.clone(),
                                address: o.public_vip.to_string(),
                            },
                            Address {
                                interface: z.private_interface.clone(),
                                address: o.private_vip.to_string(),
                            },
                        ]
                    })
                    .collect()
            }
        },
        routes,
        sysctls: vec![
            sys("net.ipv4.ip_forward", "1"),
            sys("net.ipv4.conf.all.send_redirects", "0"),
            sys("net.ipv4.conf.default.send_redirects", "0"),
            sys("net.ipv4.conf.all.accept_redirects", "0"),
            sys("net.ipv4.conf.default.accept_redirects", "0"),
        ],
    }
}
