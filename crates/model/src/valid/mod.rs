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
mod peering;
mod pipes;
mod primitives;
mod router;
mod store;
mod wireguard;

pub use api::{ApiLimits, ApiSpec, ApiTls, Role, TokenSpec, sha256_hex};
pub use firewall::{NatForward, PeerRuleSpec, Rule};
pub use gateway::{DEFAULT_ADVERT_INTERVAL_CS, DEFAULT_VRID_BASE, HaSpec, ZoneSpec};
pub use ingress::{DEFAULT_PUBLIC_CONNTRACK_PERCENT, IngressSpec, Limits, Rate, RateUnit};
pub use ipsec::{
    DH_GROUPS, DpdAction, Encryption, Integrity, IpsecSpec, Phase, PskSource, StartAction,
};
pub use peering::{Consent, PeeringSpec};
pub use pipes::PipeSpec;
pub use primitives::{Policy, Protocol, cidr, domain, host_port};
pub use router::{Balance, HealthCheck, ProxyProtocol, RouteSpec, RouterSpec};
pub use store::StoreSpec;
pub use wireguard::{KeySource, WgPeerSpec, WireGuardSpec, wg_key};

use crate::error::{Errors, FieldError, Invalid};
use crate::spec::Gateway;
use ipnet::Ipv4Net;

/// The typed desired state: what the planner consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub private_subnet: Option<Ipv4Net>,
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
    let egress_policy = e.check(
        "gateway.egress_policy",
        primitives::policy(&g.gateway.egress_policy),
    );
    let api = api::check_api(&g.api, e);
    let (zones, ha) = gateway::check_zones(g, private_subnet, e);
    let (ingress_rules, egress_rules) = firewall::check_filters(g, e);
    let ingress = ingress::check_ingress(g, e);
    let nat_rules = firewall::check_nat(g, private_subnet, &ingress_rules, e);
    let vpc_peerings = peering::check_peerings(g, e);
    let ipsec = ipsec::check_ipsecs(g, &zones, e);
    let wireguard = g
        .wireguard
        .as_ref()
        .and_then(|w| wireguard::check_wireguard(w, g.zones.is_empty(), e));
    check_overlaps(private_subnet, wireguard.as_ref(), &vpc_peerings, &ipsec, e);
    let pipes = pipes::check_pipes(g, wireguard.as_ref(), e);
    let (routes, router) = router::check_routing(g, &nat_rules, e);
    let store = store::check_store(g, e);

    Some(Desired {
        name: g.gateway.name.clone(),
        private_subnet,
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
/// VPN subnet, the peerings' and the IPsec connections' remote subnets.
fn check_overlaps(
    private_subnet: Option<Ipv4Net>,
    wireguard: Option<&WireGuardSpec>,
    vpc_peerings: &[PeeringSpec],
    ipsec: &[IpsecSpec],
    e: &mut Errors,
) {
    let mut nets: Vec<(String, Ipv4Net)> = Vec::new();
    if let Some(n) = private_subnet {
        nets.push(("gateway.private_subnet".into(), n));
    }
    if let Some(w) = wireguard {
        nets.push(("wireguard.address".into(), w.address.trunc()));
    }
    for (i, v) in vpc_peerings.iter().enumerate() {
        nets.push((format!("vpc_peerings[{i}].subnet"), v.subnet));
    }
    for (i, c) in ipsec.iter().enumerate() {
        nets.push((format!("ipsec[{i}].remote_subnet"), c.remote_subnet));
    }
    for (i, (pa, a)) in nets.iter().enumerate() {
        for (pb, b) in &nets[..i] {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                e.push(pa.clone(), format!("{a} overlaps {b} ({pb})"));
            }
        }
    }
}
