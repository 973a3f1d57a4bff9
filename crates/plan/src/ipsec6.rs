//! The IPv6 share of the IPsec connections in the `inet kawaii` table: IKE and ESP accepted on
//! the home zone's `public_vip6` from an IPv6 `remote_peer` only, and the office's IPv6 subnet
//! forwarded to and from `private_subnet6`, routed (no NAT66), the office's side limited by the
//! connection's rules that apply to IPv6. A packet claiming an office source that arrives on the
//! public interface outside any SA is dropped: the private prefix is routed from the Internet,
//! so without this a forged source would pass as tunnel traffic.

use crate::nft::Chain;
use crate::opening::Site;
use ipnet::Ipv6Net;
use kawaii_model::Desired;
use kawaii_model::valid::IpsecSpec;
use std::net::IpAddr;

/// The `services` rules of the connections with an IPv6 peer.
pub fn services(d: &Desired, services: &mut Chain) {
    for c in &d.ipsec {
        let IpAddr::V6(peer) = c.remote_peer else {
            continue;
        };
        let Some(vip6) = crate::ipsec::home(d, c).and_then(|h| h.public_vip6) else {
            continue;
        };
        let id = crate::ipsec_id(&c.name);
        let lead = format!("ip6 saddr {peer} ip6 daddr {}", vip6.addr());
        services.rule(format!(
            "{lead} udp dport {{ 500, 4500 }} counter accept comment \"ipsec-{id}-ike\""
        ));
        services.rule(format!(
            "{lead} meta l4proto esp counter accept comment \"ipsec-{id}-esp\""
        ));
    }
}

/// The `forward` rules of the connections with an IPv6 subnet, given the routed prefix
/// `private6` and the quoted public interface `wan`.
pub fn forward(d: &Desired, private6: Option<Ipv6Net>, wan: &str, forward: &mut Chain) {
    let Some(p6) = private6 else { return };
    for c in &d.ipsec {
        if let Some(r6) = c.remote_subnet6 {
            tunnel(c, p6, r6, wan, forward);
        }
    }
}

fn tunnel(c: &IpsecSpec, p6: Ipv6Net, r6: Ipv6Net, wan: &str, forward: &mut Chain) {
    let id = crate::ipsec_id(&c.name);
    // Decapsulated traffic comes from the TUN device (kernel-libipsec) or carries a secpath
    // (XFRM); from the public interface without one it is forged.
    forward.rule(format!(
        "iifname {wan} meta secpath missing ip6 saddr {r6} counter drop comment \"ipsec-{id}-forged6\""
    ));
    let site = Site {
        family: "ip6",
        sfx: "6",
        id: &id,
        wan,
        private: p6,
        remote: r6,
    };
    forward
        .rules
        .extend(site.rules(c.ingress_open(), &c.ingress_rules6));
}

#[cfg(test)]
mod tests {
    use crate::{Observed, plan_with};

    /// The dual-stack HA case with its office over IPv6: the node that holds zone-a runs the
    /// tunnel from zone-a's public_vip6; the other routes the office's prefix to zone-a's
    /// private_vip6 (it follows the tunnel on failover).
    #[test]
    fn a_tunnel_held_elsewhere_is_routed_to_its_zone_over_ipv6() {
        let text = include_str!("../testdata/ha/two-zones-dual-stack/config.toml").replace(
            "remote_peer = \"198.51.100.8\"\nremote_subnet = \"172.16.1.0/24\"",
            "remote_peer = \"2001:db8:5::8\"\nremote_subnet = \"172.16.1.0/24, 2001:db8:a1::/64\"",
        );
        let g = kawaii_model::Gateway::parse(&text, kawaii_model::Format::Toml).expect("parses");
        let d = kawaii_model::validate(&g).expect("valid").desired;
        let held = |zones: &[&str]| Observed {
            vip_zones: Some(zones.iter().map(|z| z.to_string()).collect()),
            ..Observed::default()
        };
        let own = plan_with(&d, Some("zone-b"), &held(&["zone-b"])).expect("plan");
        let routes = own.net.render();
        assert!(own.ipsec.is_empty());
        assert!(
            routes.contains("route 2001:db8:a1::/64 via 2001:db8:1::1 dev lan0\n")
                && routes.contains("route 172.16.1.0/24 via 10.1.0.1 dev lan0\n"),
            "{routes}"
        );
        let both = plan_with(&d, Some("zone-b"), &held(&["zone-a", "zone-b"])).expect("plan");
        assert_eq!(both.ipsec.len(), 1);
        assert_eq!(
            both.ipsec[0].local_addrs,
            vec!["2001:db8:ff::10".parse::<std::net::IpAddr>().expect("ip")]
        );
        assert!(!both.net.render().contains("2001:db8:a1::/64 via"));

        // The two families' virtual routers elect apart: the tunnel (over IPv6) follows
        // zone-a's IPv6 VIP, not its IPv4 one, and so do the routes to the office's prefixes.
        let split = |v4: &[&str], v6: &[&str]| Observed {
            vip6_zones: held(v6).vip_zones,
            ..held(v4)
        };
        let v4_only = plan_with(
            &d,
            Some("zone-b"),
            &split(&["zone-a", "zone-b"], &["zone-b"]),
        )
        .expect("plan");
        assert!(v4_only.ipsec.is_empty(), "zone-a's IPv6 VIP is elsewhere");
        assert!(
            v4_only
                .net
                .render()
                .contains("route 2001:db8:a1::/64 via 2001:db8:1::1 dev lan0\n")
        );
        let v6_only = plan_with(
            &d,
            Some("zone-b"),
            &split(&["zone-b"], &["zone-a", "zone-b"]),
        )
        .expect("plan");
        assert_eq!(v6_only.ipsec.len(), 1, "this node holds zone-a's IPv6 VIP");
        assert!(!v6_only.net.render().contains("2001:db8:a1::/64 via"));
    }
}
