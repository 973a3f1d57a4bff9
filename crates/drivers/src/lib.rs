//! Drivers: the only code that talks to the kernel or spawns system tools. Each applies its part
//! of a [`Plan`] idempotently and reports the result to the reconcile loop; a failed apply leaves
//! the previous state in force.

pub mod conntrackd;
pub mod consent;
pub mod ipsec;
mod ipsec_vici;
pub mod netlink;
pub mod nftables;
pub mod pipes;
pub mod router;
mod tool;
pub mod vrrp;
pub mod wg_sync;
pub mod wireguard;

use kawaii_plan::Plan;
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Worth retrying with backoff (a tool or the kernel was busy or failed transiently).
    #[error("{0}")]
    Transient(String),
    /// The plan cannot be applied as is (the kernel rejected it).
    #[error("{0}")]
    Rejected(String),
}

pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DriverError>> + Send + 'a>>;

/// One kernel subsystem's driver.
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;
    /// Makes the plan's part for this driver true. Idempotent.
    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a>;
}
