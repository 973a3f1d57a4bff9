//! One pass over the drivers: each applies the plan in order, the effects it reports are handed
//! to every driver and to the announcer, and the result per driver is kept here (the revision it
//! last applied), not read back from the API. Knows no driver by name.

use kawaii_api::{DriverStatus, ErrorKind};
use kawaii_drivers::{Driver, DriverName, Effect};
use kawaii_plan::Plan;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::{error, info};

/// How a pass ended, for the loop's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// At least one driver failed with an error worth retrying soon.
    Transient,
    /// Every failure was a rejection: retried slowly (the cause may lie outside the plan).
    Rejected,
}

/// The drivers and what each last applied.
pub struct Reconciler {
    drivers: Vec<Arc<dyn Driver>>,
    applied: BTreeMap<DriverName, u64>,
}

/// What one pass did.
#[derive(Debug, Clone)]
pub struct Pass {
    pub drivers: Vec<DriverStatus>,
    /// The revision every driver has applied (the minimum over drivers).
    pub applied: u64,
    pub outcome: Outcome,
}

impl Reconciler {
    pub fn new(drivers: Vec<Arc<dyn Driver>>) -> Reconciler {
        Reconciler {
            drivers,
            applied: BTreeMap::new(),
        }
    }

    /// Applies `plan` (desired revision `revision`) with every driver in order. `announce` is
    /// called when a driver added addresses, before the next driver runs (an IKE answer to a
    /// VIP just taken over must not go to the failed instance's MAC address).
    pub async fn apply(
        &mut self,
        revision: u64,
        plan: &Plan,
        announce: &(dyn Fn() + Sync),
    ) -> Pass {
        let mut statuses = Vec::with_capacity(self.drivers.len());
        let mut outcome = Outcome::Applied;
        for driver in &self.drivers {
            let name = driver.name();
            let started = std::time::Instant::now();
            let r = driver.apply(plan).await;
            let at = Some(kawaii_store::now_rfc3339());
            match r {
                Ok(applied) => {
                    info!(driver = %name, revision, took_ms = started.elapsed().as_millis() as u64, "applied");
                    for effect in &applied.effects {
                        for d in &self.drivers {
                            d.react(effect);
                        }
                        if let Effect::AddressesAdded(_) = effect {
                            announce();
                        }
                    }
                    self.applied.insert(name, revision);
                    statuses.push(DriverStatus {
                        name: name.to_string(),
                        ok: true,
                        applied_revision: revision,
                        error: None,
                        error_kind: None,
                        resource: None,
                        last_apply: at,
                    });
                }
                Err(e) => {
                    let kind = if e.is_transient() {
                        outcome = Outcome::Transient;
                        ErrorKind::Transient
                    } else {
                        if outcome == Outcome::Applied {
                            outcome = Outcome::Rejected;
                        }
                        ErrorKind::Rejected
                    };
                    error!(driver = %name, revision, error = %e, source = ?std::error::Error::source(&e).map(|s| s.to_string()), "apply failed; the previous state stays in force");
                    statuses.push(DriverStatus {
                        name: name.to_string(),
                        ok: false,
                        applied_revision: self.applied.get(&name).copied().unwrap_or(0),
                        error: Some(e.to_string()),
                        error_kind: Some(kind),
                        resource: None,
                        last_apply: at,
                    });
                }
            }
        }
        let applied = statuses
            .iter()
            .map(|s| s.applied_revision)
            .min()
            .unwrap_or(revision);
        Pass {
            drivers: statuses,
            applied,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kawaii_drivers::{Applied, ApplyFuture, DriverError};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A driver that reports scripted results and records what it was told.
    struct Fake {
        name: DriverName,
        results: Mutex<Vec<Result<Applied, DriverError>>>,
        reacted: Mutex<Vec<Effect>>,
    }

    impl Fake {
        fn new(name: DriverName, results: Vec<Result<Applied, DriverError>>) -> Arc<Fake> {
            Arc::new(Fake {
                name,
                results: Mutex::new(results),
                reacted: Mutex::default(),
            })
        }
        fn reacted(&self) -> Vec<Effect> {
            self.reacted.lock().expect("lock").clone()
        }
    }

    impl Driver for Fake {
        fn name(&self) -> DriverName {
            self.name
        }
        fn apply<'a>(&'a self, _plan: &'a Plan) -> ApplyFuture<'a> {
            let next = self.results.lock().expect("lock").remove(0);
            Box::pin(async move { next })
        }
        fn react(&self, effect: &Effect) {
            self.reacted.lock().expect("lock").push(effect.clone());
        }
    }

    fn plan() -> Plan {
        Plan::default()
    }

    #[tokio::test]
    async fn a_recreated_link_is_handed_to_every_driver() {
        let link = Effect::LinkRecreated("wg0".into());
        let device = Fake::new(DriverName::WireGuard, vec![Ok(Applied::with(link.clone()))]);
        let addresses = Fake::new(DriverName::Netlink, vec![Ok(Applied::quiet())]);
        let mut r = Reconciler::new(vec![device.clone(), addresses.clone()]);
        let announced = AtomicUsize::new(0);
        let pass = r
            .apply(3, &plan(), &|| {
                announced.fetch_add(1, Ordering::SeqCst);
            })
            .await;
        // The driver after the device (addresses and routes) hears of it before it applies.
        assert_eq!(addresses.reacted(), vec![link]);
        assert_eq!(announced.load(Ordering::SeqCst), 0);
        assert_eq!(pass.outcome, Outcome::Applied);
        assert_eq!(pass.applied, 3);
    }

    #[tokio::test]
    async fn added_addresses_are_announced_before_the_next_driver_runs() {
        let added = Effect::AddressesAdded(vec!["203.0.113.10".parse().expect("ip")]);
        let addresses = Fake::new(DriverName::Netlink, vec![Ok(Applied::with(added))]);
        let announced = Arc::new(AtomicUsize::new(0));
        // The next driver records how many announcements it saw when it applied.
        struct Witness(Arc<AtomicUsize>, Mutex<Option<usize>>);
        impl Driver for Witness {
            fn name(&self) -> DriverName {
                DriverName::Ipsec
            }
            fn apply<'a>(&'a self, _plan: &'a Plan) -> ApplyFuture<'a> {
                *self.1.lock().expect("lock") = Some(self.0.load(Ordering::SeqCst));
                Box::pin(async { Ok(Applied::quiet()) })
            }
        }
        let witness = Arc::new(Witness(announced.clone(), Mutex::new(None)));
        let mut r = Reconciler::new(vec![addresses, witness.clone()]);
        let counter = announced.clone();
        r.apply(1, &plan(), &move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        assert_eq!(*witness.1.lock().expect("lock"), Some(1));
    }

    #[tokio::test]
    async fn a_failed_driver_keeps_the_revision_it_last_applied() {
        let flaky = Fake::new(
            DriverName::Nftables,
            vec![
                Ok(Applied::quiet()),
                Err(DriverError::rejected("nft: syntax error")),
                Err(DriverError::transient("nft timed out")),
            ],
        );
        let steady = Fake::new(
            DriverName::Router,
            (0..3).map(|_| Ok(Applied::quiet())).collect(),
        );
        let mut r = Reconciler::new(vec![flaky, steady]);
        let pass = r.apply(5, &plan(), &|| {}).await;
        assert_eq!((pass.applied, pass.outcome), (5, Outcome::Applied));
        let pass = r.apply(6, &plan(), &|| {}).await;
        assert_eq!((pass.applied, pass.outcome), (5, Outcome::Rejected));
        assert_eq!(pass.drivers[0].applied_revision, 5);
        assert_eq!(pass.drivers[0].error_kind, Some(ErrorKind::Rejected));
        assert_eq!(pass.drivers[1].applied_revision, 6);
        let pass = r.apply(7, &plan(), &|| {}).await;
        assert_eq!((pass.applied, pass.outcome), (5, Outcome::Transient));
    }

    #[tokio::test]
    async fn a_driver_that_never_applied_reports_revision_zero() {
        let broken = Fake::new(
            DriverName::Ipsec,
            vec![Err(DriverError::transient("charon"))],
        );
        let mut r = Reconciler::new(vec![broken]);
        let pass = r.apply(2, &plan(), &|| {}).await;
        assert_eq!(pass.applied, 0);
        assert_eq!(pass.drivers[0].error.as_deref(), Some("charon"));
    }
}
