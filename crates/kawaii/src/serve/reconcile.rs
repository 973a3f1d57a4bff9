//! The reconcile loop: waits for a [`Wake`], reads the desired state, plans, hands the plan to
//! the drivers ([`Reconciler`]) and publishes the result. Failed applies are tried again with
//! backoff (transient errors soon, rejections slowly); an unchanged plan is re-checked now and
//! then so that drift in the kernel is repaired without a change.

use super::app::App;
use super::apply::{Outcome, Reconciler};
use super::wake::{Wake, WakeReceiver, reasons};
use crate::sd_notify::Systemd;
use kawaii_model::Desired;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info};

/// The first retry after a transient failure; doubles up to [`MAX_BACKOFF`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The first retry after a rejection (the plan is unchanged, so only the world can fix it).
const FIRST_RETRY_REJECTED: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs passes until a pass woken by [`Wake::Shutdown`] is done, or every sender is gone; tells
/// systemd it is ready after the first applied pass.
pub async fn run(app: Arc<App>, mut wakes: WakeReceiver, systemd: Arc<Systemd>) {
    let mut reconciler = Reconciler::new(app.drivers.clone());
    let mut backoff: Option<Duration> = None;
    app.wakes.send(Wake::Start);
    loop {
        let wait = backoff.unwrap_or(kawaii_drivers::netlink::RESYNC);
        let why = tokio::select! {
            w = wakes.next() => match w {
                Some(w) => w,
                None => return,
            },
            _ = tokio::time::sleep(wait) => BTreeSet::from([if backoff.is_some() { Wake::Retry } else { Wake::Timer }]),
        };
        debug!(why = %reasons(&why), "reconcile woken");
        if why.contains(&Wake::Retry) {
            info!("retrying the failed apply");
        }
        let outcome = pass(&app, &mut reconciler).await;
        backoff = match outcome {
            Outcome::Applied => {
                systemd.ready();
                None
            }
            Outcome::Transient => Some(next(backoff, FIRST_RETRY)),
            Outcome::Rejected => Some(next(backoff, FIRST_RETRY_REJECTED)),
        };
        if why.contains(&Wake::Shutdown) {
            return;
        }
    }
}

fn next(backoff: Option<Duration>, first: Duration) -> Duration {
    backoff.map_or(first, |b| (b * 2).clamp(first, MAX_BACKOFF))
}

/// One pass: store → validate → plan → drivers → status.
async fn pass(app: &App, reconciler: &mut Reconciler) -> Outcome {
    let t0 = std::time::Instant::now();
    app.api.pass_started(t0);
    let outcome = pass_inner(app, reconciler).await;
    let status = app.api.status();
    let bound = app
        .ready_timeout
        .read()
        .map(|b| *b)
        .unwrap_or(kawaii_model::valid::DEFAULT_READY_TIMEOUT);
    // Behind: the data plane is not the desired state (a store that cannot be read is told
    // by `/readyz` on its own).
    app.api.pass_done(
        std::time::Instant::now(),
        status.applied_revision < status.desired_revision || status.degraded.is_some(),
        bound,
    );
    outcome
}

async fn pass_inner(app: &App, reconciler: &mut Reconciler) -> Outcome {
    let t0 = std::time::Instant::now();
    let snap = match app.store.current() {
        Ok(s) => s,
        Err(e) => {
            error!(%e, "reading the store failed");
            return Outcome::Transient;
        }
    };
    app.metrics.desired_revision.set(snap.revision as i64);
    let read_us = t0.elapsed().as_micros() as u64;
    let report = match kawaii_model::validate(&snap.gateway) {
        Ok(r) => r,
        Err(e) => {
            // Only validated documents are committed, so this is a bug or a newer schema.
            error!(%e, revision = snap.revision, "stored state does not validate");
            return Outcome::Rejected;
        }
    };
    let validate_us = t0.elapsed().as_micros() as u64 - read_us;
    if let Ok(mut b) = app.ready_timeout.write() {
        *b = report.desired.api.ready_timeout;
    }
    super::files::refresh_tokens(app, &report.desired);
    app.consent.set_intents(consent_intents(&report.desired));
    let ingress = &report.desired.ingress;
    app.conntrack
        .configure(ingress.public_conntrack_percent, ingress.conntrack_max);
    let observed = kawaii_plan::Observed {
        consented_peerings: app.consent.consented(),
        wg_elsewhere: app.wireguard.elsewhere(),
        // HA: the zones whose VIPs the VRRP speaker says this node holds.
        vip_zones: report
            .desired
            .ha
            .is_some()
            .then(|| app.vrrp.owned().borrow().clone()),
        // HA: the zones whose IPv6 VIPs it holds (their IPv6 virtual routers).
        vip6_zones: report
            .desired
            .ha
            .is_some()
            .then(|| app.vrrp.owned6().borrow().clone()),
        conntrack_pressure: app.conntrack.engaged(),
    };
    let zone = app.settings.zone.as_deref();
    let plan = match kawaii_plan::plan_with(&report.desired, zone, &observed) {
        Ok(p) => p,
        Err(e) => {
            error!(%e, "planning failed");
            app.api.update_status(|s| {
                s.plan_error = Some(e.to_string());
                s.degraded = Some(format!("planning failed: {e}"));
            });
            return Outcome::Rejected;
        }
    };
    let planned_us = t0.elapsed().as_micros() as u64;
    // HA: the speaker follows the plan (it announces the plan's VIPs).
    app.vrrp.configure(plan.vrrp.clone());
    let announce = || super::ha::announce_vips(app, &observed);
    let mut done = reconciler.apply(snap.revision, &plan, &announce).await;
    let degraded = name_culprits(app, &report.desired, &mut done.drivers);
    // Where a reconcile spends its time (the change -> converged tail).
    debug!(
        revision = snap.revision,
        read_us,
        validate_us,
        plan_us = planned_us - read_us - validate_us,
        apply_us = t0.elapsed().as_micros() as u64 - planned_us,
        "reconcile phases"
    );
    let ok = done.outcome == Outcome::Applied;
    let result = if ok { "ok" } else { "failed" };
    app.metrics
        .reconciles
        .get_or_create(&vec![("result".into(), result.into())])
        .inc();
    app.metrics.applied_revision.set(done.applied as i64);
    // HA: a failed data plane lowers this node's priorities; held VIPs not announced yet (the
    // addresses were there already, or their driver failed) are announced now.
    app.vrrp.set_healthy(ok);
    announce();
    app.api.set_wg_public_key(app.wireguard.public_key());
    app.api.update_status(|s| {
        s.gateway = report.desired.name.clone();
        s.zone = plan.zone.clone();
        s.desired_revision = snap.revision;
        s.applied_revision = done.applied;
        s.drivers = done.drivers;
        s.plan_error = None;
        s.degraded = degraded;
        s.ready = s.ready || ok;
    });
    if plan.nftables.is_some() {
        // Off the reconcile path: the next change must not wait for a counter read-back.
        app.counters.refresh_soon(&app.api);
    }
    done.outcome
}

/// Names the resource each failed driver's error is about (in its status, and for a peering in
/// the peering's state) and says why the data plane is degraded, if it is.
fn name_culprits(
    app: &App,
    d: &Desired,
    drivers: &mut [kawaii_api::DriverStatus],
) -> Option<String> {
    let mut peerings = std::collections::BTreeMap::new();
    let mut why = Vec::new();
    for s in drivers.iter_mut().filter(|s| !s.ok) {
        let error = s.error.clone().unwrap_or_default();
        let culprit = kawaii_plan::blame::blame(d, &error);
        if let Some(c) = &culprit {
            s.resource = Some(c.path.clone());
            if let Some(("vpc_peerings", name)) = &c.name
                && let Some(failed) = failed_peering(d, name, format!("{} driver: {error}", s.name))
            {
                peerings.insert(name.clone(), failed);
            }
        }
        why.push(match culprit {
            Some(c) => format!("driver {} failing on {c}: {error}", s.name),
            None => format!("driver {} failing: {error}", s.name),
        });
    }
    if let Ok(mut p) = app.peering_errors.write() {
        *p = peerings;
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The status of the peering `name` whose route or rules could not be applied.
fn failed_peering(
    d: &Desired,
    name: &str,
    error: String,
) -> Option<kawaii_drivers::consent::PeeringStatus> {
    let p = d.vpc_peerings.iter().find(|p| p.name == name)?;
    Some(kawaii_drivers::consent::PeeringStatus {
        name: name.to_string(),
        subnet: p.subnet,
        local_subnet: d.private_subnet?,
        local_alias: p.local_alias,
        subnet6: p.subnet6,
        local_subnet6: p.subnet6.and(d.private_subnet6),
        state: "failed",
        since: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        error: Some(error),
    })
}

/// The peerings this gateway declares with mutual consent, for the consent speaker.
fn consent_intents(d: &Desired) -> Vec<kawaii_drivers::consent::Intent> {
    let Some(ours) = d.private_subnet else {
        return Vec::new();
    };
    d.vpc_peerings
        .iter()
        .filter_map(|p| {
            Some(kawaii_drivers::consent::Intent {
                name: p.name.clone(),
                via: p.via,
                ours,
                // Aliased: the hellos say how each side sees the other, so both agree on it.
                local_alias: p.local_alias,
                theirs: p.subnet,
                // Dual stack: one consent covers both families; the hellos go over IPv6.
                via6: p.via6,
                ours6: p.subnet6.and(d.private_subnet6),
                theirs6: p.subnet6,
                key: p.consent_key.clone()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_its_floor_up_to_the_cap() {
        let t = next(None, FIRST_RETRY);
        assert_eq!(t, FIRST_RETRY);
        assert_eq!(next(Some(t), FIRST_RETRY), FIRST_RETRY * 2);
        // A rejection after transient failures waits at least its own floor.
        assert_eq!(next(Some(t), FIRST_RETRY_REJECTED), FIRST_RETRY_REJECTED);
        assert_eq!(
            next(Some(Duration::from_secs(20)), FIRST_RETRY),
            MAX_BACKOFF
        );
    }
}
