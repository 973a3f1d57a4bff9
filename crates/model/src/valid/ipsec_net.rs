//! The addresses of an `[[ipsec]]` connection, per family. Outer: `remote_peer` is IPv4 (the
//! zone's `public_vip` ends the tunnel) or IPv6 (its `public_vip6`). Inner: `remote_subnet`
//! lists the office's subnets, at most one per family (`"172.16.1.0/24, 2001:db8:a1::/64"`: one
//! tunnel, both selectors); IPv4 pairs with `private_subnet` (or `local_alias`), IPv6 with
//! `private_subnet6`, routed and never translated. Aliases are IPv4 prefix NAT only. Ingress rules
//! name one family or none (then both), and are split into each family's view.

use super::firewall::{PeerRule6, PeerRuleSpec};
use super::gateway::ZoneSpec;
use super::primitives::{RuleNet, ip, protocol, rule_net};
use crate::error::Errors;
use crate::ports::PortSet;
use crate::spec::{Ipsec, PeerRule};
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::IpAddr;

/// `remote_peer`: an address of either family; an IPv6 one needs the home zone's `public_vip6`.
pub(super) fn remote_peer(
    c: &Ipsec,
    p: &str,
    home: Option<&ZoneSpec>,
    e: &mut Errors,
) -> Option<IpAddr> {
    let peer = e.check(format!("{p}.remote_peer"), ip(&c.remote_peer))?;
    if let (IpAddr::V6(a), Some(z)) = (peer, home)
        && z.public_vip6.is_none()
    {
        e.push(
            format!("{p}.remote_peer"),
            format!(
                "{a} is IPv6 but zone {:?} has no public_vip6 (the tunnel's IPv6 end on this side)",
                z.name
            ),
        );
    }
    Some(peer)
}

/// `remote_subnet`: one subnet, or one per family separated by a comma. Returns (IPv4, IPv6);
/// None when nothing valid was given (errors pushed).
pub(super) fn remote_subnets(
    c: &Ipsec,
    p: &str,
    private_subnet6: Option<Ipv6Net>,
    declared6: bool,
    e: &mut Errors,
) -> Option<(Option<Ipv4Net>, Option<Ipv6Net>)> {
    let path = format!("{p}.remote_subnet");
    let (mut v4, mut v6) = (None::<Ipv4Net>, None::<Ipv6Net>);
    let mut ok = true;
    for item in c.remote_subnet.split(',') {
        if item.trim().is_empty() {
            e.push(
                &path,
                format!(
                    "{:?} has an empty item; give one subnet per family, like \"172.16.1.0/24, 2001:db8:a1::/64\"",
                    c.remote_subnet
                ),
            );
            ok = false;
            continue;
        }
        let twice = |e: &mut Errors, fam: &str, a: String, b: String| {
            e.push(
                &path,
                format!(
                    "names two {fam} subnets ({a} and {b}): one tunnel carries one subnet per family; \
                     declare another [[ipsec]] connection for the other"
                ),
            )
        };
        match e.check(&path, rule_net(Some(item.trim()))) {
            Some(RuleNet::V4(n)) => match v4 {
                Some(o) => twice(e, "IPv4", o.to_string(), n.to_string()),
                None => v4 = Some(n),
            },
            Some(RuleNet::V6(n)) => match v6 {
                Some(o) => twice(e, "IPv6", o.to_string(), n.to_string()),
                None => v6 = Some(n),
            },
            _ => ok = false,
        }
    }
    if let Some(n) = v6 {
        match private_subnet6 {
            Some(ours) if ours.contains(&n.network()) || n.contains(&ours.network()) => e.push(
                &path,
                format!(
                    "{n} overlaps {ours} (gateway.private_subnet6): IPv6 is routed, never \
                     translated, so an office on our prefix cannot be reached"
                ),
            ),
            Some(_) => {}
            None if !declared6 => e.push(
                &path,
                format!(
                    "{n} is IPv6 but gateway.private_subnet6 is not declared (the tunnel's local IPv6 selector)"
                ),
            ),
            None => {}
        }
    }
    (ok && (v4.is_some() || v6.is_some())).then_some((v4, v6))
}

/// Aliases translate IPv4 prefixes; an IPv6 one, or one on a tunnel without an IPv4 subnet, is
/// refused with the reason. Returns whether the aliases may be parsed as IPv4.
pub(super) fn aliases_fit(c: &Ipsec, p: &str, has_v4: bool, e: &mut Errors) -> bool {
    let mut ok = true;
    for (field, value) in [
        ("local_alias", &c.local_alias),
        ("remote_alias", &c.remote_alias),
    ] {
        let Some(v) = value else { continue };
        if v.contains(':') {
            e.push(
                format!("{p}.{field}"),
                format!(
                    "{v:?} is IPv6: aliases are IPv4 prefix NAT; IPv6 is routed without translation \
                     (no NAT66), so an office whose IPv6 prefix overlaps another must be renumbered"
                ),
            );
            ok = false;
        } else if !has_v4 {
            e.push(
                format!("{p}.{field}"),
                "translates IPv4, and remote_subnet names no IPv4 subnet",
            );
            ok = false;
        }
    }
    ok
}

/// What a tunnel carries, for its ingress rules: each family's far-side network (None: the
/// family is not carried; `/0`: any source), and why a missing family is missing.
pub(super) struct Carried<'a> {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
    /// Ends "X is IPv4 but ...", "X is IPv6 but ...".
    pub no_v4: &'a str,
    pub no_v6: &'a str,
}

/// An IPsec connection's: its `remote_subnet`s.
pub(super) fn carried_by_ipsec(
    remote: Option<(Option<Ipv4Net>, Option<Ipv6Net>)>,
) -> Option<Carried<'static>> {
    remote.map(|(v4, v6)| Carried {
        v4,
        v6,
        no_v4: "remote_subnet names no IPv4 subnet",
        no_v6: "remote_subnet names no IPv6 subnet",
    })
}

/// The ingress rules of an IPsec connection or a VPN peer split by family: (the IPv4 view, the
/// IPv6 view). A rule without addresses is in both; a rule naming an address of a family the
/// tunnel does not carry is refused, and an IPv6 source must be inside what the tunnel
/// carries (`carried`: None when that is invalid itself).
pub(super) fn ingress_rules(
    rules: &[PeerRule],
    p: &str,
    carried: Option<Carried>,
    e: &mut Errors,
) -> (Vec<PeerRuleSpec>, Vec<PeerRule6>) {
    let remote = carried.as_ref().map(|c| (c.v4, c.v6));
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (i, r) in rules.iter().enumerate() {
        let p = format!("{p}[{i}]");
        let net = |e: &mut Errors, field: &str, s: &Option<String>| match s {
            None => Some(RuleNet::Any),
            Some(s) => e.check(format!("{p}.{field}"), rule_net(Some(s))),
        };
        let src = net(e, "source", &r.source);
        let dst = net(e, "destination", &r.destination);
        let proto = e.check(format!("{p}.protocol"), protocol(&r.protocol));
        let ports = e.check(format!("{p}.ports"), PortSet::parse(&r.ports));
        let (Some(src), Some(dst), Some(protocol), Some(ports)) = (src, dst, proto, ports) else {
            continue;
        };
        let family = match (src, dst) {
            (RuleNet::V4(_), RuleNet::V6(_)) | (RuleNet::V6(_), RuleNet::V4(_)) => {
                e.push(
                    format!("{p}.destination"),
                    format!("{dst} and source {src} are of different families: a rule names one family (or none, and then applies to both)"),
                );
                continue;
            }
            (RuleNet::V4(_), _) | (_, RuleNet::V4(_)) => Some(false),
            (RuleNet::V6(_), _) | (_, RuleNet::V6(_)) => Some(true),
            _ => None,
        };
        let (field, named) = if matches!(src, RuleNet::Any) {
            ("destination", dst)
        } else {
            ("source", src)
        };
        match (family, remote) {
            (Some(false), Some((None, _))) => {
                e.push(
                    format!("{p}.{field}"),
                    format!(
                        "{named} is IPv4 but {}",
                        carried.as_ref().map_or("", |c| c.no_v4)
                    ),
                );
                continue;
            }
            (Some(true), Some((_, None))) => {
                e.push(
                    format!("{p}.{field}"),
                    format!(
                        "{named} is IPv6 but {}",
                        carried.as_ref().map_or("", |c| c.no_v6)
                    ),
                );
                continue;
            }
            _ => {}
        }
        if let (RuleNet::V6(s), Some((_, Some(r6)))) = (src, remote)
            && !r6.contains(&s)
        {
            e.push(
                format!("{p}.source"),
                format!("{s} is outside remote_subnet {r6}: the tunnel carries only that prefix"),
            );
            continue;
        }
        if family != Some(true) {
            v4.push(PeerRuleSpec {
                source: src.v4().filter(|_| src != RuleNet::Any),
                destination: dst.v4().filter(|_| dst != RuleNet::Any),
                protocol,
                ports: ports.clone(),
                index: i,
            });
        }
        if family != Some(false) {
            v6.push(PeerRule6 {
                source: src.v6().filter(|_| src != RuleNet::Any),
                destination: dst.v6().filter(|_| dst != RuleNet::Any),
                protocol,
                ports,
                index: i,
            });
        }
    }
    (v4, v6)
}

/// IPv6 subnets are never translated: two connections whose IPv6 subnets overlap could not be
/// told apart.
pub(super) fn check_overlaps6(nets: &[(usize, Option<Ipv6Net>)], e: &mut Errors) {
    for (k, &(i, a)) in nets.iter().enumerate() {
        let Some(a) = a else { continue };
        for &(j, b) in &nets[..k] {
            if let Some(b) = b
                && (a.contains(&b.network()) || b.contains(&a.network()))
            {
                e.push(
                    format!("ipsec[{i}].remote_subnet"),
                    format!(
                        "{a} overlaps {b} (ipsec[{j}].remote_subnet): IPv6 is routed, never \
                         translated, so two offices need distinct IPv6 prefixes"
                    ),
                );
            }
        }
    }
}
