//! `showconf`: the configuration a VPN peer applies to reach this gateway, both inner families
//! (its IPv4 and IPv6 addresses, what it may reach in each) and the endpoints: this zone's
//! public VIP, its IPv6 VIP, and the other zones', all but one as comments.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kawaii_model::valid::{WgPeerSpec, WireGuardSpec, ZoneSpec};
use kawaii_model::{Desired, Secret};
use serde::Serialize;
use std::fmt::Write;

/// What a VPN peer needs to reach this gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerConf {
    pub name: String,
    /// The peer's own addresses (its allowed IPs, or its allocated addresses), IPv4 first.
    pub address: Vec<IpNet>,
    pub gateway_public_key: String,
    /// This zone's public VIP and the listen port (None on a node without zones).
    pub endpoint: Option<String>,
    /// The other endpoints, for a manual switch, each with what it is (`zone zone-b`, `IPv6`).
    pub other_endpoints: Vec<(String, String)>,
    /// The subnets this peer may reach through the tunnel, IPv4 first.
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
    pub preshared_key: Option<Secret>,
    /// This zone's IPv6 endpoint, if it has an IPv6 VIP (see [`PeerConf::over_ipv6`]).
    #[serde(skip)]
    endpoint6: Option<String>,
}

/// Why `showconf` cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShowconfError {
    #[error("the gateway has no [wireguard] section")]
    NoWireguard,
    #[error("no WireGuard peer {0:?}")]
    NoPeer(String),
    #[error("peer {0:?} has no address yet (it has no allowed_ips and was not committed)")]
    NoAddress(String),
    #[error("this zone has no IPv6 endpoint (no public_vip6)")]
    NoIpv6Endpoint,
}

/// The private subnets, per family (the zone's when the gateway declares none).
fn private_nets(d: &Desired) -> (Option<Ipv4Net>, Option<Ipv6Net>) {
    let v4 = d
        .private_subnet
        .or_else(|| d.zones.first().map(|z| z.private_vip.trunc()));
    let v6 = d.private_subnet6.or_else(|| {
        d.zones
            .iter()
            .find_map(|z| z.private_vip6)
            .map(|v| v.trunc())
    });
    (v4, v6)
}

/// The subnets a peer may reach: the VPN subnet and the private subnet, narrowed to its
/// ingress rules' destinations if it has some; everything with `allow_internet`. The same in
/// IPv6 for a peer with IPv6 addresses (each family narrowed by its own view of the rules), where
/// the Internet (`::/0`) is reached only from a global VPN prefix (routed, no NAT66).
fn reachable(d: &Desired, w: &WireGuardSpec, p: &WgPeerSpec) -> Vec<IpNet> {
    let (private, private6) = private_nets(d);
    let mut nets: Vec<IpNet> = Vec::new();
    if !p.routed().is_empty() {
        if p.allow_internet {
            nets.push(IpNet::V4(Ipv4Net::default()));
        } else {
            nets.push(IpNet::V4(w.address.trunc()));
            if p.open_to_private() {
                nets.extend(private.map(IpNet::V4));
            } else {
                nets.extend(
                    p.ingress_rules
                        .iter()
                        .filter_map(|r| r.destination.or(private))
                        .map(IpNet::V4),
                );
            }
        }
    }
    if !p.routed6().is_empty() {
        if p.allow_internet && super::routed_internet6(w) {
            nets.push(IpNet::V6(Ipv6Net::default()));
        } else {
            nets.extend(w.address6.map(|a| IpNet::V6(a.trunc())));
            if p.open_to_private() {
                nets.extend(private6.map(IpNet::V6));
            } else {
                nets.extend(
                    p.ingress_rules6
                        .iter()
                        .filter_map(|r| r.destination.or(private6))
                        .map(IpNet::V6),
                );
            }
        }
    }
    nets.sort();
    nets.dedup();
    nets
}

/// The configuration of peer `name` as seen from `zone` (this node's zone, if any).
pub fn peer_conf(
    d: &Desired,
    zone: Option<&ZoneSpec>,
    name: &str,
    gateway_public_key: &str,
) -> Result<PeerConf, ShowconfError> {
    let w = d.wireguard.as_ref().ok_or(ShowconfError::NoWireguard)?;
    let p = w
        .peers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ShowconfError::NoPeer(name.into()))?;
    let (routed, routed6) = (p.routed(), p.routed6());
    if routed.is_empty() && routed6.is_empty() {
        return Err(ShowconfError::NoAddress(name.into()));
    }
    // The interface's own addresses are those inside the VPN subnets (a site behind the peer
    // is routed to it, not an address of its interface).
    let subnet = w.address.trunc();
    let inside: Vec<Ipv4Net> = routed
        .iter()
        .filter(|n| subnet.contains(*n))
        .copied()
        .collect();
    let subnet6 = w.address6.map(|a| a.trunc());
    let inside6: Vec<Ipv6Net> = routed6
        .iter()
        .filter(|n| subnet6.is_some_and(|s| s.contains(*n)))
        .copied()
        .collect();
    let v4 = if inside.is_empty() { routed } else { inside };
    let v6 = if inside6.is_empty() { routed6 } else { inside6 };
    let address = v4
        .into_iter()
        .map(IpNet::V4)
        .chain(v6.into_iter().map(IpNet::V6))
        .collect();
    let port = w.listen_port;
    let endpoint_of = |z: &ZoneSpec| format!("{}:{port}", z.public_vip.addr());
    let endpoint6_of = |z: &ZoneSpec| z.public_vip6.map(|v| format!("[{}]:{port}", v.addr()));
    let home = zone.or(d.zones.first());
    let mut other_endpoints = Vec::new();
    let endpoint6 = home.and_then(endpoint6_of);
    if let Some(e) = &endpoint6 {
        other_endpoints.push(("IPv6".to_string(), e.clone()));
    }
    for z in d
        .zones
        .iter()
        .filter(|z| Some(z.name.as_str()) != home.map(|h| h.name.as_str()))
    {
        other_endpoints.push((format!("zone {}", z.name), endpoint_of(z)));
        if let Some(e) = endpoint6_of(z) {
            other_endpoints.push((format!("zone {}, IPv6", z.name), e));
        }
    }
    Ok(PeerConf {
        name: p.name.clone(),
        address,
        gateway_public_key: gateway_public_key.into(),
        endpoint: home.map(endpoint_of),
        other_endpoints,
        allowed_ips: reachable(d, w, p),
        persistent_keepalive: p.persistent_keepalive.filter(|k| *k > 0),
        preshared_key: p.preshared_key.clone(),
        endpoint6,
    })
}

impl PeerConf {
    /// The same configuration with this zone's IPv6 endpoint as `Endpoint` (the IPv4 one
    /// becomes a comment), for a peer that reaches the gateway over IPv6.
    pub fn over_ipv6(mut self) -> Result<PeerConf, ShowconfError> {
        let e6 = self
            .endpoint6
            .clone()
            .ok_or(ShowconfError::NoIpv6Endpoint)?;
        self.other_endpoints.retain(|(_, e)| *e != e6);
        if let Some(e4) = self.endpoint.replace(e6) {
            self.other_endpoints.insert(0, ("IPv4".into(), e4));
        }
        Ok(self)
    }

    /// A wg-quick file for the peer. Its private key is never known here: a comment marks its
    /// place. The preshared key is written only when `with_secrets`.
    pub fn render(&self, with_secrets: bool) -> String {
        let join = |n: &[IpNet]| {
            n.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# WireGuard configuration of peer {:?}, by kawaii",
            self.name
        );
        let _ = writeln!(s, "[Interface]");
        let _ = writeln!(s, "Address = {}", join(&self.address));
        let _ = writeln!(
            s,
            "# PrivateKey = <this peer's own private key: kawaii never holds it>"
        );
        let _ = writeln!(s, "\n[Peer]");
        let _ = writeln!(s, "PublicKey = {}", self.gateway_public_key);
        if let Some(k) = &self.preshared_key {
            if with_secrets {
                let _ = writeln!(s, "PresharedKey = {}", k.expose());
            } else {
                let _ = writeln!(
                    s,
                    "# PresharedKey = (set; shown only to an operator or admin)"
                );
            }
        }
        match &self.endpoint {
            Some(e) => {
                let _ = writeln!(s, "Endpoint = {e}");
            }
            None => {
                let _ = writeln!(s, "# Endpoint = <this node's public address and port>");
            }
        }
        for (what, e) in &self.other_endpoints {
            let _ = writeln!(s, "# Endpoint = {e}  ({what})");
        }
        let _ = writeln!(s, "AllowedIPs = {}", join(&self.allowed_ips));
        if let Some(k) = self.persistent_keepalive {
            let _ = writeln!(s, "PersistentKeepalive = {k}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::fixture::desired;

    const GW_PUB: &str = "gF6+fnmnOkWDbtcJUmHDFtX+kxIEgd5gNp7CzYZ3+Xs=";

    fn nets(c: &PeerConf) -> Vec<String> {
        c.allowed_ips.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn showconf_names_this_zone_first_and_the_others_as_comments() {
        let d = desired("", None);
        let b = d.zones.iter().find(|z| z.name == "zone-b");
        let conf = peer_conf(&d, b, "alice", GW_PUB).expect("conf");
        let text = conf.render(false);
        assert!(text.contains("\nEndpoint = 203.0.113.20:51820\n"), "{text}");
        assert!(
            text.contains("# Endpoint = 203.0.113.10:51820  (zone zone-a)"),
            "{text}"
        );
        // A viewer's copy marks the preshared key without showing it; an operator's has it.
        assert!(!text.contains("FpCyhws9"), "{text}");
        assert!(text.contains("# PresharedKey"), "{text}");
        assert!(
            conf.render(true)
                .contains("\nPresharedKey = FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=\n")
        );
        assert_eq!(
            peer_conf(&d, b, "bob", GW_PUB),
            Err(ShowconfError::NoPeer("bob".into()))
        );
        assert_eq!(conf.over_ipv6(), Err(ShowconfError::NoIpv6Endpoint));
    }

    #[test]
    fn reachable_subnets_follow_rules_and_full_tunnel() {
        let rule = "ingress_rules = [{ destination = \"10.1.0.10/32\", ports = \"22\" }]";
        let d = desired(rule, None);
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        assert_eq!(nets(&conf), ["10.1.0.10/32", "10.8.0.0/24"]);
        let d = desired("allow_internet = true", None);
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        assert_eq!(nets(&conf), ["0.0.0.0/0"]);
        assert_eq!(conf.endpoint.as_deref(), Some("203.0.113.10:51820"));
    }

    #[test]
    fn both_families_and_the_ipv6_endpoint() {
        let d = desired("", Some("fd00:8::1/64"));
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        let text = conf.render(false);
        assert!(
            text.contains("\nAddress = 10.8.0.2/32, fd00:8::2/128\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nAllowedIPs = 10.1.0.0/24, 10.8.0.0/24, 2001:db8:1::/64, fd00:8::/64\n"
            ),
            "{text}"
        );
        assert!(text.contains("\nEndpoint = 203.0.113.10:51820\n"), "{text}");
        assert!(
            text.contains("\n# Endpoint = [2001:db8:ff::10]:51820  (IPv6)\n"),
            "{text}"
        );
        let six = conf
            .over_ipv6()
            .expect("zone-a has an IPv6 VIP")
            .render(false);
        assert!(
            six.contains("\nEndpoint = [2001:db8:ff::10]:51820\n"),
            "{six}"
        );
        assert!(
            six.contains("\n# Endpoint = 203.0.113.10:51820  (IPv4)\n"),
            "{six}"
        );
        assert!(!six.contains("(IPv6)"), "{six}");
        // zone-b has no IPv6 VIP.
        let b = d.zones.iter().find(|z| z.name == "zone-b");
        let conf = peer_conf(&d, b, "alice", GW_PUB).expect("conf");
        assert!(
            conf.render(false)
                .contains("# Endpoint = [2001:db8:ff::10]:51820  (zone zone-a, IPv6)")
        );
        assert_eq!(conf.over_ipv6(), Err(ShowconfError::NoIpv6Endpoint));
    }

    #[test]
    fn full_tunnel_over_ipv6_only_from_a_global_prefix() {
        // A unique local VPN prefix is not routed back from the Internet: no ::/0.
        let d = desired("allow_internet = true", Some("fd00:8::1/64"));
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        assert_eq!(nets(&conf), ["0.0.0.0/0", "2001:db8:1::/64", "fd00:8::/64"]);
        let d = desired("allow_internet = true", Some("2001:db8:8::1/64"));
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        assert_eq!(nets(&conf), ["0.0.0.0/0", "::/0"]);
        // A rule naming an IPv4 destination narrows IPv4 only; IPv6 keeps the VPN subnet.
        let rule = "ingress_rules = [{ destination = \"10.1.0.10/32\", ports = \"22\" }]";
        let d = desired(rule, Some("2001:db8:8::1/64"));
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        assert_eq!(
            nets(&conf),
            ["10.1.0.10/32", "10.8.0.0/24", "2001:db8:8::/64"]
        );
    }

    #[test]
    fn ipv6_rules_narrow_ipv6_and_close_ipv4() {
        // An IPv6 destination narrows IPv6; IPv4 gets nothing private (a rule of either family
        // ends the peer's blanket access to both).
        let rule = "ingress_rules = [{ destination = \"2001:db8:1::10/128\", ports = \"22\" }]";
        let d = desired(rule, Some("fd00:8::1/64"));
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        assert_eq!(
            nets(&conf),
            ["10.8.0.0/24", "2001:db8:1::10/128", "fd00:8::/64"]
        );
        // One rule per family: each narrows its own.
        let rules = "ingress_rules = [{ destination = \"2001:db8:1::10/128\", ports = \"22\" }, { destination = \"10.1.0.10/32\", ports = \"22\" }]";
        let d = desired(rules, Some("fd00:8::1/64"));
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        assert_eq!(
            nets(&conf),
            [
                "10.1.0.10/32",
                "10.8.0.0/24",
                "2001:db8:1::10/128",
                "fd00:8::/64"
            ]
        );
    }
}
