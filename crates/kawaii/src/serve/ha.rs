//! HA policies around the VRRP speaker: what this instance does when the set of zones whose
//! VIPs it holds changes (plan again; call the failed instance's VPN peers over; call its own
//! peers home when its zone comes back), and the gratuitous ARP for VIPs just taken.
//! The decisions are plain functions of the held sets and timers; [`follow_vrrp`] carries them out.

use super::app::App;
use super::wake::Wake;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The HA timers, as parameters so that the policies can be tested without waiting.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// How long after taking its own zone back an instance calls its VPN peers home: the
    /// siblings tell who their guests are every 0.5 s, so one round must have been heard.
    pub homecoming: Duration,
    /// How long a takeover waits for the gained zones' VIPs to be on the interfaces (the
    /// handshakes must leave from them), at most.
    pub vips_up: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            homecoming: Duration::from_millis(1500),
            vips_up: Duration::from_secs(1),
        }
    }
}

/// What to do after the held zones changed from `before` to `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start WireGuard handshakes with the peers of the instances of these zones (just taken).
    TakeOver(BTreeSet<String>),
    /// After `after`, if this instance still holds its own `zone`, call its guests home.
    CallHome { zone: String, after: Duration },
}

/// The takeover and homecoming policy.
pub fn on_held_change(
    before: &BTreeSet<String>,
    now: &BTreeSet<String>,
    own_zone: Option<&str>,
    timers: Timers,
) -> Vec<Action> {
    let gained: BTreeSet<String> = now.difference(before).cloned().collect();
    if gained.is_empty() {
        return Vec::new();
    }
    let home = own_zone
        .filter(|z| gained.contains(*z))
        .map(|z| Action::CallHome {
            zone: z.to_string(),
            after: timers.homecoming,
        });
    std::iter::once(Action::TakeOver(gained))
        .chain(home)
        .collect()
}

/// Follows the speaker's held zones until `stop`: every change wakes the reconcile loop (the
/// addresses, SNAT and openings follow it) and runs the policy's actions.
pub async fn follow_vrrp(app: Arc<App>, stop: CancellationToken, timers: Timers) {
    let mut owned = app.vrrp.owned();
    let mut owned6 = app.vrrp.owned6();
    let mut held = owned.borrow().clone();
    loop {
        // The IPv6 virtual routers' held zones move the IPv6 VIPs (and the router
        // advertisements): a change there replans too.
        tokio::select! {
            r = owned.changed() => if r.is_err() { break },
            r = owned6.changed() => {
                if r.is_err() { break }
                owned6.borrow_and_update();
                app.wakes.send(Wake::Vrrp);
                continue;
            },
            _ = stop.cancelled() => break,
        }
        owned6.borrow_and_update();
        app.wakes.send(Wake::Vrrp);
        let now = owned.borrow().clone();
        let own = app.settings.zone.as_deref();
        for action in on_held_change(&held, &now, own, timers) {
            match action {
                Action::TakeOver(zones) => {
                    // The reconcile pass woken above puts the VIPs on; wait (briefly) for it.
                    let until = tokio::time::Instant::now() + timers.vips_up;
                    while !zones.is_subset(&app.vrrp.announced())
                        && tokio::time::Instant::now() < until
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let t = app.wireguard.take_over(&zones).await;
                    if t.relocated {
                        // The failed sibling's peers are routed here again: plan it now.
                        app.wakes.send(Wake::EndpointSync);
                    }
                    if t.started > 0 {
                        info!(
                            peers = t.started,
                            "VIPs taken over: WireGuard handshakes started"
                        );
                    }
                }
                Action::CallHome { zone, after } => {
                    let app = app.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        if app.vrrp.owned().borrow().contains(&zone) {
                            let t = app.wireguard.take_over(&[zone].into()).await;
                            if t.started > 0 {
                                info!(
                                    peers = t.started,
                                    "own zone back: WireGuard peers called home"
                                );
                            }
                        }
                    });
                }
            }
        }
        held = now;
    }
}

/// Tells the VRRP speaker whether this node has its siblings' flows (the connection-sync
/// resync is done), until `stop`: a node that starts or recovers takes no VIPs from a live
/// sibling before that.
pub async fn follow_sync_ready(app: Arc<App>, stop: CancellationToken) {
    let mut ready = app.conntrackd.ready();
    loop {
        app.vrrp.set_sync_ready(*ready.borrow_and_update());
        tokio::select! {
            r = ready.changed() => if r.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
}

/// Gratuitous ARP for the held zones' VIPs, once per takeover.
pub fn announce_vips(app: &App, observed: &kawaii_plan::Observed) {
    let Some(held) = &observed.vip_zones else {
        return;
    };
    let now: BTreeSet<String> = app
        .vrrp
        .owned()
        .borrow()
        .intersection(held)
        .cloned()
        .collect();
    let started = std::time::Instant::now();
    for zone in app.vrrp.announce(&now) {
        info!(zone = %zone, took_us = started.elapsed().as_micros() as u64, "VIPs taken over; gratuitous ARP sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(z: &[&str]) -> BTreeSet<String> {
        z.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_failed_zone_taken_over_calls_its_peers_over_and_nobody_home() {
        let a = on_held_change(
            &set(&["b"]),
            &set(&["a", "b"]),
            Some("b"),
            Timers::default(),
        );
        assert_eq!(a, vec![Action::TakeOver(set(&["a"]))]);
    }

    #[test]
    fn the_own_zone_back_calls_its_peers_home_after_the_siblings_spoke() {
        let t = Timers {
            homecoming: Duration::from_millis(7),
            ..Timers::default()
        };
        let a = on_held_change(&set(&[]), &set(&["a"]), Some("a"), t);
        assert_eq!(
            a,
            vec![
                Action::TakeOver(set(&["a"])),
                Action::CallHome {
                    zone: "a".into(),
                    after: Duration::from_millis(7)
                }
            ]
        );
    }

    #[test]
    fn losing_zones_does_nothing_but_replan() {
        assert!(
            on_held_change(
                &set(&["a", "b"]),
                &set(&["a"]),
                Some("a"),
                Timers::default()
            )
            .is_empty()
        );
    }
}
