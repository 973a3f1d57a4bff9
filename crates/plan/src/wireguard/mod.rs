//! The WireGuard device's plan (interface, port, key source, its IPv4 and IPv6 addresses,
//! peers with what is routed to them), the VPN's forwarding rules ([`firewall`]) and `showconf`
//! ([`showconf`]): the configuration a VPN peer applies to reach this gateway.
//!
//! Keys stay out of everything rendered here except where the caller asks for the peer's own
//! preshared key (`showconf` for an operator).

pub(crate) mod firewall;
mod showconf;

pub use firewall::routed_internet6;
pub use showconf::{PeerConf, ShowconfError, peer_conf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kawaii_model::valid::KeySource;
use kawaii_model::{Desired, Secret};
use serde::Serialize;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// What the WireGuard driver makes true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WgPlan {
    pub interface: String,
    pub listen_port: u16,
    /// The gateway's address in the VPN subnet, with the subnet's prefix.
    pub address: Ipv4Net,
    /// The same in the VPN's IPv6 subnet, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Net>,
    pub private_key: KeyPlan,
    pub peers: Vec<WgPeerPlan>,
    /// HA: the other zone instances (zone and private address), told where this instance's
    /// peers are (see the drivers' `wg_sync`). Empty without HA.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<Sibling>,
    /// HA: this instance itself (its zone and private address). None without HA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub me: Option<Sibling>,
}

/// Another zone's instance, as the WireGuard endpoint sync knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sibling {
    pub zone: String,
    pub address: std::net::Ipv4Addr,
}

/// Where the private key comes from. Inline keys serialize redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPlan {
    /// Read from this file (refused unless only its owner may read it).
    File(String),
    Inline(Secret),
    /// No key configured: the device cannot start.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WgPeerPlan {
    pub name: String,
    /// Base64, as `wg` shows it.
    pub public_key: String,
    /// Source addresses accepted from this peer, and routed to it (IPv4 first).
    pub allowed_ips: Vec<IpNet>,
    pub preshared_key: Option<Secret>,
    pub persistent_keepalive: Option<u16>,
    /// `host:port`, resolved by the driver.
    pub endpoint: Option<String>,
}

fn b64(key: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The device plan; None without a `[wireguard]` section. Peers still waiting for an address
/// (a document not committed yet) are left out.
pub fn plan(d: &Desired) -> Option<WgPlan> {
    let w = d.wireguard.as_ref()?;
    Some(WgPlan {
        interface: w.interface.clone(),
        listen_port: w.listen_port,
        address: w.address,
        address6: w.address6,
        private_key: match &w.private_key {
            Some(KeySource::File(f)) => KeyPlan::File(f.clone()),
            Some(KeySource::Inline(k)) => KeyPlan::Inline(k.clone()),
            None => KeyPlan::Missing,
        },
        peers: w
            .peers
            .iter()
            .filter(|p| !p.routed_all().is_empty())
            .map(|p| WgPeerPlan {
                name: p.name.clone(),
                public_key: b64(&p.public_key),
                allowed_ips: p.routed_all(),
                preshared_key: p.preshared_key.clone(),
                persistent_keepalive: p.persistent_keepalive,
                endpoint: p.endpoint.clone(),
            })
            .collect(),
        siblings: Vec::new(),
        me: None,
    })
}

impl WgPlan {
    /// `kawaii render --what wireguard`: the device in `wg` syntax, secrets named by source only.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# interface {} address {}", self.interface, self.address);
        if let Some(a) = self.address6 {
            let _ = writeln!(s, "# interface {} address {a}", self.interface);
        }
        let _ = writeln!(s, "[Interface]");
        let _ = writeln!(s, "ListenPort = {}", self.listen_port);
        let key = match &self.private_key {
            KeyPlan::File(f) => format!("(read from {f})"),
            KeyPlan::Inline(_) => "(inline, redacted)".into(),
            KeyPlan::Missing => "(MISSING: set private_key_file)".into(),
        };
        let _ = writeln!(s, "PrivateKey = {key}");
        for p in &self.peers {
            let _ = writeln!(s, "\n# {}", p.name);
            let _ = writeln!(s, "[Peer]");
            let _ = writeln!(s, "PublicKey = {}", p.public_key);
            if p.preshared_key.is_some() {
                let _ = writeln!(s, "PresharedKey = (redacted)");
            }
            let ips: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
            let _ = writeln!(s, "AllowedIPs = {}", ips.join(", "));
            if let Some(e) = &p.endpoint {
                let _ = writeln!(s, "Endpoint = {e}");
            }
            if let Some(k) = p.persistent_keepalive.filter(|k| *k > 0) {
                let _ = writeln!(s, "PersistentKeepalive = {k}");
            }
        }
        s
    }
}

/// The routes the netlink driver adds for the device: a peer's allowed IPs outside the VPN
/// subnets (the subnets themselves are on-link through the interface addresses).
pub fn routes(w: &WgPlan) -> Vec<crate::RouteEntry> {
    let on_link = |n: &IpNet| match n {
        IpNet::V4(n) => w.address.trunc().contains(n),
        IpNet::V6(n) => w.address6.is_some_and(|a| a.trunc().contains(n)),
    };
    let mut out: Vec<crate::RouteEntry> = w
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter())
        .filter(|n| !on_link(n))
        .map(|n| crate::RouteEntry::onto(*n, &w.interface))
        .collect();
    out.sort_by_key(|r| r.destination);
    out.dedup();
    out
}

/// HA: a peer whose session lives on a sibling is reached through that sibling: its addresses
/// are routed to the sibling's private address (replacing the route onto the interface), so an
/// answer from a private host behind this zone goes where the peer's session is. Its IPv6
/// addresses go to the sibling's `private_address6` (the sibling is known by its IPv4 private
/// address; without an IPv6 one they stay routed to the local device).
pub fn route_to_siblings(
    d: &Desired,
    w: &WgPlan,
    private_interface: &str,
    observed: &crate::Observed,
    routes: &mut Vec<crate::RouteEntry>,
) {
    let address6 = |v4: Ipv4Addr| {
        d.zones
            .iter()
            .find(|z| z.private_address == Some(v4))
            .and_then(|z| z.private_address6)
    };
    for p in &w.peers {
        let Some(sibling) = observed.wg_elsewhere.get(&p.public_key) else {
            continue;
        };
        for n in &p.allowed_ips {
            let via = match n {
                IpNet::V4(_) => IpAddr::V4(*sibling),
                IpNet::V6(_) => match address6(*sibling) {
                    Some(a) => IpAddr::V6(a),
                    None => continue,
                },
            };
            let destination = crate::Destination::from(*n);
            routes.retain(|r| r.destination != destination);
            routes.push(crate::RouteEntry {
                destination,
                via: Some(via),
                interface: Some(private_interface.to_string()),
                source: None,
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    use kawaii_model::{Desired, Format, Gateway, validate};

    /// Two zones; with `v6` dual-stack (zone-a only has an IPv6 VIP), the VPN on `address6`.
    pub(crate) fn desired(extra: &str, v6: Option<&str>) -> Desired {
        let mut zones = kawaii_testkit::configs::two_zones("acme");
        let mut wg6 = String::new();
        if let Some(address6) = v6 {
            zones = zones
                .replace(
                    "private_subnet = \"10.1.0.0/24\"",
                    "private_subnet = \"10.1.0.0/24\"\nprivate_subnet6 = \"2001:db8:1::/64\"",
                )
                .replace(
                    "private_address = \"10.1.0.251\"",
                    "private_address = \"10.1.0.251\"\npublic_vip6 = \"2001:db8:ff::10/64\"\npublic_gateway6 = \"2001:db8:ff::1\"\nprivate_vip6 = \"2001:db8:1::1\"",
                )
                .replace(
                    "private_address = \"10.1.0.252\"",
                    "private_address = \"10.1.0.252\"\nprivate_vip6 = \"2001:db8:1::2\"",
                );
            wg6 = format!("address6 = \"{address6}\"");
        }
        let text = format!(
            r#"{zones}
[ha]
[wireguard]
address = "10.8.0.1/24"
{wg6}
private_key_file = "/etc/kawaii/wg.key"
[[wireguard.peers]]
name = "alice"
public_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
preshared_key = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="
{extra}
"#
        );
        let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
        g.prepare_commit(&Gateway::default());
        validate(&g).expect("valid").desired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixture::desired;
    use kawaii_model::{Format, Gateway, validate};

    /// Two dual-stack zones and a VPN with both families; peer alice (allocated addresses)
    /// with `extra` lines.
    fn dual_stack(extra: &str) -> Desired {
        let text = kawaii_testkit::configs::two_zones("acme")
            .replace(
                "private_subnet = \"10.1.0.0/24\"",
                "private_subnet = \"10.1.0.0/24\"\nprivate_subnet6 = \"2001:db8:1::/64\"",
            )
            .replace(
                "private_address = \"10.1.0.251\"",
                "private_address = \"10.1.0.251\"\nprivate_vip6 = \"2001:db8:1::1\"\nprivate_address6 = \"2001:db8:1::251\"",
            )
            .replace(
                "private_address = \"10.1.0.252\"",
                "private_address = \"10.1.0.252\"\nprivate_vip6 = \"2001:db8:1::2\"\nprivate_address6 = \"2001:db8:1::252\"",
            )
            + "[ha]\n[wireguard]\naddress = \"10.8.0.1/24\"\naddress6 = \"fd00:8::1/64\"\nprivate_key_file = \"/k\"\n[[wireguard.peers]]\nname = \"alice\"\npublic_key = \"GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=\"\n"
            + extra;
        let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
        g.prepare_commit(&Gateway::default());
        validate(&g).expect("valid").desired
    }

    /// A peer's ingress rules of both families: each family's rules open what they name (the
    /// private subnet of the family where they name none), and no blanket access remains.
    #[test]
    fn a_peers_ipv6_rules_open_ipv6_destinations() {
        let d = dual_stack(
            "ingress_rules = [{ destination = \"2001:db8:1::10/128\", protocol = \"tcp\", ports = \"22\" }, { protocol = \"tcp\", ports = \"443\" }]\n",
        );
        let plan = crate::plan_with(&d, Some("zone-a"), &crate::Observed::default()).expect("plan");
        let nft = plan.nftables.expect("table").render();
        let line = |comment: &str| {
            nft.lines()
                .find(|l| l.contains(&format!("comment \"{comment}\"")))
                .unwrap_or_else(|| panic!("no rule {comment} in\n{nft}"))
                .to_string()
        };
        let ssh6 = line("vpn6-alice-a03907-1");
        assert!(ssh6.contains("ip6 saddr fd00:8::2"), "{ssh6}");
        assert!(
            ssh6.contains("ip6 daddr 2001:db8:1::10/128 tcp dport 22 "),
            "{ssh6}"
        );
        let https6 = line("vpn6-alice-a03907-2");
        assert!(
            https6.contains("ip6 daddr 2001:db8:1::/64 tcp dport 443 "),
            "{https6}"
        );
        let https = line("vpn-alice-a03907-2");
        assert!(
            https.contains("ip daddr 10.1.0.0/24 tcp dport 443 "),
            "{https}"
        );
        // The IPv6 rule has no IPv4 twin, and neither family keeps its blanket accept.
        assert!(!nft.contains("\"vpn-alice-a03907-1\""), "{nft}");
        assert!(!nft.contains("\"vpn-alice-a03907\""), "{nft}");
        assert!(!nft.contains("\"vpn6-alice-a03907\""), "{nft}");
        kawaii_testkit::golden::nft_check(&nft).expect("nft -c accepts the table");
    }

    /// HA: a peer served by a sibling has its IPv4 routed to the sibling's private address and
    /// its IPv6 to the sibling's private_address6.
    #[test]
    fn a_peer_on_a_sibling_is_routed_there_in_both_families() {
        let d = dual_stack("");
        let mut observed = crate::Observed::default();
        observed.wg_elsewhere.insert(
            "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=".into(),
            Ipv4Addr::new(10, 1, 0, 252),
        );
        let plan = crate::plan_with(&d, Some("zone-a"), &observed).expect("plan");
        let text = plan.net.render();
        assert!(
            text.contains("route 10.8.0.2/32 via 10.1.0.252 dev lan0\n"),
            "{text}"
        );
        assert!(
            text.contains("route fd00:8::2/128 via 2001:db8:1::252 dev lan0\n"),
            "{text}"
        );
        let nft = plan.nftables.expect("table").render();
        assert!(
            nft.contains("ip6 daddr fd00:8::/64 counter accept comment \"vpn6-via-sibling\""),
            "{nft}"
        );
    }

    #[test]
    fn rendered_device_never_shows_keys() {
        let d = desired("", None);
        let w = plan(&d).expect("plan");
        let text = w.render();
        assert!(!text.contains("FpCyhws9"), "{text}");
        assert!(text.contains("PresharedKey = (redacted)"));
        assert!(text.contains("PrivateKey = (read from /etc/kawaii/wg.key)"));
        assert!(format!("{w:?}").contains("GY5aT1N9") && !format!("{w:?}").contains("FpCyhws9"));
    }
}
