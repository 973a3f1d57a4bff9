//! The VPN peers' forwarding rules, per family: from a peer's own addresses only, into the
//! private subnet (or what its ingress rules allow). A full-tunnel peer's IPv4 Internet traffic is
//! masqueraded to the zone's VIP; its IPv6 is routed (no NAT66) and only from a global VPN prefix,
//! filtered by `egress6` like the private subnet's. An ingress rule that names a network of one
//! family applies to that family only; one that names none applies to both families.

use crate::nft::quote;
use crate::opening::Opening;
use ipnet::{Ipv4Net, Ipv6Net};
use kawaii_model::Desired;
use kawaii_model::valid::WgPeerSpec;
use kawaii_model::valid::{WireGuardSpec, is_unique_local};
use std::fmt::Display;

/// What the VPN adds to the `forward` chain and to source NAT.
#[derive(Debug, Default)]
pub(crate) struct VpnForward {
    pub rules: Vec<String>,
    /// Full-tunnel peers' IPv4 sources (an nft set) and rule id, masqueraded like the private
    /// subnet.
    pub snat: Vec<(String, String)>,
    /// Some full-tunnel peer's IPv6 goes out through `egress6`.
    pub egress6: bool,
}

/// One network, or an anonymous set of several.
fn set<T: Display>(nets: &[T]) -> String {
    match nets {
        [one] => one.to_string(),
        many => {
            let items: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

/// Whether full-tunnel peers' IPv6 can be routed to the Internet: the VPN's IPv6 subnet is
/// global (a unique local one is not routed back, and there is no NAT66).
pub fn routed_internet6(w: &WireGuardSpec) -> bool {
    w.address6.is_some_and(|a| !is_unique_local(a.network()))
}

/// The VPN's forwarding rules; `wan` is the quoted public interface, `private` and `private6`
/// the private subnets.
pub(crate) fn forward(
    d: &Desired,
    wan: &str,
    private: Ipv4Net,
    private6: Option<Ipv6Net>,
) -> VpnForward {
    let mut out = VpnForward::default();
    let Some(w) = &d.wireguard else {
        return out;
    };
    let wg = quote(&w.interface);
    let from_wg = format!("iifname {wg} ");
    for p in &w.peers {
        let name = crate::ipsec_id(&p.name);
        let routed = p.routed();
        if !routed.is_empty() {
            let id = format!("vpn-{name}");
            let src = set(&routed);
            let opening = Opening {
                match_in: &from_wg,
                family: "ip",
                src: &src,
                id: &id,
            };
            out.rules
                .extend(opening.rules(private, p.open_to_private(), &p.ingress_rules));
            if p.allow_internet {
                out.rules.push(format!(
                    "iifname {wg} ip saddr {src} oifname {wan} jump egress"
                ));
                out.snat.push((src, id));
            }
        }
        let routed6 = p.routed6();
        if routed6.is_empty() {
            continue;
        }
        let id = format!("vpn6-{name}");
        let src = set(&routed6);
        if let Some(private6) = private6 {
            let opening = Opening {
                match_in: &from_wg,
                family: "ip6",
                src: &src,
                id: &id,
            };
            out.rules
                .extend(opening.rules(private6, p.open_to_private(), &p.ingress_rules6));
        }
        if p.allow_internet && routed_internet6(w) {
            out.rules.push(format!(
                "iifname {wg} ip6 saddr {src} oifname {wan} jump egress6"
            ));
            out.egress6 = true;
        }
    }
    out
}

/// HA, IPv6: answers of private hosts to VPN peers whose session is on a sibling, routed back
/// out of the private interface (`lan`, quoted) to it; see `vpn-via-sibling` for IPv4.
pub(crate) fn via_sibling6(w: &WireGuardSpec, lan: &str) -> Option<String> {
    let mut vpn: Vec<Ipv6Net> = w.address6.map(|a| a.trunc()).into_iter().collect();
    vpn.extend(w.peers.iter().flat_map(WgPeerSpec::routed6));
    // An anonymous interval set refuses overlapping elements.
    let vpn = Ipv6Net::aggregate(&vpn);
    (!vpn.is_empty()).then(|| {
        format!(
            "iifname {lan} oifname {lan} ip6 daddr {} counter accept comment \"vpn6-via-sibling\"",
            set(&vpn)
        )
    })
}
