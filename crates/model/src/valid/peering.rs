//! `[[vpc_peerings]]`: unique names, the other project's subnet and next hop, the policy with its
//! exception rules, and consent (`mutual` needs a shared hello key of at least 16 characters).
//! A dual-stack peer adds its IPv6 subnet and backbone address (`subnet6` + `via6`, both or
//! neither), routed as they are: IPv6 subnets must not overlap ours, as aliases are IPv4 only.
//! A rule names one family's networks, or none and then applies to both.

use super::RuleNet;
use super::firewall::PeeringRule;
use super::primitives::{
    Policy, alias, cidr, ipv4, ipv6, is_link_local, name, policy, protocol, rule_net, unique,
};
use crate::error::Errors;
use crate::ports::PortSet;
use crate::secret::Secret;
use crate::spec::{Gateway, PeerRule, VpcPeering};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Mutual,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringSpec {
    pub name: String,
    pub subnet: Ipv4Net,
    pub via: Ipv4Addr,
    /// Dual stack: the peer's IPv6 subnet (routed, no NAT66), reached through `via6`.
    pub subnet6: Option<Ipv6Net>,
    pub via6: Option<Ipv6Addr>,
    pub policy: Policy,
    pub consent: Consent,
    /// The hello key (present exactly when consent is mutual).
    pub consent_key: Option<Secret>,
    pub ingress_rules: Vec<PeeringRule>,
    pub egress_rules: Vec<PeeringRule>,
    /// How our private subnet appears to this peer (1:1 prefix translation); None: as it is.
    pub local_alias: Option<Ipv4Net>,
}

pub(super) fn check_peerings(
    g: &Gateway,
    private_subnet6: Option<Ipv6Net>,
    e: &mut Errors,
) -> Vec<PeeringSpec> {
    let mut vpc_peerings = Vec::new();
    unique(
        e,
        "vpc_peerings",
        g.vpc_peerings.iter().map(|v| v.name.as_str()),
        "name",
    );
    for (i, v) in g.vpc_peerings.iter().enumerate() {
        let p = format!("vpc_peerings[{i}]");
        let v4 = check_peering(v, &p, e);
        if let (Some(mut v), Some((subnet6, via6))) = (v4, check_v6(g, v, &p, e)) {
            v.subnet6 = subnet6;
            v.via6 = via6;
            vpc_peerings.push(v);
        }
    }
    check_overlaps6(private_subnet6, &vpc_peerings, e);
    vpc_peerings
}

/// The IPv6 side of a peering: `subnet6` and `via6` together, a global next hop, our own
/// IPv6 prefix declared, no IPv6 alias; IPv6 rules only where there is an IPv6 subnet.
/// None when something is wrong (the error pushed).
#[allow(clippy::type_complexity)]
fn check_v6(
    g: &Gateway,
    v: &VpcPeering,
    p: &str,
    e: &mut Errors,
) -> Option<(Option<Ipv6Net>, Option<Ipv6Addr>)> {
    let before = e.list.len();
    let subnet6 = v.subnet6.as_deref().and_then(|s| {
        let n = e.check(format!("{p}.subnet6"), super::cidr6(s))?;
        if n.network().is_multicast() || is_link_local(n.network()) {
            e.push(
                format!("{p}.subnet6"),
                format!("{n} is not a global prefix"),
            );
        }
        Some(n)
    });
    let via6 = v.via6.as_deref().and_then(|s| {
        let a = e.check(format!("{p}.via6"), ipv6(s))?;
        if is_link_local(a) || a.is_multicast() || a.is_unspecified() || a.is_loopback() {
            e.push(
                format!("{p}.via6"),
                format!("{a} is not a global address; the next hop is the peer's gateway on the IPv6 backbone"),
            );
        }
        Some(a)
    });
    match (&v.subnet6, &v.via6) {
        (Some(_), None) => e.push(
            format!("{p}.via6"),
            "is required with subnet6: the peer's gateway on the IPv6 backbone",
        ),
        (None, Some(_)) => e.push(
            format!("{p}.subnet6"),
            "is required with via6: the peer's IPv6 subnet",
        ),
        (Some(_), Some(_)) if g.gateway.private_subnet6.is_none() => e.push(
            format!("{p}.subnet6"),
            "needs gateway.private_subnet6 (our IPv6 subnet, the other end of the peering)",
        ),
        _ => {}
    }
    if let Some(a) = v.local_alias.as_deref().filter(|a| a.contains(':')) {
        e.push(
            format!("{p}.local_alias"),
            format!(
                "{a:?} is IPv6: aliases are IPv4 prefix translation; IPv6 subnets are routed as \
                 they are (no NAT66), so IPv6 peers cannot overlap and need no alias"
            ),
        );
    }
    (e.list.len() == before).then_some((subnet6, via6))
}

/// IPv6 subnets are routed as they are: a peer's must overlap neither ours nor another's.
fn check_overlaps6(private_subnet6: Option<Ipv6Net>, peerings: &[PeeringSpec], e: &mut Errors) {
    let mut nets: Vec<(String, Ipv6Net)> = Vec::new();
    if let Some(n) = private_subnet6 {
        nets.push(("gateway.private_subnet6".into(), n));
    }
    for (i, v) in peerings.iter().enumerate() {
        let Some(n) = v.subnet6 else { continue };
        if let Some((pb, b)) = nets
            .iter()
            .find(|(_, b)| n.contains(&b.network()) || b.contains(&n.network()))
        {
            e.push(
                format!("vpc_peerings[{i}].subnet6"),
                format!(
                    "{n} overlaps {b} ({pb}); IPv6 subnets are routed as they are (no NAT66, \
                     aliases are IPv4 only), so they must be distinct"
                ),
            );
        }
        nets.push((format!("vpc_peerings[{i}].subnet6"), n));
    }
}

/// The rules of a peering at `p[i]`: each network IPv4 or IPv6, both of one family.
/// IPv6 networks only where the peering has an IPv6 subnet (`has6`).
fn peering_rules(rules: &[PeerRule], p: &str, has6: bool, e: &mut Errors) -> Vec<PeeringRule> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let p = format!("{p}[{i}]");
        let net = |e: &mut Errors, field: &str, s: &Option<String>| match s.as_deref() {
            None => Some(None),
            Some(s) => match e.check(format!("{p}.{field}"), rule_net(Some(s)))? {
                RuleNet::V4(n) => Some(Some(IpNet::V4(n))),
                RuleNet::V6(n) => Some(Some(IpNet::V6(n))),
                RuleNet::Any => Some(None),
            },
        };
        let source = net(e, "source", &r.source);
        let destination = net(e, "destination", &r.destination);
        let proto = e.check(format!("{p}.protocol"), protocol(&r.protocol));
        let ports = e.check(format!("{p}.ports"), PortSet::parse(&r.ports));
        if let (Some(Some(s)), Some(Some(d))) = (source, destination)
            && s.addr().is_ipv4() != d.addr().is_ipv4()
        {
            e.push(
                format!("{p}.destination"),
                format!("{d} and source {s} are of different families"),
            );
            continue;
        }
        let mut ok = true;
        for (field, n) in [("source", source), ("destination", destination)] {
            if !has6 && matches!(n, Some(Some(IpNet::V6(_)))) {
                e.push(
                    format!("{p}.{field}"),
                    "is IPv6 but the peering has no subnet6",
                );
                ok = false;
            }
        }
        if let (true, Some(source), Some(destination), Some(protocol), Some(ports)) =
            (ok, source, destination, proto, ports)
        {
            out.push(PeeringRule {
                source,
                destination,
                protocol,
                ports,
                index: i,
            });
        }
    }
    out
}

fn check_peering(v: &VpcPeering, p: &str, e: &mut Errors) -> Option<PeeringSpec> {
    name(&v.name, &format!("{p}.name"), e);
    let subnet = e.check(format!("{p}.subnet"), cidr(&v.subnet));
    let via = e.check(format!("{p}.via"), ipv4(&v.via));
    let policy = e.check(format!("{p}.policy"), policy(&v.policy));
    let consent = e.check(
        format!("{p}.consent"),
        match v.consent.as_str() {
            "mutual" => Ok(Consent::Mutual),
            "none" => Ok(Consent::None),
            o => Err(format!("{o:?} is not a consent mode; use mutual or none")),
        },
    );
    let consent_key = match (consent, &v.consent_key) {
        (Some(Consent::Mutual), None) => {
            e.push(format!("{p}.consent_key"), "is required with consent = \"mutual\": both gateways share it to authenticate their hellos");
            None
        }
        (Some(Consent::Mutual), Some(k)) if k.expose().len() < 16 || k.is_placeholder() => {
            e.push(format!("{p}.consent_key"), "must be at least 16 characters");
            None
        }
        (Some(Consent::Mutual), Some(k)) => Some(k.clone()),
        (_, Some(_)) => {
            e.warn(
                format!("{p}.consent_key"),
                "is ignored with consent = \"none\"",
            );
            None
        }
        (_, None) => None,
    };
    let has6 = v.subnet6.is_some();
    let ingress_rules = peering_rules(&v.ingress_rules, &format!("{p}.ingress_rules"), has6, e);
    let egress_rules = peering_rules(&v.egress_rules, &format!("{p}.egress_rules"), has6, e);
    // An IPv6 alias is refused by check_v6, with its reason.
    let local_alias = match v.local_alias.as_deref() {
        Some(a) if a.contains(':') => None,
        a => alias(a, &format!("{p}.local_alias"), e)?,
    };
    Some(PeeringSpec {
        name: v.name.clone(),
        subnet: subnet?,
        via: via?,
        subnet6: None,
        via6: None,
        policy: policy?,
        consent: consent?,
        consent_key,
        ingress_rules,
        egress_rules,
        local_alias,
    })
}
