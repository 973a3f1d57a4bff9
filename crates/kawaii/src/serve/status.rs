//! Status the API shows: the sections read live from the drivers at each `/v1/status` request,
//! and the two reads that cost a process or a device query (the nftables rule counters, the
//! WireGuard device's peer stats), refreshed in the background.

use super::app::App;
use crate::metrics::{COUNTER, family};
use kawaii_api::{ApiState, Details};
use kawaii_drivers::nftables::RuleCounter;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the background reads run.
const REFRESH: Duration = Duration::from_secs(2);

/// The nftables rule counters, read back from the kernel; exported on `/metrics` and in status.
#[derive(Debug, Default)]
pub struct RuleCounters {
    rules: RwLock<Vec<RuleCounter>>,
    /// A read-back after an apply is running; `wanted` asks it for one more.
    running: AtomicBool,
    wanted: AtomicBool,
}

impl RuleCounters {
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
        let Ok(list) = kawaii_drivers::nftables::counters().await else {
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
        // Label by hook: egress rules filter forwarded traffic, ingress rules the input path.
        let labels = |r: &RuleCounter| {
            let chain = match r.chain.as_str() {
                "egress" => "forward",
                "ingress" => "input",
                other => other,
            };
            [("chain", chain.to_string()), ("rule", r.rule.clone())]
        };
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
        details.vpc_peerings = Some(app.consent.status());
        details.wireguard = app.wireguard.status();
        details.conntrack_sync = app.conntrackd.status();
        details.conntrack = Some(app.conntrack.status());
    })
}
