//! Which resource a driver's failure came from: the addresses, prefixes and interface names a
//! failed command names (`ip route replace 10.3.0.0/24 via 198.51.100.77 ...`) matched against
//! the desired state's resources. Pure; the reconcile loop names the resource in the driver's
//! status, in `/readyz` and in the peering's state.

use kawaii_model::Desired;

/// The resource a failure is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Culprit {
    /// Its place in the document, e.g. `vpc_peerings[1]`.
    pub path: String,
    /// For people: `vpc peering "far"`.
    pub what: String,
    /// The collection and name when it has one (`vpc_peerings`, `far`).
    pub name: Option<(&'static str, String)>,
}

impl std::fmt::Display for Culprit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.what, self.path)
    }
}

/// The first resource whose own addresses the error names (a peering by its next hop or
/// subnet, an IPsec connection by its peer or remote subnet, the VPN by its subnet, a zone by
/// its VIPs or interfaces); None when the error names none of them.
pub fn blame(d: &Desired, error: &str) -> Option<Culprit> {
    let words: Vec<&str> = error
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | ':' | '_' | '-')))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| !w.is_empty())
        .collect();
    let names = |candidates: &[String]| candidates.iter().any(|c| words.contains(&c.as_str()));
    for (i, p) in d.vpc_peerings.iter().enumerate() {
        let mut own = vec![p.via.to_string(), p.subnet.to_string()];
        own.extend(p.via6.map(|a| a.to_string()));
        own.extend(p.subnet6.map(|n| n.to_string()));
        if names(&own) {
            return Some(Culprit {
                path: format!("vpc_peerings[{i}]"),
                what: format!("vpc peering {:?}", p.name),
                name: Some(("vpc_peerings", p.name.clone())),
            });
        }
    }
    for (i, c) in d.ipsec.iter().enumerate() {
        let mut candidates = vec![c.remote_peer.to_string()];
        candidates.extend(c.remote_subnet.map(|n| n.to_string()));
        candidates.extend(c.remote_subnet6.map(|n| n.to_string()));
        if names(&candidates) {
            return Some(Culprit {
                path: format!("ipsec[{i}]"),
                what: format!("IPsec connection {:?}", c.name),
                name: Some(("ipsec", c.name.clone())),
            });
        }
    }
    if let Some(w) = &d.wireguard
        && names(&[w.address.to_string(), w.address.trunc().to_string()])
    {
        return Some(Culprit {
            path: "wireguard.address".into(),
            what: "the WireGuard VPN".into(),
            name: None,
        });
    }
    for (i, z) in d.zones.iter().enumerate() {
        if names(&[
            z.public_vip.to_string(),
            z.private_vip.to_string(),
            z.public_gateway.to_string(),
            z.public_interface.clone(),
            z.private_interface.clone(),
        ]) {
            return Some(Culprit {
                path: format!("zones[{i}]"),
                what: format!("zone {:?}", z.name),
                name: Some(("zones", z.name.clone())),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> Desired {
        let text = include_str!("../testdata/blame/config.toml");
        let g = kawaii_model::Gateway::parse(text, kawaii_model::Format::Toml).expect("parses");
        kawaii_model::validate(&g).expect("valid").desired
    }

    #[test]
    fn a_route_failure_names_its_peering() {
        let got = blame(
            &desired(),
            "ip route replace 10.3.0.0/24 via 198.51.100.77 proto 177: Error: Nexthop has invalid gateway.",
        )
        .expect("blamed");
        assert_eq!(got.path, "vpc_peerings[1]");
        assert_eq!(got.to_string(), "vpc peering \"far\" (vpc_peerings[1])");
        assert_eq!(got.name, Some(("vpc_peerings", "far".to_string())));
    }

    #[test]
    fn an_address_failure_names_its_zone_and_unknown_ones_nobody() {
        let got = blame(
            &desired(),
            "ip addr add 203.0.113.10/24 dev wan0: Error: busy",
        );
        assert_eq!(got.map(|c| c.path), Some("zones[0]".into()));
        // 110.3.0.0/24 is not 10.3.0.0/24: whole words only.
        assert_eq!(blame(&desired(), "route to 110.3.0.0/24 failed"), None);
    }
}
