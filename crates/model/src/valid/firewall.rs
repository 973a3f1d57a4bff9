//! Filter and NAT rules: `[[ingress_rules]]`, `[[egress_rules]]`, `[[nat_rules]]` (port
//! forwards inside the private subnet, never two on one port, warned when no ingress rule opens
//! them), and the rules inside peerings, IPsec connections and VPN peers.
//! A gateway rule names one family's network, or none and then applies to both; a port
//! forward to an IPv6 host (routed, no NAT66) is an opening of that host's port.

use super::primitives::{Protocol, RuleNet, ip, protocol, rule_net};
use crate::error::Errors;
use crate::ports::PortSet;
use crate::spec::Gateway;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::IpAddr;

/// A filter rule: who, what protocol, which ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// Source (ingress) or destination (egress) network, of one family or both.
    pub net: RuleNet,
    pub protocol: Protocol,
    pub ports: PortSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatForward {
    pub id: String,
    /// IPv4: DNAT from the public VIP to it; IPv6: the host's own address, opened (no NAT).
    pub destination: IpAddr,
    pub protocol: Protocol,
    pub ports: PortSet,
}

/// A rule inside a VPN peer, an IPsec connection or a peering, typed: source and destination
/// networks of the family `N` (None: any), protocol and ports. One type for the three
/// capabilities and both families; the aliases name the views they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule<N> {
    pub source: Option<N>,
    pub destination: Option<N>,
    pub protocol: Protocol,
    pub ports: PortSet,
    /// The rule's place in its list as written (0-based). Counters' comments number a rule by
    /// it, so that a rule keeps its number in each family's view of a mixed list.
    pub index: usize,
}

/// An IPv4 rule of a VPN peer or an IPsec connection.
pub type PeerRuleSpec = NetRule<Ipv4Net>;
/// An IPsec rule's IPv6 view: the office's IPv6 hosts (`source`) to ours.
pub type PeerRule6 = NetRule<ipnet::Ipv6Net>;
/// A rule of a peering: networks of one family (or none: both families).
pub type PeeringRule = NetRule<ipnet::IpNet>;

/// The gateway's ingress rules (by source) and egress rules (by destination).
pub(super) fn check_filters(g: &Gateway, e: &mut Errors) -> (Vec<Rule>, Vec<Rule>) {
    let ingress_rules = rules(
        e,
        "ingress_rules",
        g.ingress_rules.iter().map(|r| {
            (
                r.id.as_deref(),
                r.source.as_deref(),
                r.protocol.as_str(),
                r.ports.as_str(),
                "source",
            )
        }),
    );
    let egress_rules = rules(
        e,
        "egress_rules",
        g.egress_rules.iter().map(|r| {
            (
                r.id.as_deref(),
                r.destination.as_deref(),
                r.protocol.as_str(),
                r.ports.as_str(),
                "destination",
            )
        }),
    );
    (ingress_rules, egress_rules)
}

/// The port forwards, checked against the private subnet, the ingress rules and each other.
pub(super) fn check_nat(
    g: &Gateway,
    private_subnet: Option<Ipv4Net>,
    private_subnet6: Option<Ipv6Net>,
    ingress_rules: &[Rule],
    e: &mut Errors,
) -> Vec<NatForward> {
    let mut nat_rules = Vec::new();
    for (i, r) in g.nat_rules.iter().enumerate() {
        let p = format!("nat_rules[{i}]");
        let dest = e.check(format!("{p}.destination"), ip(&r.destination));
        match dest {
            Some(IpAddr::V4(d)) => {
                if let Some(net) = private_subnet
                    && !net.contains(&d)
                {
                    e.push(
                        format!("{p}.destination"),
                        format!("{d} is not in the private subnet {net}"),
                    );
                }
            }
            Some(IpAddr::V6(d)) => match private_subnet6 {
                Some(net) if !net.contains(&d) => e.push(
                    format!("{p}.destination"),
                    format!("{d} is not in the private subnet {net}"),
                ),
                Some(_) => {}
                None if g.gateway.private_subnet6.is_none() => e.push(
                    format!("{p}.destination"),
                    format!("{d} is IPv6 but gateway.private_subnet6 is not declared"),
                ),
                None => {}
            },
            None => {}
        }
        let proto = e.check(format!("{p}.protocol"), protocol(&r.protocol));
        let ports = e.check(format!("{p}.ports"), PortSet::parse(&r.ports));
        if let (Some(destination), Some(protocol), Some(ports)) = (dest, proto, ports) {
            nat_rules.push(NatForward {
                id: r.id.clone().unwrap_or_else(|| format!("nat-{}", i + 1)),
                destination,
                protocol,
                ports,
            });
        }
    }
    // A forwarded port nobody may reach is almost always a mistake.
    for (i, n) in nat_rules.iter().enumerate() {
        let opened = ingress_rules
            .iter()
            .filter(|r| r.protocol == n.protocol && n.ports.intersects(&r.ports))
            .any(|r| match n.destination {
                IpAddr::V4(_) => r.net.v4().is_some(),
                IpAddr::V6(_) => r.net.v6().is_some(),
            });
        if !opened {
            e.warn(
                format!("nat_rules[{i}]"),
                format!(
                    "{} {} is forwarded but no ingress rule opens it, so it is unreachable",
                    n.protocol.as_str(),
                    n.ports
                ),
            );
        }
    }
    // Two forwards of one public port would race; IPv6 openings (no DNAT) only repeat each
    // other on the same host.
    for (i, a) in nat_rules.iter().enumerate() {
        for b in &nat_rules[..i] {
            let same_host = a.destination.is_ipv4() || a.destination == b.destination;
            if a.destination.is_ipv4() == b.destination.is_ipv4()
                && same_host
                && a.protocol == b.protocol
                && a.ports.intersects(&b.ports)
            {
                e.push(
                    format!("nat_rules[{i}].ports"),
                    format!(
                        "{} {} is already forwarded by rule {}",
                        a.protocol.as_str(),
                        a.ports,
                        b.id
                    ),
                );
            }
        }
    }
    nat_rules
}

/// One rule as written: id, network, protocol, ports, and the network's field name.
type RuleIn<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
    &'static str,
);

fn rules<'a>(e: &mut Errors, kind: &str, items: impl Iterator<Item = RuleIn<'a>>) -> Vec<Rule> {
    let mut out = Vec::new();
    let prefix = kind.trim_end_matches("_rules");
    for (i, (id, net, proto, ports, net_field)) in items.enumerate() {
        let p = format!("{kind}[{i}]");
        let net = e.check(format!("{p}.{net_field}"), rule_net(net));
        let proto = e.check(format!("{p}.protocol"), protocol(proto));
        let ports = e.check(format!("{p}.ports"), PortSet::parse(ports));
        if let (Some(net), Some(protocol), Some(ports)) = (net, proto, ports) {
            let id = id
                .map(String::from)
                .unwrap_or_else(|| format!("{prefix}-{}", i + 1));
            out.push(Rule {
                id,
                net,
                protocol,
                ports,
            });
        }
    }
    out
}
