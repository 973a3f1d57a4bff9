//! The machine a document runs on, as far as `check --local` and `serve` look at it: interface
//! names, connected prefixes and routes, of both families. Pure: the caller reads them from the
//! kernel and hands them in; [`check`] returns warnings with the document's field paths.
//!
//! A peering's `via` (`via6`) is a next hop, so it must lie on a directly attached network (a
//! connected prefix, an on-link route, or a prefix kawaii itself adds: a VIP's, the private
//! subnet, the VPN subnet); the kernel refuses any other with `Nexthop has invalid gateway`. An
//! IPsec `remote_peer` of either family needs any route at all of its family, the zone's
//! declared `public_gateway` (`public_gateway6`: kawaii's default routes) included.

use crate::error::FieldError;
use crate::spec::Gateway;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// What the machine has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub interfaces: BTreeSet<String>,
    /// Prefixes of the addresses configured on the interfaces (link-local ones left out).
    pub connected: Vec<IpNet>,
    pub routes: Vec<EnvRoute>,
    /// `net.ipv4.conf.<name>.rp_filter` for `all`, `default` and the interfaces (those read).
    pub rp_filter: std::collections::BTreeMap<String, u8>,
}

/// One route of the main table, of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvRoute {
    pub dst: IpNet,
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

    // What kawaii adds itself counts as attached: the VIPs' prefixes, the private and VPN
    // subnets, in both families.
    let mut attached: Vec<IpNet> = env.connected.iter().map(IpNet::trunc).collect();
    attached.extend(env.routes.iter().filter(|r| r.on_link).map(|r| r.dst));
    let mut net = |s: Option<&str>| {
        if let Some(n) = s.and_then(|s| s.trim().parse::<IpNet>().ok()) {
            attached.push(n.trunc());
        }
    };
    net(g.gateway.private_subnet.as_deref());
    net(g.gateway.private_subnet6.as_deref());
    for (_, z) in &zones {
        net(Some(&z.public_vip));
        net(z.public_vip6.as_deref());
    }
    if let Some(w) = &g.wireguard {
        net(Some(&w.address));
        net(w.address6.as_deref());
    }
    attached.sort();
    attached.dedup();
    let on_attached = |a: IpAddr| attached.iter().any(|n| n.contains(&a));
    let describe = |v6: bool| {
        let nets: Vec<String> = attached
            .iter()
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .map(ToString::to_string)
            .collect();
        if nets.is_empty() {
            "none".to_string()
        } else {
            nets.join(", ")
        }
    };
    for (i, v) in g.vpc_peerings.iter().enumerate() {
        let hops = [("via", Some(v.via.as_str())), ("via6", v.via6.as_deref())];
        for (field, hop) in hops {
            let Some(via) = hop.and_then(|s| s.trim().parse::<IpAddr>().ok()) else {
                continue;
            };
            if !on_attached(via) {
                out.push(FieldError::new(
                    format!("vpc_peerings[{i}].{field}"),
                    format!(
                        "{via} is on no network attached to this machine (attached: {}); the next hop must be on a connected network (the backbone) or an on-link route",
                        describe(via.is_ipv6())
                    ),
                ));
            }
        }
    }
    for (i, c) in g.ipsec.iter().enumerate() {
        let Ok(peer) = c.remote_peer.trim().parse::<IpAddr>() else {
            continue;
        };
        let default_declared = zones.iter().any(|(_, z)| match peer {
            IpAddr::V4(_) => z.public_gateway.parse::<std::net::Ipv4Addr>().is_ok(),
            IpAddr::V6(_) => z.public_gateway6.is_some(),
        });
        let routed = default_declared
            || on_attached(peer)
            || env.routes.iter().any(|r| r.dst.contains(&peer));
        if !routed {
            let gateway = if peer.is_ipv6() {
                "public_gateway6"
            } else {
                "public_gateway"
            };
            out.push(FieldError::new(
                format!("ipsec[{i}].remote_peer"),
                format!(
                    "{peer} is reachable through no connected network or route of this machine, and no zone declares a {gateway}"
                ),
            ));
        }
    }
    strict_reverse_path(g, &zones, env, &mut out);
    out
}

/// An office on our own subnet (docs/ipsec.md) answers from addresses that route to our LAN:
/// strict reverse-path filtering on the device its packets arrive on (kernel-libipsec's new
/// TUN device takes `default`; with XFRM, the public interface) drops every one of them.
fn strict_reverse_path(
    g: &Gateway,
    zones: &[(usize, &crate::spec::Zone)],
    env: &Environment,
    out: &mut Vec<FieldError>,
) {
    let Some(private) = g
        .gateway
        .private_subnet
        .as_deref()
        .and_then(|p| p.trim().parse::<ipnet::Ipv4Net>().ok())
    else {
        return;
    };
    let value = |k: &str| env.rp_filter.get(k).copied().unwrap_or(0);
    let strict = |dev: &str| value("all").max(value(dev)) == 1;
    let mut devices = vec!["default".to_string()];
    devices.extend(zones.iter().map(|(_, z)| z.public_interface.clone()));
    for (i, c) in g.ipsec.iter().enumerate() {
        let twin = c.remote_subnet.split(',').any(|n| {
            n.trim()
                .parse::<ipnet::Ipv4Net>()
                .is_ok_and(|n| crate::valid::nets_overlap(&n, &private))
        });
        if !twin || c.remote_alias.is_none() {
            continue;
        }
        if let Some(dev) = devices.iter().find(|d| strict(d)) {
            out.push(FieldError::new(
                format!("ipsec[{i}].remote_subnet"),
                format!(
                    "the office is on our own subnet ({private}), and strict reverse-path filtering \
                     (net.ipv4.conf.all or .{dev}.rp_filter = 1) drops its packets, whose source \
                     routes to our LAN: set it to 2 (loose) or 0"
                ),
            ));
        }
    }
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
            rp_filter: Default::default(),
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

    fn env6() -> Environment {
        let mut env = env();
        env.connected
            .push("2001:db8:bb::1/64".parse().expect("net"));
        env
    }

    /// An office on our own subnet with strict reverse-path filtering: warned, once, naming the
    /// setting; loose (2) or off is fine, and so is strict for an office elsewhere.
    #[test]
    fn strict_reverse_path_filtering_is_a_warning_for_an_office_on_our_subnet() {
        let twin = |subnet: &str| {
            doc(&format!(
                "[gateway]\nname = \"acme\"\nprivate_subnet = \"10.1.0.0/24\"\n\
                 [[zones]]\nname = \"a\"\npublic_interface = \"eth0\"\nprivate_interface = \"eth0\"\n\
                 public_vip = \"203.0.113.10/24\"\npublic_gateway = \"203.0.113.1\"\nprivate_vip = \"10.1.0.1\"\n\
                 [[ipsec]]\nname = \"t\"\nremote_peer = \"192.168.100.8\"\nremote_subnet = \"{subnet}\"\n\
                 remote_alias = \"10.93.0.0/24\"\nlocal_alias = \"10.73.0.0/24\"\npre_shared_key = \"k\"\n\
                 phase1_dh_group_number = 14\nphase1_integrity_algorithm = \"SHA256\"\n\
                 phase1_encryption_algorithm = \"AES256\"\nphase2_dh_group_number = 14\n\
                 phase2_integrity_algorithm = \"SHA256\"\nphase2_encryption_algorithm = \"AES256\"\n"
            ))
        };
        let with = |all: u8, default: u8| {
            let mut e = env();
            e.rp_filter = [("all".to_string(), all), ("default".to_string(), default)].into();
            e
        };
        let got = check(&twin("10.1.0.0/24"), None, &with(0, 1));
        let paths: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["ipsec[0].remote_subnet"], "{got:?}");
        assert!(got[0].reason.contains("rp_filter = 1"), "{got:?}");
        assert_eq!(check(&twin("10.1.0.0/24"), None, &with(1, 0)).len(), 1);
        for (all, default) in [(2, 1), (0, 2), (0, 0)] {
            let got = check(&twin("10.1.0.0/24"), None, &with(all, default));
            assert!(got.is_empty(), "all {all}, default {default}: {got:?}");
        }
        assert!(check(&twin("172.16.1.0/24"), None, &with(1, 1)).is_empty());
    }

    #[test]
    fn a_via6_must_be_on_an_attached_ipv6_network() {
        let got = check(
            &doc(include_str!("../testdata/environment/peerings6.toml")),
            None,
            &env6(),
        );
        let paths: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["vpc_peerings[2].via6"], "{got:?}");
        assert!(got[0].reason.contains("2001:db8:cc::4"), "{got:?}");
        // Only the IPv6 networks are listed for an IPv6 next hop.
        assert!(got[0].reason.contains("2001:db8:bb::/64"), "{got:?}");
        assert!(!got[0].reason.contains("192.168.100.0/24"), "{got:?}");
    }

    #[test]
    fn an_ipv6_remote_peer_needs_an_ipv6_route_or_a_declared_gateway6() {
        let ipsec =
            |peer: &str| include_str!("../testdata/environment/ipsec.toml").replace("@peer@", peer);
        let got = check(&doc(&ipsec("2001:db8:5::8")), None, &env6());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].path, "ipsec[0].remote_peer");
        assert!(got[0].reason.contains("public_gateway6"), "{got:?}");
        // An IPv4 default route does not carry IPv6.
        let mut routed = env6();
        routed.routes.push(EnvRoute {
            dst: "0.0.0.0/0".parse().expect("net"),
            on_link: false,
        });
        assert_eq!(check(&doc(&ipsec("2001:db8:5::8")), None, &routed).len(), 1);
        routed.routes.push(EnvRoute {
            dst: "::/0".parse().expect("net"),
            on_link: false,
        });
        assert!(check(&doc(&ipsec("2001:db8:5::8")), None, &routed).is_empty());
        assert!(check(&doc(&ipsec("2001:db8:bb::8")), None, &env6()).is_empty());
        // A zone that declares its IPv6 upstream routes it.
        let declared = include_str!("../testdata/environment/peerings6.toml").to_string()
            + &ipsec("2001:db8:5::8").replace("[gateway]\nname = \"acme\"\n", "");
        let got = check(&doc(&declared), None, &env6());
        assert!(
            got.iter().all(|e| e.path != "ipsec[0].remote_peer"),
            "{got:?}"
        );
    }
}
