//! IPv6 is routed, never translated (no NAT66, aliases are IPv4 only): the prefixes the gateway
//! routes to different places must be distinct. Each capability checks its own prefixes against
//! one another and against `private_subnet6` (`peering.rs`, `ipsec_net.rs`); this is what lies
//! between capabilities: the VPN's IPv6 subnet against ours, and the VPN's, the peers' and the
//! offices' IPv6 subnets against each other.

use super::{IpsecSpec, PeeringSpec, WireGuardSpec};
use crate::error::Errors;
use ipnet::Ipv6Net;

/// Where a prefix comes from: overlaps within one capability are its own check's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Private,
    Vpn,
    Peering,
    Office,
}

pub(super) fn check_between(
    private_subnet6: Option<Ipv6Net>,
    wireguard: Option<&WireGuardSpec>,
    peerings: &[PeeringSpec],
    ipsec: &[IpsecSpec],
    e: &mut Errors,
) {
    let mut nets: Vec<(Kind, String, Ipv6Net)> = Vec::new();
    if let Some(n) = private_subnet6 {
        nets.push((Kind::Private, "gateway.private_subnet6".into(), n));
    }
    if let Some(n) = wireguard.and_then(|w| w.address6) {
        nets.push((Kind::Vpn, "wireguard.address6".into(), n.trunc()));
    }
    for (i, p) in peerings.iter().enumerate() {
        if let Some(n) = p.subnet6 {
            nets.push((Kind::Peering, format!("vpc_peerings[{i}].subnet6"), n));
        }
    }
    for (i, c) in ipsec.iter().enumerate() {
        if let Some(n) = c.remote_subnet6 {
            nets.push((Kind::Office, format!("ipsec[{i}].remote_subnet"), n));
        }
    }
    for (k, (ka, pa, a)) in nets.iter().enumerate() {
        for (kb, pb, b) in &nets[..k] {
            let checked_elsewhere = ka == kb || (*kb == Kind::Private && *ka != Kind::Vpn);
            if !checked_elsewhere && (a.contains(&b.network()) || b.contains(&a.network())) {
                e.push(
                    pa.clone(),
                    format!(
                        "{a} overlaps {b} ({pb}): IPv6 is routed, never translated (no NAT66), \
                         so the gateway could not tell where to send it; use distinct prefixes"
                    ),
                );
            }
        }
    }
}
