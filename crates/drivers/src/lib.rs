//! Drivers: the only code that talks to the kernel or spawns system tools. Each applies its part
//! of a [`Plan`] idempotently and reports the result to the reconcile loop; a failed apply leaves
//! the previous state in force.

mod child;
pub mod conntrack;
pub mod conntrackd;
pub mod consent;
pub mod environment;
pub mod ipsec;
mod ipsec_vici;
pub mod netlink;
pub mod nftables;
pub mod pipes;
pub mod ra;
pub mod router;
pub mod secret_file;
mod tool;
pub mod vrrp;
pub mod wg_sync;
pub mod wire;
pub mod wireguard;

use kawaii_plan::Plan;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// "Something this component observes changed; plan again." Given to the speakers (consent,
/// endpoint sync) by the daemon, which turns each call into a typed wake of its reconcile loop.
pub type Changed = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Which driver: the reconcile loop reports, logs and labels by it, and never branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriverName {
    WireGuard,
    Netlink,
    Nftables,
    Router,
    Pipes,
    Ipsec,
    Conntrackd,
    RouterAdverts,
}

impl DriverName {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverName::WireGuard => "wireguard",
            DriverName::Netlink => "netlink",
            DriverName::Nftables => "nftables",
            DriverName::Router => "router",
            DriverName::Pipes => "pipes",
            DriverName::Ipsec => "ipsec",
            DriverName::Conntrackd => "conntrackd",
            DriverName::RouterAdverts => "router-adverts",
        }
    }
}

impl std::fmt::Display for DriverName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something an apply did that other parts of the gateway must react to. The reconcile loop
/// hands each effect to every driver ([`Driver::react`]) and to its own policies (announcing
/// VIPs), so no driver needs to know another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The interface was created anew: it has no addresses or routes (a driver that keeps a
    /// cache of what it put on it must look at the kernel again).
    LinkRecreated(String),
    /// These addresses were just added to this node's interfaces (a VIP taken over: neighbours
    /// must hear of it before anything is sent from it).
    AddressesAdded(Vec<IpAddr>),
}

/// What a successful apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub effects: Vec<Effect>,
}

impl Applied {
    /// Nothing for anyone else to react to.
    pub fn quiet() -> Applied {
        Applied::default()
    }

    pub fn with(effect: Effect) -> Applied {
        Applied {
            effects: vec![effect],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Worth retrying with backoff (a tool or the kernel was busy or failed transiently).
    #[error("{what}")]
    Transient {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The plan cannot be applied as is (the kernel or a peer tool rejected it): reported, and
    /// tried again only when something changes (or after a long while, in case the cause was
    /// outside the plan).
    #[error("{what}")]
    Rejected {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl DriverError {
    pub fn transient(what: impl Into<String>) -> DriverError {
        DriverError::Transient {
            what: what.into(),
            source: None,
        }
    }

    pub fn rejected(what: impl Into<String>) -> DriverError {
        DriverError::Rejected {
            what: what.into(),
            source: None,
        }
    }

    /// `what` failed because of `source` (kept as the error's `source()`).
    pub fn transient_from(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> DriverError {
        let (what, source) = with_source(what.into(), source);
        DriverError::Transient { what, source }
    }

    /// `what` was refused because of `source` (kept as the error's `source()`).
    pub fn rejected_from(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> DriverError {
        let (what, source) = with_source(what.into(), source);
        DriverError::Rejected { what, source }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, DriverError::Transient { .. })
    }
}

type Source = Option<Box<dyn std::error::Error + Send + Sync>>;

/// `what: source` (or the source alone when there is nothing to add), and the source kept.
fn with_source(
    what: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> (String, Source) {
    let what = if what.is_empty() {
        source.to_string()
    } else {
        format!("{what}: {source}")
    };
    (what, Some(Box::new(source)))
}

/// The plan section a driver applied last, so that an unchanged section costs nothing.
#[derive(Debug)]
pub struct LastApplied<T>(std::sync::Mutex<Option<T>>);

impl<T> Default for LastApplied<T> {
    fn default() -> Self {
        LastApplied(std::sync::Mutex::new(None))
    }
}

impl<T: PartialEq + Clone> LastApplied<T> {
    /// Whether `section` is what was applied last.
    pub fn is(&self, section: &T) -> bool {
        self.0
            .lock()
            .map(|l| l.as_ref() == Some(section))
            .unwrap_or(false)
    }

    /// Remembers `section` as applied.
    pub fn set(&self, section: &T) {
        if let Ok(mut l) = self.0.lock() {
            *l = Some(section.clone());
        }
    }
}

pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<Applied, DriverError>> + Send + 'a>>;

/// One kernel subsystem's driver.
pub trait Driver: Send + Sync {
    fn name(&self) -> DriverName;
    /// Makes the plan's part for this driver true. Idempotent.
    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a>;
    /// Another driver's apply had `effect`; by default nothing to do.
    fn react(&self, effect: &Effect) {
        let _ = effect;
    }
}
