//! The planner: desired state + zone + observed facts in, what each driver must make true out.
//! Pure: no I/O. Everything it renders is covered by golden files under `testdata/render/`.

pub mod blame;
pub mod conntrackd;
pub mod flood;
pub mod ipsec;
pub mod ipsec6;
pub mod net;
pub mod netmap;
pub mod nft;
mod opening;
mod peering;
pub mod pipes;
pub mod ra;
pub mod router;
pub mod synproxy;
pub mod table;
pub mod twin;
pub mod vrrp;
pub mod wireguard;

use kawaii_model::Desired;
use kawaii_model::valid::ZoneSpec;
use serde::Serialize;

pub use net::{Address, Destination, NetPlan, RouteEntry, RuleEntry, Sysctl};

/// What the drivers must make true on this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The zone this plan is for (None on an edge node without zones).
    pub zone: Option<String>,
    /// The `inet kawaii` table; None when this node has no firewall of its own (an edge node).
    pub nftables: Option<nft::Table>,
    /// Addresses, routes and sysctls.
    pub net: NetPlan,
    /// The domain router (None: no routes declared).
    pub router: Option<router::RouterPlan>,
    /// The swanctl connections kawaii's charon must have loaded (empty: none).
    pub ipsec: Vec<ipsec::Connection>,
    /// The VRRP virtual routers this node takes part in (empty: no HA).
    pub vrrp: Vec<vrrp::Instance>,
    /// HA: the connection-state sync this node runs (None: no HA or `conntrack_sync = false`).
    pub conntrackd: Option<conntrackd::SyncPlan>,
    /// The userspace WireGuard device (None: no `[wireguard]` section).
    pub wireguard: Option<wireguard::WgPlan>,
    /// TCP pipes (empty: none).
    pub pipes: Vec<pipes::PipePlan>,
    /// IPv6 router advertisements on the private side (empty: no IPv6 or no VIP held).
    pub ra: Vec<ra::Advertiser>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipsec_ids_are_safe_and_distinct() {
        let a = super::ipsec_id("ACME Office");
        assert!(a.starts_with("acme-office-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(
            super::ipsec_id("ACME Office"),
            super::ipsec_id("acme office")
        );
        assert_eq!(super::ipsec_id("ACME Office"), a, "stable");
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("zone {0:?} is not declared in the config (declared: {1})")]
    UnknownZone(String, String),
    #[error("the config declares {0} zones; choose one with --zone")]
    ZoneRequired(usize),
}

/// A safe identifier for an IPsec connection name (any UTF-8, spaces included): lowercase
/// ASCII letters and digits kept, everything else `-`, plus a short stable hash of the full name
/// so that two names that map alike stay distinct. Used in strongSwan and nftables.
pub fn ipsec_id(name: &str) -> String {
    let mut slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    slug.truncate(24);
    // FNV-1a: tiny, stable across versions and platforms.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}-{:06x}", slug.trim_matches('-'), hash & 0xff_ffff)
}

/// Picks this node's zone: the one named, or the only one, or none on an edge node.
pub fn select_zone<'a>(
    d: &'a Desired,
    zone: Option<&str>,
) -> Result<Option<&'a ZoneSpec>, PlanError> {
    match zone {
        Some(z) => d
            .zones
            .iter()
            .find(|s| s.name == z)
            .map(Some)
            .ok_or_else(|| {
                PlanError::UnknownZone(
                    z.to_string(),
                    d.zones
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            }),
        None if d.zones.len() <= 1 => Ok(d.zones.first()),
        None => Err(PlanError::ZoneRequired(d.zones.len())),
    }
}

/// UDP port of the VPC-peering consent hellos between gateways.
pub const CONSENT_PORT: u16 = 7781;
/// UDP port on which HA instances tell each other where their WireGuard peers are.
pub const WG_SYNC_PORT: u16 = 7782;

/// What drivers observed that the plan depends on (fields are added by the capabilities that
/// need them; the default is "nothing observed yet").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// VPC peerings (by name) whose other side declared the mirror peering: only these forward
    /// traffic when their consent is `mutual`.
    pub consented_peerings: std::collections::BTreeSet<String>,
    /// HA: the zones whose virtual router this node is master of (so whose VIPs it holds).
    /// None: not observed (no VRRP running): the node's own zone's VIPs.
    pub vip_zones: Option<std::collections::BTreeSet<String>>,
    /// HA: the zones whose IPv6 virtual router this node is master of (so whose IPv6 VIPs it
    /// holds). None: as `vip_zones`.
    pub vip6_zones: Option<std::collections::BTreeSet<String>>,
    /// HA: WireGuard peers (base64 public key) whose freshest session is on a sibling, with
    /// that sibling's private address (from the endpoint sync). Their addresses are routed to
    /// it, so that private hosts behind this zone reach VPN clients connected elsewhere.
    pub wg_elsewhere: std::collections::BTreeMap<String, std::net::Ipv4Addr>,
    /// The conntrack table is past the public side's share (`[ingress]
    /// public_conntrack_percent`): new flows from the public side are dropped until it drains.
    pub conntrack_pressure: bool,
}

/// Plans this node with nothing observed.
pub fn plan(d: &Desired, zone: Option<&str>) -> Result<Plan, PlanError> {
    plan_with(d, zone, &Observed::default())
}

/// Plans this node given what the drivers observed.
pub fn plan_with(d: &Desired, zone: Option<&str>, observed: &Observed) -> Result<Plan, PlanError> {
    let z = select_zone(d, zone)?;
    let mut wireguard = wireguard::plan(d);
    if let (Some(w), Some(z), Some(_)) = (&mut wireguard, z, &d.ha) {
        w.siblings = vrrp::sibling_zones(d, z)
            .map(|(s, address)| wireguard::Sibling {
                zone: s.name.clone(),
                address,
            })
            .collect();
        w.me = z.private_address.map(|address| wireguard::Sibling {
            zone: z.name.clone(),
            address,
        });
    }
    let mut net = z.map(|z| net::plan(d, z, observed)).unwrap_or_default();
    if let Some(w) = &wireguard {
        // The VPN subnet is on-link through the interface's address; other allowed IPs of
        // peers (their sites) are routed to the interface.
        net.addresses.push(Address {
            interface: w.interface.clone(),
            address: w.address.into(),
        });
        net.addresses.extend(w.address6.map(|a| Address {
            interface: w.interface.clone(),
            address: a.into(),
        }));
        net.routes.extend(wireguard::routes(w));
        if let Some(z) = z {
            wireguard::route_to_siblings(d, w, &z.private_interface, observed, &mut net.routes);
        }
    }
    Ok(Plan {
        zone: z.map(|z| z.name.clone()),
        nftables: z.map(|z| nft::render(d, z, observed)),
        net,
        router: router::plan(d, z),
        ipsec: z.map(|z| ipsec::plan(d, z, observed)).unwrap_or_default(),
        vrrp: z.map(|z| vrrp::plan(d, z)).unwrap_or_default(),
        conntrackd: z.and_then(|z| conntrackd::plan(d, z, observed)),
        wireguard,
        pipes: pipes::plan(d),
        ra: z.map(|z| ra::plan(d, z, observed)).unwrap_or_default(),
    })
}
