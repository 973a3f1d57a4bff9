//! The WireGuard device's plan (interface, port, key source, peers with what is routed to
//! them) and `showconf`: the configuration a VPN peer applies to reach this gateway.
//!
//! Keys stay out of everything rendered here except where the caller asks for the peer's own
//! preshared key (`showconf` for an operator).

use ipnet::Ipv4Net;
use kawaii_model::valid::{KeySource, WgPeerSpec, WireGuardSpec, ZoneSpec};
use kawaii_model::{Desired, Secret};
use serde::Serialize;
use std::fmt::Write;

/// What the WireGuard driver makes true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WgPlan {
    pub interface: String,
    pub listen_port: u16,
    /// The gateway's address in the VPN subnet, with the subnet's prefix.
    pub address: Ipv4Net,
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
    /// Source addresses accepted from this peer, and routed to it.
    pub allowed_ips: Vec<Ipv4Net>,
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
        private_key: match &w.private_key {
            Some(KeySource::File(f)) => KeyPlan::File(f.clone()),
            Some(KeySource::Inline(k)) => KeyPlan::Inline(k.clone()),
            None => KeyPlan::Missing,
        },
        peers: w
            .peers
            .iter()
            .filter(|p| !p.routed().is_empty())
            .map(|p| WgPeerPlan {
                name: p.name.clone(),
                public_key: b64(&p.public_key),
                allowed_ips: p.routed(),
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
/// subnet (the subnet itself is on-link through the interface address).
pub fn routes(w: &WgPlan) -> Vec<crate::RouteEntry> {
    let subnet = w.address.trunc();
    let mut out: Vec<crate::RouteEntry> = w
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter())
        .filter(|n| !subnet.contains(*n))
        .map(|n| crate::RouteEntry::onto(*n, &w.interface))
        .collect();
    out.sort_by_key(|r| r.destination);
    out.dedup();
    out
}

/// What a VPN peer needs to reach this gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerConf {
    pub name: String,
    /// The peer's own addresses (its allowed IPs, or its allocated address).
    pub address: Vec<Ipv4Net>,
    pub gateway_public_key: String,
    /// This zone's public VIP and the listen port (None on a node without zones).
    pub endpoint: Option<String>,
    /// The other zones' endpoints, for a manual switch.
    pub other_endpoints: Vec<(String, String)>,
    /// The subnets this peer may reach through the tunnel.
    pub allowed_ips: Vec<Ipv4Net>,
    pub persistent_keepalive: Option<u16>,
    pub preshared_key: Option<Secret>,
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
}

/// The subnets a peer may reach: the VPN subnet and the private subnet, narrowed to its
/// ingress rules' destinations if it has some; everything with `allow_internet`.
fn reachable(d: &Desired, w: &WireGuardSpec, p: &WgPeerSpec) -> Vec<Ipv4Net> {
    if p.allow_internet {
        return vec![Ipv4Net::default()];
    }
    let mut nets = vec![w.address.trunc()];
    let private = d
        .private_subnet
        .or_else(|| d.zones.first().map(|z| z.private_vip.trunc()));
    if p.ingress_rules.is_empty() {
        nets.extend(private);
    } else {
        nets.extend(
            p.ingress_rules
                .iter()
                .filter_map(|r| r.destination.or(private)),
        );
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
    let routed = p.routed();
    if routed.is_empty() {
        return Err(ShowconfError::NoAddress(name.into()));
    }
    // The interface's own addresses are those inside the VPN subnet (a site behind the peer
    // is routed to it, not an address of its interface).
    let subnet = w.address.trunc();
    let inside: Vec<Ipv4Net> = routed
        .iter()
        .filter(|n| subnet.contains(*n))
        .copied()
        .collect();
    let address = if inside.is_empty() { routed } else { inside };
    let endpoint_of = |z: &ZoneSpec| format!("{}:{}", z.public_vip.addr(), w.listen_port);
    let home = zone.or(d.zones.first());
    Ok(PeerConf {
        name: p.name.clone(),
        address,
        gateway_public_key: gateway_public_key.into(),
        endpoint: home.map(endpoint_of),
        other_endpoints: d
            .zones
            .iter()
            .filter(|z| Some(z.name.as_str()) != home.map(|h| h.name.as_str()))
            .map(|z| (z.name.clone(), endpoint_of(z)))
            .collect(),
        allowed_ips: reachable(d, w, p),
        persistent_keepalive: p.persistent_keepalive.filter(|k| *k > 0),
        preshared_key: p.preshared_key.clone(),
    })
}

impl PeerConf {
    /// A wg-quick file for the peer. Its private key is never known here: a comment marks its
    /// place. The preshared key is written only when `with_secrets`.
    pub fn render(&self, with_secrets: bool) -> String {
        let join = |n: &[Ipv4Net]| {
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
        for (zone, e) in &self.other_endpoints {
            let _ = writeln!(s, "# Endpoint = {e}  (zone {zone})");
        }
        let _ = writeln!(s, "AllowedIPs = {}", join(&self.allowed_ips));
        if let Some(k) = self.persistent_keepalive {
            let _ = writeln!(s, "PersistentKeepalive = {k}");
        }
        s
    }
}

/// HA: a peer whose session lives on a sibling is reached through that sibling: its addresses
/// are routed to the sibling's private address (replacing the route onto the interface), so an
/// answer from a private host behind this zone goes where the peer's session is.
pub fn route_to_siblings(
    w: &WgPlan,
    private_interface: &str,
    observed: &crate::Observed,
    routes: &mut Vec<crate::RouteEntry>,
) {
    for p in &w.peers {
        let Some(sibling) = observed.wg_elsewhere.get(&p.public_key) else {
            continue;
        };
        for n in &p.allowed_ips {
            let destination = crate::Destination::from(*n);
            routes.retain(|r| r.destination != destination);
            routes.push(crate::RouteEntry {
                destination,
                via: Some(std::net::IpAddr::V4(*sibling)),
                interface: Some(private_interface.to_string()),
                source: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kawaii_model::{Format, Gateway, validate};

    const GW_PUB: &str = "gF6+fnmnOkWDbtcJUmHDFtX+kxIEgd5gNp7CzYZ3+Xs=";

    fn desired(extra: &str) -> Desired {
        let text = format!(
            r#"{}
[ha]
[wireguard]
address = "10.8.0.1/24"
private_key_file = "/etc/kawaii/wg.key"
[[wireguard.peers]]
name = "alice"
public_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
preshared_key = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="
{extra}
"#,
            kawaii_testkit::configs::two_zones("acme")
        );
        let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
        g.prepare_commit(&Gateway::default());
        validate(&g).expect("valid").desired
    }

    #[test]
    fn showconf_names_this_zone_first_and_the_others_as_comments() {
        let d = desired("");
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
    }

    #[test]
    fn reachable_subnets_follow_rules_and_full_tunnel() {
        let d = desired("ingress_rules = [{ destination = \"10.1.0.10/32\", ports = \"22\" }]");
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        let nets: Vec<String> = conf.allowed_ips.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.1.0.10/32", "10.8.0.0/24"]);
        let d = desired("allow_internet = true");
        let conf = peer_conf(&d, None, "alice", GW_PUB).expect("conf");
        assert_eq!(conf.allowed_ips, [Ipv4Net::default()]);
        assert_eq!(conf.endpoint.as_deref(), Some("203.0.113.10:51820"));
    }

    #[test]
    fn rendered_device_never_shows_keys() {
        let d = desired("");
        let w = plan(&d).expect("plan");
        let text = w.render();
        assert!(!text.contains("FpCyhws9"), "{text}");
        assert!(text.contains("PresharedKey = (redacted)"));
        assert!(text.contains("PrivateKey = (read from /etc/kawaii/wg.key)"));
        assert!(format!("{w:?}").contains("GY5aT1N9") && !format!("{w:?}").contains("FpCyhws9"));
    }
}
