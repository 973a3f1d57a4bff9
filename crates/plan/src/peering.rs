//! VPC peerings in the `inet kawaii` table, both families. In `hellos` (ahead of `input`'s
//! established rule): the consent hellos, from the peer's backbone addresses only (`via`, and
//! `via6` for a dual-stack peer). In `forward`, per peering: without consent (yet) drops of
//! everything to and from its subnets, so nothing crosses in either direction; with it, jumps
//! into its two chains (`peering-<id>-in`, `-out`), which hold its rules and its policy for both
//! families. IPv6 is routed as it is (no NAT66); the IPv4 aliases are `netmap`'s.

use crate::nft::{Chain, l4};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kawaii_model::Desired;
use kawaii_model::valid::{Consent, PeeringRule, Policy};

/// The `hellos` chain that lets each mutual peering's hellos in, from its backbone addresses
/// only; None without a mutual peering. `input` jumps to it for UDP 7781 *before* accepting
/// established flows, so its counters count every hello (three a second), not only the first
/// packet of the flow conntrack then calls established.
pub(crate) fn hellos(d: &Desired) -> Option<Chain> {
    let mut chain = Chain::new(HELLOS, None);
    for p in d
        .vpc_peerings
        .iter()
        .filter(|p| p.consent == Consent::Mutual)
    {
        let id = crate::ipsec_id(&p.name);
        chain.rule(format!(
            "ip saddr {} udp dport {} counter accept comment \"peering-{id}-hello\"",
            p.via,
            crate::CONSENT_PORT
        ));
        if let Some(via6) = p.via6 {
            chain.rule(format!(
                "ip6 saddr {via6} udp dport {} counter accept comment \"peering-{id}-hello6\"",
                crate::CONSENT_PORT
            ));
        }
    }
    (!chain.rules.is_empty()).then_some(chain)
}

/// The name of the hellos' chain.
pub(crate) const HELLOS: &str = "hellos";

/// The peered IPv6 subnets: the echo requests RFC 4890 lets into our routed prefix from
/// anywhere do not come from them (their traffic follows the peering's consent and policy).
pub(crate) fn not_from6(d: &Desired) -> String {
    let nets: Vec<String> = d
        .vpc_peerings
        .iter()
        .filter_map(|p| p.subnet6.map(|n| n.to_string()))
        .collect();
    if nets.is_empty() {
        String::new()
    } else {
        format!("ip6 saddr != {{ {} }} ", nets.join(", "))
    }
}

/// The `forward` rules of every peering, in order, and the peerings' own chains.
/// `private`: our IPv4 subnet; IPv6 pairs with `private_subnet6`.
pub(crate) fn forward(
    d: &Desired,
    private: Ipv4Net,
    observed: &crate::Observed,
) -> (Vec<String>, Vec<Chain>) {
    let mut rules = Vec::new();
    let mut chains = Vec::new();
    for p in &d.vpc_peerings {
        let id = crate::ipsec_id(&p.name);
        // Each family's pair (ours, theirs), IPv6 only where both sides declare it.
        let mut pairs = vec![(IpNet::V4(private), IpNet::V4(p.subnet))];
        if let (Some(ours), Some(theirs)) = (d.private_subnet6, p.subnet6) {
            pairs.push((IpNet::V6(ours), IpNet::V6(theirs)));
        }
        // No consent (yet): nothing crosses in either direction, not even as egress.
        let pending =
            p.consent == Consent::Mutual && !observed.consented_peerings.contains(&p.name);
        for (ours, theirs) in &pairs {
            let f = family(theirs);
            rules.extend(if pending {
                [
                    format!("{f} daddr {theirs} counter drop comment \"peering-{id}-pending\""),
                    format!("{f} saddr {theirs} counter drop comment \"peering-{id}-pending\""),
                ]
            } else {
                [
                    format!("{f} saddr {ours} {f} daddr {theirs} jump peering-{id}-out"),
                    format!("{f} saddr {theirs} {f} daddr {ours} jump peering-{id}-in"),
                ]
            });
        }
        if pending {
            continue;
        }
        let (verdict, fallback) = match p.policy {
            Policy::Accept => ("drop", "accept"),
            Policy::Drop => ("accept", "drop"),
        };
        for (dir, list) in [("in", &p.ingress_rules), ("out", &p.egress_rules)] {
            let mut c = Chain::new(&format!("peering-{id}-{dir}"), None);
            for (i, r) in list.iter().enumerate() {
                c.rule(format!(
                    "{}{} counter {verdict} comment \"peering-{id}-{dir}-{}\"",
                    matches(r),
                    l4(r.protocol, &r.ports),
                    i + 1
                ));
            }
            c.rule(format!(
                "counter {fallback} comment \"peering-{id}-{dir}-policy\""
            ));
            chains.push(c);
        }
    }
    (rules, chains)
}

fn family(n: &IpNet) -> &'static str {
    match n {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

/// A rule's address matches: nothing for a rule of both families; a whole family (`/0`) as
/// the family itself.
fn matches(r: &PeeringRule) -> String {
    let one = |dir: &str, n: &IpNet| match n {
        IpNet::V4(n) if *n == Ipv4Net::default() => "meta nfproto ipv4 ".to_string(),
        IpNet::V6(n) if *n == Ipv6Net::default() => "meta nfproto ipv6 ".to_string(),
        n => format!("{} {dir} {n} ", family(n)),
    };
    let mut s = String::new();
    if let Some(n) = &r.source {
        s += &one("saddr", n);
    }
    if let Some(n) = &r.destination {
        let m = one("daddr", n);
        // Both /0 of one family: the family once.
        if !s.starts_with("meta") || !m.starts_with("meta") {
            s += &m;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(source: Option<&str>, destination: Option<&str>) -> PeeringRule {
        PeeringRule {
            source: source.map(|s| s.parse().expect("net")),
            destination: destination.map(|s| s.parse().expect("net")),
            protocol: kawaii_model::valid::Protocol::Tcp,
            ports: kawaii_model::PortSet::parse("443").expect("ports"),
            index: 0,
        }
    }

    #[test]
    fn a_rule_matches_its_family_or_both() {
        assert_eq!(matches(&rule(None, None)), "");
        assert_eq!(
            matches(&rule(Some("2001:db8:2::10/128"), None)),
            "ip6 saddr 2001:db8:2::10/128 "
        );
        assert_eq!(
            matches(&rule(Some("10.2.0.0/24"), Some("10.1.0.10/32"))),
            "ip saddr 10.2.0.0/24 ip daddr 10.1.0.10/32 "
        );
        assert_eq!(
            matches(&rule(Some("::/0"), Some("::/0"))),
            "meta nfproto ipv6 "
        );
        assert_eq!(
            matches(&rule(Some("0.0.0.0/0"), Some("10.1.0.10/32"))),
            "meta nfproto ipv4 ip daddr 10.1.0.10/32 "
        );
    }
}
