//! The machine a document runs on, as far as `check --local` and `serve` look at it: interface
//! names, connected prefixes and routes. Pure: the caller reads them from the kernel and hands
//! them in; [`check`] returns warnings with the document's field paths.
//!
//! A peering's `via` is a next hop, so it must lie on a directly attached network (a connected
//! prefix, an on-link route, or a prefix kawaii itself adds: a VIP's, the VPN subnet); the
//! kernel refuses any other with `Nexthop has invalid gateway`. An IPsec `remote_peer` needs
//! any route at all, the zone's declared `public_gateway` (kawaii's default route) included.

use crate::error::FieldError;
use crate::spec::Gateway;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// What the machine has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub interfaces: BTreeSet<String>,
    /// Prefixes of the addresses configured on the interfaces.
    pub connected: Vec<Ipv4Net>,
    pub routes: Vec<EnvRoute>,
}

/// One IPv4 route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvRoute {
    pub dst: Ipv4Net,
    /// No gateway: the destination is on the link (`ip route add 10.9.0.0/24 dev eth1`).
    pub on_link: bool,
}

/// Warnings for the zone `zone` (None: every zone the document declares) on the machine `env`.
pub fn check(g: &Gateway, zone: Option<&str>, env: &Environment) -> Vec<FieldError> {
    let mut out = Vec::new();
    let zones: Vec<(usize, &crate::spec::Zone)> = g
        .zones
        .iter()
        .enumerate()
        .filter(|(_, z)| zone.is_none_or(|n| z.name == n))
        .collect();
    let found = || {
        let names: Vec<&str> = env.interfaces.iter().map(String::as_str).collect();
        names.join(", ")
    };
    let mut missing = |path: String, name: &str| {
        if !name.is_empty() && !env.interfaces.contains(name) {
            out.push(FieldError::new(
                path,
                format!(
                    "no interface {name:?} on this machine (it has: {})",
                    found()
                ),
            ));
        }
    };
    for (i, z) in &zones {
        missing(format!("zones[{i}].public_interface"), &z.public_interface);
        missing(
            format!("zones[{i}].private_interface"),
            &z.private_interface,
        );
    }
    if let Some(s) = g.ha.as_ref().and_then(|h| h.sync_interface.as_deref()) {
        missing("ha.sync_interface".into(), s);
    }

    // What kawaii adds itself counts as attached: the VIPs' prefixes, the VPN subnet.
    let mut attached: Vec<Ipv4Net> = env.connected.iter().map(Ipv4Net::trunc).collect();
    attached.extend(env.routes.iter().filter(|r| r.on_link).map(|r| r.dst));
    let mut net = |s: &str| {
        if let Ok(n) = s.parse::<Ipv4Net>() {
            attached.push(n.trunc());
        }
    };
    if let Some(s) = &g.gateway.private_subnet {
        net(s);
    }
    for (_, z) in &zones {
        net(&z.public_vip);
    }
    if let Some(w) = &g.wireguard {
        net(&w.address);
    }
    attached.sort();
    attached.dedup();
    let on_attached = |a: Ipv4Addr| attached.iter().any(|n| n.contains(&a));
    let describe = |nets: &[Ipv4Net]| {
        if nets.is_empty() {
            "none".to_string()
        } else {
            nets.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for (i, v) in g.vpc_peerings.iter().enumerate() {
        let Ok(via) = v.via.parse::<Ipv4Addr>() else {
            continue;
        };
        if !on_attached(via) {
            out.push(FieldError::new(
                format!("vpc_peerings[{i}].via"),
                format!(
                    "{via} is on no network attached to this machine (attached: {}); the next hop must be on a connected network (the backbone) or an on-link route",
                    describe(&attached)
                ),
            ));
        }
    }
    let default_declared = zones
        .iter()
        .any(|(_, z)| z.public_gateway.parse::<Ipv4Addr>().is_ok());
    for (i, c) in g.ipsec.iter().enumerate() {
        let Ok(peer) = c.remote_peer.parse::<Ipv4Addr>() else {
            continue;
        };
        let routed = default_declared
            || on_attached(peer)
            || env.routes.iter().any(|r| r.dst.contains(&peer));
        if !routed {
            out.push(FieldError::new(
                format!("ipsec[{i}].remote_peer"),
                format!(
                    "{peer} is reachable through no connected network or route of this machine, and no zone declares a public_gateway"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Format;

    fn doc(text: &str) -> Gateway {
        Gateway::parse(text, Format::Toml).expect("test document parses")
    }

    fn env() -> Environment {
        Environment {
            interfaces: ["lo", "eth0", "backbone0"].map(String::from).into(),
            connected: vec!["192.168.100.1/24".parse().expect("net")],
            routes: vec![
                EnvRoute {
                    dst: "10.9.0.0/16".parse().expect("net"),
                    on_link: true,
                },
                EnvRoute {
                    dst: "172.20.0.0/16".parse().expect("net"),
                    on_link: false,
                },
            ],
        }
    }

    #[test]
    fn a_via_must_be_on_an_attached_network() {
        let got = check(
            &doc(include_str!("../testdata/environment/peerings.toml")),
            None,
            &env(),
        );
        let paths: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["vpc_peerings[2].via", "vpc_peerings[3].via"]);
        assert!(got[0].reason.contains("198.51.100.77"), "{got:?}");
        assert!(got[0].reason.contains("192.168.100.0/24"), "{got:?}");
    }

    #[test]
    fn interfaces_of_the_zone_must_exist_and_its_vip_prefix_counts_as_attached() {
        let g = doc(include_str!("../testdata/environment/zones.toml"));
        let got = check(&g, Some("a"), &env());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].path, "zones[0].private_interface");
        assert!(got[0].reason.contains("\"lan0\""), "{got:?}");
        let got = check(&g, None, &env());
        let paths: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["zones[0].private_interface", "zones[1].public_interface"]
        );
        // Zone b alone: its VIP prefix is not zone a's, so the via is not attached.
        let got = check(&g, Some("b"), &env());
        assert!(
            got.iter().any(|e| e.path == "vpc_peerings[0].via"),
            "{got:?}"
        );
    }

    #[test]
    fn a_remote_peer_needs_a_route_or_a_declared_gateway() {
        let ipsec =
            |peer: &str| include_str!("../testdata/environment/ipsec.toml").replace("@peer@", peer);
        let got = check(&doc(&ipsec("198.51.100.8")), None, &env());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].path, "ipsec[0].remote_peer");
        assert!(check(&doc(&ipsec("172.20.3.3")), None, &env()).is_empty());
        let mut routed = env();
        routed.routes.push(EnvRoute {
            dst: "0.0.0.0/0".parse().expect("net"),
            on_link: false,
        });
        assert!(check(&doc(&ipsec("198.51.100.8")), None, &routed).is_empty());
    }
}
