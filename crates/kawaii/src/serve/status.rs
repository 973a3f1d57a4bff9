//! Status the API shows: the sections read live from the drivers at each `/v1/status` request,
//! and the two reads that cost a process or a device query (the nftables rule counters, the
//! WireGuard device's peer stats), refreshed in the background.

use super::app::App;
use crate::metrics::{COUNTER, family};
use kawaii_api::{ApiState, Details};
use kawaii_drivers::nftables::{Nftables, RuleCounter};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the background reads run.
const REFRESH: Duration = Duration::from_secs(2);

/// The nftables rule counters, read back from the kernel; exported on `/metrics` and in status.
#[derive(Debug, Default)]
pub struct RuleCounters {
    /// The driver that reads them (and keeps the last read for its next patch).
    nftables: Arc<Nftables>,
    rules: RwLock<Vec<RuleCounter>>,
    /// A read-back after an apply is running; `wanted` asks it for one more.
    running: AtomicBool,
    wanted: AtomicBool,
}

impl RuleCounters {
    pub fn new(nftables: Arc<Nftables>) -> RuleCounters {
        RuleCounters {
            nftables,
            ..RuleCounters::default()
        }
    }

    /// Refreshes in the background after an apply. Requests made while one runs, or within a
    /// second of its start, coalesce into one more read after that, so a burst of changes does
    /// not run an `nft list` per change (each competes with the next apply for the CPU).
    pub fn refresh_soon(self: &Arc<Self>, api: &ApiState) {
        self.wanted.store(true, SeqCst);
        if self.running.swap(true, SeqCst) {
            return;
        }
        let (me, api) = (self.clone(), api.clone());
        tokio::spawn(async move {
            loop {
                while me.wanted.swap(false, SeqCst) {
                    let started = tokio::time::Instant::now();
                    me.refresh(&api).await;
                    tokio::time::sleep_until(started + Duration::from_secs(1)).await;
                }
                me.running.store(false, SeqCst);
                // A request between the last check and the store above saw `running` set.
                if !me.wanted.load(SeqCst) || me.running.swap(true, SeqCst) {
                    break;
                }
            }
        });
    }

    async fn refresh(&self, api: &ApiState) {
        let Ok(list) = self.nftables.read_counters().await else {
            return;
        };
        api.update_status(|s| s.details.rules = Some(list.clone()));
        if let Ok(mut r) = self.rules.write() {
            *r = list;
        }
    }
}

impl prometheus_client::collector::Collector for RuleCounters {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let rules = self.rules.read().map(|r| r.clone()).unwrap_or_default();
        // The same chain names as `/v1/status` (and `nft list`): `egress`, `ingress`, `input`...
        let labels = |r: &RuleCounter| [("chain", r.chain.clone()), ("rule", r.rule.clone())];
        let help = "Packets matched per firewall rule";
        family(
            &mut enc,
            ("kawaii_rule_packets", help, COUNTER),
            &rules,
            |r| (labels(r), r.packets),
        )?;
        let help = "Bytes matched per firewall rule";
        family(
            &mut enc,
            ("kawaii_rule_bytes", help, COUNTER),
            &rules,
            |r| (labels(r), r.bytes),
        )?;
        let drops: Vec<_> = rules.iter().filter(|r| r.rule == "drop").collect();
        let help = "Packets dropped at the end of a chain (default deny)";
        family(
            &mut enc,
            ("kawaii_chain_drops", help, COUNTER),
            &drops,
            |r| ([("chain", r.chain.clone())], r.packets),
        )
    }
}

/// The background reads, every [`REFRESH`] until `stop`.
pub async fn refresh(app: Arc<App>, stop: CancellationToken) {
    loop {
        app.counters.refresh(&app.api).await;
        app.wireguard.refresh().await;
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = stop.cancelled() => break,
        }
    }
}

/// The sections read from the drivers' in-memory views at each `/v1/status` request: VRRP,
/// router, pipes, IPsec, VPC peerings and WireGuard (its counters as of the last device read).
/// A weak reference: the API state must not keep the daemon's drivers alive.
pub fn live(app: &Arc<App>) -> kawaii_api::LiveDetails {
    let weak = Arc::downgrade(app);
    Arc::new(move |details: &mut Details| {
        let Some(app) = weak.upgrade() else {
            return;
        };
        let vrrp = app.vrrp.status();
        details.vrrp = (!vrrp.is_empty()).then_some(vrrp);
        details.router = Some(app.router.status());
        details.ipsec = Some(app.ipsec.view());
        let pipes = app.pipes.status();
        details.pipes = (!pipes.is_empty()).then_some(pipes);
        details.vpc_peerings = Some(peerings(&app));
        details.wireguard = app.wireguard.status();
        details.conntrack_sync = app.conntrackd.status();
        details.conntrack = Some(app.conntrack.status());
    })
}

/// The consent speaker's peerings, with the state `failed` and the reason where the last
/// reconcile pass could not apply a peering (its route refused, say).
fn peerings(app: &App) -> Vec<kawaii_drivers::consent::PeeringStatus> {
    let mut list = app.consent.status();
    let errors = app
        .peering_errors
        .read()
        .map(|e| e.clone())
        .unwrap_or_default();
    for (name, failed) in errors {
        match list.iter_mut().find(|p| p.name == name) {
            Some(p) => {
                p.state = "failed";
                p.error = failed.error;
            }
            None => list.push(failed),
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/metrics` labels a rule's counter with the chain `/v1/status` lists it under.
    #[test]
    fn metrics_and_status_name_chains_alike() {
        let counters = RuleCounters::default();
        let list = vec![
            RuleCounter {
                chain: "egress".into(),
                rule: "egress-3".into(),
                packets: 3,
                bytes: 180,
            },
            RuleCounter {
                chain: "ingress".into(),
                rule: "ingress-1".into(),
                packets: 1,
                bytes: 60,
            },
            RuleCounter {
                chain: "input".into(),
                rule: "drop".into(),
                packets: 7,
                bytes: 420,
            },
        ];
        if let Ok(mut r) = counters.rules.write() {
            *r = list.clone();
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Arc::new(counters)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for r in &list {
            let want = format!(
                "kawaii_rule_packets_total{{chain=\"{}\",rule=\"{}\"}} {}",
                r.chain, r.rule, r.packets
            );
            assert!(text.contains(&want), "no {want} in\n{text}");
        }
        assert!(
            text.contains("kawaii_chain_drops_total{chain=\"input\"} 7"),
            "{text}"
        );
    }
}
