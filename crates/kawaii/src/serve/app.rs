//! Building the daemon: the command line's settings in, an [`App`] out (the store, the API
//! state, every driver and speaker, the metrics registry). Nothing runs yet; `mod.rs` spawns the
//! tasks that use it.

use super::status::RuleCounters;
use super::wake::{Wake, Wakes};
use crate::metrics::{
    ConntrackdMetrics, DaemonMetrics, IpsecMetrics, PipeMetrics, VrrpMetrics, WgMetrics,
};
use anyhow::Context;
use kawaii_api::ApiState;
use kawaii_drivers::{
    Driver, conntrack, conntrackd, consent, ipsec, netlink, nftables, pipes, ra, router, vrrp,
    wireguard,
};
use kawaii_store::Store;
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::sync::Arc;

/// What `kawaii serve` was started with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: PathBuf,
    pub zone: Option<String>,
    pub state_dir: PathBuf,
    /// Which store (`--store`): the SQLite file in the state directory, or etcd.
    pub store: crate::store_url::StoreArgs,
}

/// The built daemon. Shared by its tasks; the reconcile loop's own state lives in the loop.
pub struct App {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub api: ApiState,
    pub metrics: DaemonMetrics,
    pub counters: Arc<RuleCounters>,
    /// In apply order: the WireGuard device first (the addresses and routes on its interface
    /// come next), then addresses and routes, the firewall, connection sync, the proxies, IPsec.
    pub drivers: Vec<Arc<dyn Driver>>,
    pub router: Arc<router::Router>,
    pub pipes: Arc<pipes::PipesDriver>,
    pub ipsec: Arc<ipsec::Ipsec>,
    pub wireguard: Arc<wireguard::WireGuard>,
    /// VPC-peering consent speaker.
    pub consent: Arc<consent::Consent>,
    /// The VRRP speaker (multi-zone HA); idle without HA.
    pub vrrp: Arc<vrrp::Speaker>,
    /// HA: connection-state sync (conntrackd); its readiness holds the speaker's preemption.
    pub conntrackd: Arc<conntrackd::Conntrackd>,
    /// The conntrack table's fill and the public-side guard.
    pub conntrack: Arc<conntrack::Guard>,
    /// IPv6 router advertisements; withdrawn on shutdown.
    pub ra: Arc<ra::RouterAdverts>,
    pub wakes: Wakes,
    /// Why each VPC peering (by name) failed to apply, as the last reconcile pass found.
    pub peering_errors: std::sync::RwLock<
        std::collections::BTreeMap<String, kawaii_drivers::consent::PeeringStatus>,
    >,
    /// `api.ready_timeout` of the desired state last read.
    pub ready_timeout: std::sync::RwLock<std::time::Duration>,
}

impl App {
    pub async fn build(settings: Settings, wakes: Wakes) -> anyhow::Result<Arc<App>> {
        let (dir, args) = (settings.state_dir.clone(), settings.store.clone());
        let store: Arc<dyn Store> =
            tokio::task::spawn_blocking(move || crate::store_url::open(&args, &dir, true))
                .await??;
        let metrics = DaemonMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let nft = Arc::new(nftables::Nftables::new());
        let counters = Arc::new(RuleCounters::new(nft.clone()));
        registry.register_collector(Box::new(counters.clone()));
        let router = Arc::new(router::Router::new(&mut registry));
        let ipsec = Arc::new(ipsec::Ipsec::new(&settings.state_dir));
        registry.register_collector(Box::new(IpsecMetrics(ipsec.clone())));
        let vrrp = Arc::new(vrrp::Speaker::start().context("starting the VRRP thread")?);
        registry.register_collector(Box::new(VrrpMetrics(vrrp.clone())));
        let wireguard = Arc::new(wireguard::WireGuard::new());
        registry.register_collector(Box::new(WgMetrics(wireguard.clone())));
        let pipes = Arc::new(pipes::PipesDriver::new());
        registry.register_collector(Box::new(PipeMetrics(pipes.clone())));
        let conntrackd = Arc::new(conntrackd::Conntrackd::new(&settings.state_dir));
        registry.register_collector(Box::new(ConntrackdMetrics(conntrackd.clone())));
        let conntrack = Arc::new(conntrack::Guard::default());
        registry.register_collector(Box::new(crate::metrics::ConntrackMetrics(
            conntrack.clone(),
        )));
        let api = ApiState::new(store.clone(), registry);
        api.set_on_write(wakes.notifier(Wake::ApiWrite));
        let zone = settings.zone.clone();
        api.set_env_check(Arc::new(move |g| {
            crate::config::machine(g, zone.as_deref())
        }));
        let ra = Arc::new(ra::RouterAdverts::new());
        let drivers: Vec<Arc<dyn Driver>> = vec![
            wireguard.clone(),
            Arc::new(netlink::Netlink::new()),
            ra.clone(),
            nft,
            conntrackd.clone(),
            router.clone(),
            pipes.clone(),
            ipsec.clone(),
        ];
        let consent = consent::Consent::new(wakes.notifier(Wake::Consent));
        Ok(Arc::new(App {
            settings,
            store,
            api,
            metrics,
            counters,
            drivers,
            router,
            pipes,
            ipsec,
            wireguard,
            consent,
            vrrp,
            conntrackd,
            conntrack,
            ra,
            wakes,
            peering_errors: Default::default(),
            ready_timeout: std::sync::RwLock::new(kawaii_model::valid::DEFAULT_READY_TIMEOUT),
        }))
    }
}
