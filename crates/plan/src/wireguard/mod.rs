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
/// answer from a private host behind this zone goes where the peer's session is. IPv4 only:
/// the siblings are known by their IPv4 private addresses, so a peer's IPv6 stays routed here.
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
        for n in p.allowed_ips.iter().filter(|n| matches!(n, IpNet::V4(_))) {
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
