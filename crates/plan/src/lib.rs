//! The planner: desired state + zone + observed facts in, what each driver must make true out.
//! Pure: no I/O. Everything it renders is covered by golden files under `testdata/render/`.

pub mod net;
pub mod nft;

use kawaii_model::Desired;
use kawaii_model::valid::ZoneSpec;
use serde::Serialize;

pub use net::{Address, NetPlan, RouteEntry, Sysctl};

/// What the drivers must make true on this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The zone this plan is for (None on an edge node without zones).
    pub zone: Option<String>,
    /// The `inet kawaii` table; None when this node has no firewall of its own (an edge node).
    pub nftables: Option<nft::Table>,
    /// Addresses, routes and sysctls.
    pub net: NetPlan,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("zone {0:?} is not declared in the config (declared: {1})")]
    UnknownZone(String, String),
    #[error("the config declares {0} zones; choose one with --zone")]
    ZoneRequired(usize),
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

/// Plans this node.
pub fn plan(d: &Desired, zone: Option<&str>) -> Result<Plan, PlanError> {
    let z = select_zone(d, zone)?;
    Ok(Plan {
        zone: z.map(|z| z.name.clone()),
        nftables: z.map(|z| nft::render(d, z)),
        net: z.map(|z| net::plan(d, z)).unwrap_or_default(),
    })
}
