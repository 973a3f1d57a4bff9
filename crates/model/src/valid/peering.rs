//! `[[vpc_peerings]]`: unique names, the other project's subnet and next hop, the policy with its
//! exception rules, and consent (`mutual` needs a shared hello key of at least 16 characters).

use super::firewall::{PeerRuleSpec, peer_rules};
use super::primitives::{Policy, alias, cidr, ipv4, name, policy, unique};
use crate::error::Errors;
use crate::secret::Secret;
use crate::spec::{Gateway, VpcPeering};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

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
    pub policy: Policy,
    pub consent: Consent,
    /// The hello key (present exactly when consent is mutual).
    pub consent_key: Option<Secret>,
    pub ingress_rules: Vec<PeerRuleSpec>,
    pub egress_rules: Vec<PeerRuleSpec>,
    /// How our private subnet appears to this peer (1:1 prefix translation); None: as it is.
    pub local_alias: Option<Ipv4Net>,
}

pub(super) fn check_peerings(g: &Gateway, e: &mut Errors) -> Vec<PeeringSpec> {
    let mut vpc_peerings = Vec::new();
    unique(
        e,
        "vpc_peerings",
        g.vpc_peerings.iter().map(|v| v.name.as_str()),
        "name",
    );
    for (i, v) in g.vpc_peerings.iter().enumerate() {
        let p = format!("vpc_peerings[{i}]");
        if let Some(v) = check_peering(v, &p, e) {
            vpc_peerings.push(v);
        }
    }
    vpc_peerings
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
    let ingress_rules = peer_rules(&v.ingress_rules, &format!("{p}.ingress_rules"), e);
    let egress_rules = peer_rules(&v.egress_rules, &format!("{p}.egress_rules"), e);
    let local_alias = alias(v.local_alias.as_deref(), &format!("{p}.local_alias"), e)?;
    Some(PeeringSpec {
        name: v.name.clone(),
        subnet: subnet?,
        via: via?,
        policy: policy?,
        consent: consent?,
        consent_key,
        ingress_rules,
        egress_rules,
        local_alias,
    })
}
