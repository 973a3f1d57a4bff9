//! Validation: the operator's document in, the typed desired state out, or every error at once,
//! each with its field path (`ipsec[0].phase1_dh_group_number`) and a reason.
//!
//! One module per capability, checked in document order; this module runs them in turn, checks
//! what spans capabilities (overlapping subnets) and assembles [`Desired`].

mod api;
mod firewall;
mod gateway;
mod ingress;
mod ipsec;
mod ipsec_net;
mod overlap6;
mod peering;
mod pipes;
mod primitives;
mod router;
mod store;
mod wireguard;
mod wireguard6;

pub use api::{ApiLimits, ApiSpec, ApiTls, DEFAULT_READY_TIMEOUT, Role, TokenSpec, sha256_hex};
pub use firewall::{NatForward, NetRule, PeerRule6, PeerRuleSpec, PeeringRule, Rule};
pub use gateway::{
    DEFAULT_ADVERT_INTERVAL_CS, DEFAULT_LINK_LOCAL_VIP6, DEFAULT_VRID_BASE, HaSpec, ZoneSpec,
};
pub use ingress::{DEFAULT_PUBLIC_CONNTRACK_PERCENT, IngressSpec, Limits, Rate, RateUnit};
pub use ipsec::{
    DH_GROUPS, DpdAction, Encryption, Integrity, IpsecSpec, Phase, PskSource, StartAction,
};
pub use peering::{Consent, PeeringSpec};
pub use pipes::PipeSpec;
pub use primitives::{
    Policy, Protocol, RuleNet, cidr, cidr6, domain, host_port, is_link_local, map_net, nets_overlap,
};
pub use router::{Balance, HealthCheck, ProxyProtocol, RouteSpec, RouterSpec};
pub use store::StoreSpec;
pub use wireguard::free_addresses4;
pub use wireguard::{KeySource, WgPeerSpec, WireGuardSpec, wg_key};
pub use wireguard6::{free_addresses, is_unique_local};

use crate::error::{Errors, FieldError, Invalid};
use crate::spec::Gateway;
use ipnet::{Ipv4Net, Ipv6Net};

/// The typed desired state: what the planner consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub private_subnet: Option<Ipv4Net>,
    /// The routed IPv6 prefix of the private side (no NAT66).
    pub private_subnet6: Option<Ipv6Net>,
    /// Router advertisements carry `private_subnet6` for SLAAC.
    pub slaac: bool,
    pub egress_policy: Policy,
    pub api: ApiSpec,
    pub zones: Vec<ZoneSpec>,
    pub ingress_rules: Vec<Rule>,
    /// `[ingress]` and the ingress rules' per-source limits.
    pub ingress: IngressSpec,
    pub egress_rules: Vec<Rule>,
    pub nat_rules: Vec<NatForward>,
    pub vpc_peerings: Vec<PeeringSpec>,
    pub ipsec: Vec<IpsecSpec>,
    pub wireguard: Option<WireGuardSpec>,
    pub pipes: Vec<PipeSpec>,
    pub routes: Vec<RouteSpec>,
    pub router: RouterSpec,
    /// None: no VRRP (one zone, no `[ha]`): the zone's VIPs are always held.
    pub ha: Option<HaSpec>,
    pub store: StoreSpec,
}

/// A valid document's typed form and the warnings it earned.
#[derive(Debug, Clone)]
pub struct Report {
    pub desired: Desired,
    pub warnings: Vec<FieldError>,
}

/// Checks every field of `g`; returns the typed state or all errors at once.
pub fn validate(g: &Gateway) -> Result<Report, Invalid> {
    let mut e = Errors::default();
    let desired = check_gateway(g, &mut e);
    match desired {
        Some(desired) if e.list.is_empty() => Ok(Report {
            desired,
            warnings: e.warnings,
        }),
        _ => {
            if e.list.is_empty() {
                e.push("(document)", "is invalid");
            }
            Err(Invalid(e.list))
        }
    }
}

fn check_gateway(g: &Gateway, e: &mut Errors) -> Option<Desired> {
    if g.gateway.name.trim().is_empty() {
        e.push("gateway.name", "must not be empty");
    }
    let private_subnet = g
        .gateway
        .private_subnet
        .as_deref()
        .and_then(|s| e.check("gateway.private_subnet", cidr(s)));
    let private_subnet6 = g
        .gateway
        .private_subnet6
        .as_deref()
        .and_then(|s| e.check("gateway.private_subnet6", cidr6(s)));
    if let Some(n) = private_subnet6
        && (is_link_local(n.network()) || n.network().is_multicast())
    {
        e.push(
            "gateway.private_subnet6",
            format!("{n} is not a global prefix"),
        );
    }
    match (g.gateway.slaac, private_subnet6) {
        (true, Some(n)) if n.prefix_len() != 64 => e.push(
            "gateway.slaac",
            format!(
                "needs a /64 private_subnet6 (SLAAC addresses are 64-bit interface ids), not /{}",
                n.prefix_len()
            ),
        ),
        (true, None) if g.gateway.private_subnet6.is_none() => {
            e.push("gateway.slaac", "needs gateway.private_subnet6")
        }
        _ => {}
    }
    let egress_policy = e.check(
        "gateway.egress_policy",
        primitives::policy(&g.gateway.egress_policy),
    );
    let api = api::check_api(&g.api, e);
    let (zones, ha) = gateway::check_zones(g, private_subnet, private_subnet6, e);
    let (ingress_rules, egress_rules) = firewall::check_filters(g, e);
    let ingress = ingress::check_ingress(g, e);
    let nat_rules = firewall::check_nat(g, private_subnet, private_subnet6, &ingress_rules, e);
    let vpc_peerings = peering::check_peerings(g, private_subnet6, e);
    let ipsec = ipsec::check_ipsecs(g, &zones, private_subnet6, e);
    let wireguard = g
        .wireguard
        .as_ref()
        .and_then(|w| wireguard::check_wireguard(w, g.zones.is_empty(), e));
    check_overlaps(private_subnet, wireguard.as_ref(), &vpc_peerings, &ipsec, e);
    overlap6::check_between(
        private_subnet6,
        wireguard.as_ref(),
        &vpc_peerings,
        &ipsec,
        e,
    );
    let pipes = pipes::check_pipes(g, wireguard.as_ref(), e);
    let (routes, router) = router::check_routing(g, &nat_rules, e);
    let store = store::check_store(g, e);

    Some(Desired {
        name: g.gateway.name.clone(),
        private_subnet,
        private_subnet6,
        slaac: g.gateway.slaac,
        egress_policy: egress_policy?,
        api: api?,
        zones,
        ingress_rules,
        ingress,
        egress_rules,
        nat_rules,
        vpc_peerings,
        ipsec,
        wireguard,
        pipes,
        routes,
        router: router?,
        ha,
        store: store?,
    })
}

/// Subnets reachable through the gateway must not overlap each other: the private subnet, the
/// VPN subnet, the peerings' and the IPsec connections' remote subnets as our hosts see them
/// (a remote alias, or the subnet itself), and the local aliases our peers see us as. An
/// overlap with a peer that has no alias suggests one.
fn check_overlaps(
    private_subnet: Option<Ipv4Net>,
    wireguard: Option<&WireGuardSpec>,
    vpc_peerings: &[PeeringSpec],
    ipsec: &[IpsecSpec],
    e: &mut Errors,
) {
    const PEERING_HINT: &str = "; if the two networks really overlap, peer through aliases: set \
        local_alias (how our subnet appears to this peer, as long as it) on both sides and write \
        the other side's local_alias as subnet";
    const IPSEC_HINT: &str = "; if the two networks really overlap, set remote_alias (how the \
        office's subnet appears to our hosts) and, where the office must see us elsewhere, \
        local_alias";
    // (path, prefix, hint when this entry is the one to alias)
    let mut nets: Vec<(String, Ipv4Net, &str)> = Vec::new();
    if let Some(n) = private_subnet {
        nets.push(("gateway.private_subnet".into(), n, ""));
    }
    if let Some(w) = wireguard {
        nets.push(("wireguard.address".into(), w.address.trunc(), ""));
    }
    let mut local_aliases = Vec::new();
    for (i, v) in vpc_peerings.iter().enumerate() {
        let hint = if v.local_alias.is_none() {
            PEERING_HINT
        } else {
            ""
        };
        nets.push((format!("vpc_peerings[{i}].subnet"), v.subnet, hint));
        if let Some(a) = v.local_alias {
            local_aliases.push((format!("vpc_peerings[{i}].local_alias"), a));
        }
    }
    for (i, c) in ipsec.iter().enumerate() {
        match (c.remote_alias, c.remote_subnet) {
            (Some(a), _) => nets.push((format!("ipsec[{i}].remote_alias"), a, "")),
            (None, Some(r)) => nets.push((format!("ipsec[{i}].remote_subnet"), r, IPSEC_HINT)),
            (None, None) => {}
        }
        if let Some(a) = c.local_alias {
            local_aliases.push((format!("ipsec[{i}].local_alias"), a));
        }
    }
    for (pa, a) in &local_aliases {
        match private_subnet {
            Some(p) if p.prefix_len() != a.prefix_len() => e.push(
                pa.clone(),
                format!(
                    "{a} must be as long as gateway.private_subnet ({p}): the translation is 1:1, address by address"
                ),
            ),
            Some(_) => {}
            None => e.push(pa.clone(), "needs gateway.private_subnet (the subnet it stands for)"),
        }
    }
    nets.extend(local_aliases.into_iter().map(|(p, a)| (p, a, "")));
    for (i, (pa, a, hint)) in nets.iter().enumerate() {
        for (pb, b, _) in &nets[..i] {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                e.push(pa.clone(), format!("{a} overlaps {b} ({pb}){hint}"));
            }
        }
    }
    check_tunnel_subnets(private_subnet, wireguard, ipsec, e);
}

/// The real subnets of aliased offices: they are routed into the tunnel, so they must not
/// overlap the VPN's subnet (kernel-libipsec routes by destination, before the translation
/// could tell them apart); one on our own private subnet is steered by a mark instead and needs
/// a local alias. Offices that overlap each other need distinct traffic selectors, so at most
/// one of them may show the office our private subnet as it is.
fn check_tunnel_subnets(
    private_subnet: Option<Ipv4Net>,
    wireguard: Option<&WireGuardSpec>,
    ipsec: &[IpsecSpec],
    e: &mut Errors,
) {
    let overlap = nets_overlap;
    for (i, c) in ipsec.iter().enumerate() {
        // Aliases translate IPv4 only: an IPv6-only office has none.
        let Some(c_subnet) = c.remote_subnet else {
            continue;
        };
        for (j, d) in ipsec[..i].iter().enumerate() {
            let Some(d_subnet) = d.remote_subnet else {
                continue;
            };
            // Without any remote alias the overlap is already reported as such.
            let aliased = c.remote_alias.is_some() || d.remote_alias.is_some();
            if aliased
                && overlap(&c_subnet, &d_subnet)
                && c.local_alias.is_none()
                && d.local_alias.is_none()
            {
                e.push(
                    format!("ipsec[{i}].local_alias"),
                    format!(
                        "is required: remote_subnet {} overlaps ipsec[{j}].remote_subnet ({}), \
                         and the two tunnels need distinct traffic selectors; give one of them \
                         a local_alias",
                        c_subnet, d_subnet
                    ),
                );
            }
        }
        if c.remote_alias.is_none() {
            continue;
        }
        // An office on our own private subnet (a twin) is steered by a mark (plan/twin.rs);
        // the two traffic selectors must differ: the office sees us under our local alias.
        if let Some(p) = private_subnet.filter(|p| overlap(&c_subnet, p))
            && c.local_alias.is_none()
        {
            e.push(
                format!("ipsec[{i}].local_alias"),
                format!(
                    "is required: remote_subnet {c_subnet} overlaps {p} (gateway.private_subnet), \
                     so the office must see our hosts under an alias (and ours see it under \
                     remote_alias)"
                ),
            );
        }
        let ours = [wireguard.map(|w| ("wireguard.address", w.address.trunc()))];
        for (pb, b) in ours.into_iter().flatten() {
            if overlap(&c_subnet, &b) {
                e.push(
                    format!("ipsec[{i}].remote_subnet"),
                    format!(
                        "{c_subnet} overlaps {b} ({pb}): an office's real subnet is routed into the tunnel, \
                         so it cannot be one the gateway routes itself, even with remote_alias \
                         (see docs/ipsec.md, overlapping networks)"
                    ),
                );
            }
        }
    }
}
