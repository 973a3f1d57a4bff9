//! `kawaii serve`: the store, the config file (applied when its content changes, on SIGHUP, and
//! when it changes on disk), the API server, and the reconcile loop that re-plans and hands the
//! plan to the drivers after every accepted change.

use crate::config;
use crate::metrics::{
    COUNTER, ConntrackdMetrics, IpsecMetrics, PipeMetrics, VrrpMetrics, WgMetrics, family,
};
use anyhow::Context;
use kawaii_api::{ApiState, DriverStatus, Status};
use kawaii_drivers::Driver;
use kawaii_model::valid::{Role, TokenSpec};
use kawaii_model::{Desired, Gateway};
use kawaii_store::{Actor, SqliteStore, Store};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tracing::{debug, error, info, warn};

const FILE_HASH_KEY: &str = "config_file_sha256";
const BOOTSTRAP_TOKEN: &str = "admin.token";
/// How long SIGTERM waits for proxied connections to finish.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
struct Metrics {
    desired_revision: Gauge,
    applied_revision: Gauge,
    reconciles: Family<Vec<(String, String)>, Counter>,
    config_reloads: Family<Vec<(String, String)>, Counter>,
}

impl Metrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "kawaii_desired_revision",
            "Revision of the desired state in the store",
            self.desired_revision.clone(),
        );
        r.register(
            "kawaii_applied_revision",
            "Revision every driver has applied",
            self.applied_revision.clone(),
        );
        r.register(
            "kawaii_reconciles",
            "Reconcile passes by result",
            self.reconciles.clone(),
        );
        r.register(
            "kawaii_config_reloads",
            "Config file reloads by result",
            self.config_reloads.clone(),
        );
    }
}

pub fn run(config: PathBuf, zone: Option<String>, state: PathBuf) -> anyhow::Result<ExitCode> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(daemon(config, zone, state))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KAWAII_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

struct Daemon {
    store: Arc<dyn Store>,
    api: ApiState,
    config: PathBuf,
    zone: Option<String>,
    state_dir: PathBuf,
    metrics: Metrics,
    drivers: Vec<Arc<dyn Driver>>,
    router: Arc<kawaii_drivers::router::Router>,
    ipsec: Arc<kawaii_drivers::ipsec::Ipsec>,
    counters: Arc<RuleCounters>,
    /// VPC-peering consent speaker; its changes re-plan through `replan`.
    consent: Arc<kawaii_drivers::consent::Consent>,
    /// Woken when something observed (not the store) changes what the plan must be.
    replan: Arc<Notify>,
    /// The VRRP speaker (multi-zone HA); idle without HA.
    vrrp: Arc<kawaii_drivers::vrrp::Speaker>,
    /// The userspace WireGuard device.
    wireguard: Arc<kawaii_drivers::wireguard::WireGuard>,
    netlink: Arc<kawaii_drivers::netlink::Netlink>,
    pipes: Arc<kawaii_drivers::pipes::PipesDriver>,
    /// HA: connection-state sync (conntrackd); its readiness holds the speaker's preemption.
    conntrackd: Arc<kawaii_drivers::conntrackd::Conntrackd>,
}

/// The nftables rule counters, read back from the kernel; exported on `/metrics` and in status.
#[derive(Debug, Default)]
struct RuleCounters {
    rules: std::sync::RwLock<Vec<kawaii_drivers::nftables::RuleCounter>>,
    /// A read-back after an apply is running; `wanted` asks it for one more.
    running: std::sync::atomic::AtomicBool,
    wanted: std::sync::atomic::AtomicBool,
}

impl RuleCounters {
    /// Refreshes in the background after an apply. Requests made while one runs, or within a
    /// second of its start, coalesce into one more read after that, so a burst of changes does
    /// not run an `nft list` per change (each competes with the next apply for the CPU).
    fn refresh_soon(self: &Arc<Self>, api: &ApiState) {
        use std::sync::atomic::Ordering::SeqCst;
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
        api.update_status(|s| {
            s.details.insert(
                "rules".into(),
                serde_json::to_value(&list).unwrap_or_default(),
            );
        });
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
        let labels = |r: &kawaii_drivers::nftables::RuleCounter| {
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

async fn daemon(
    config: PathBuf,
    zone: Option<String>,
    state_dir: PathBuf,
) -> anyhow::Result<ExitCode> {
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking({
            let dir = state_dir.clone();
            move || SqliteStore::open(&dir)
        })
        .await?
        .with_context(|| format!("opening the store in {}", state_dir.display()))?,
    );
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let counters = Arc::new(RuleCounters::default());
    registry.register_collector(Box::new(counters.clone()));
    let router = Arc::new(kawaii_drivers::router::Router::new(&mut registry));
    let ipsec = Arc::new(kawaii_drivers::ipsec::Ipsec::new(&state_dir));
    registry.register_collector(Box::new(IpsecMetrics(ipsec.clone())));
    let vrrp =
        Arc::new(kawaii_drivers::vrrp::Speaker::start().context("starting the VRRP thread")?);
    registry.register_collector(Box::new(VrrpMetrics(vrrp.clone())));
    let wireguard = Arc::new(kawaii_drivers::wireguard::WireGuard::new());
    registry.register_collector(Box::new(WgMetrics(wireguard.clone())));
    let netlink = Arc::new(kawaii_drivers::netlink::Netlink::new());
    let pipes = Arc::new(kawaii_drivers::pipes::PipesDriver::new());
    registry.register_collector(Box::new(PipeMetrics(pipes.clone())));
    let conntrackd = Arc::new(kawaii_drivers::conntrackd::Conntrackd::new(&state_dir));
    registry.register_collector(Box::new(ConntrackdMetrics(conntrackd.clone())));
    // A node that starts or recovers takes no VIPs from a live sibling before its resync.
    tokio::spawn({
        let (mut ready, speaker) = (conntrackd.ready(), vrrp.clone());
        async move {
            loop {
                speaker.set_sync_ready(*ready.borrow_and_update());
                if ready.changed().await.is_err() {
                    break;
                }
            }
        }
    });
    let api = ApiState::new(store.clone(), registry);
    // The device first: the addresses and routes on its interface come next.
    let drivers: Vec<Arc<dyn Driver>> = vec![
        wireguard.clone(),
        netlink.clone(),
        Arc::new(kawaii_drivers::nftables::Nftables::new()),
        conntrackd.clone(),
        router.clone(),
        pipes.clone(),
        ipsec.clone(),
    ];
    let replan = Arc::new(Notify::new());
    let consent = kawaii_drivers::consent::Consent::new(replan.clone());
    let d = Arc::new(Daemon {
        store,
        api,
        config,
        zone,
        state_dir,
        metrics,
        drivers,
        router,
        ipsec,
        counters,
        consent,
        replan,
        vrrp,
        wireguard,
        netlink,
        pipes,
        conntrackd,
    });

    // The file first: a good file that changed since it was last applied becomes the state.
    match d.apply_file().await {
        Ok(_) => {}
        Err(errors) if d.store.current()?.revision == 0 => {
            for e in &errors {
                error!(%e, "config rejected");
            }
            anyhow::bail!(
                "{} has errors and there is no previous state to run",
                d.config.display()
            );
        }
        Err(_) => warn!("running the stored state; fix the config file to apply it"),
    }
    let first = d.store.current()?;
    let desired = kawaii_model::validate(&first.gateway)
        .map_err(|e| anyhow::anyhow!("stored state is invalid: {e}"))?;
    if let Some(z) = &d.zone {
        kawaii_plan::select_zone(&desired.desired, Some(z))?;
    }
    // A private key file others may read is refused before anything starts.
    if let Some(kawaii_model::valid::KeySource::File(f)) = desired
        .desired
        .wireguard
        .as_ref()
        .and_then(|w| w.private_key.as_ref())
    {
        kawaii_drivers::wireguard::load_key(f).map_err(|e| anyhow::anyhow!(e))?;
    }
    d.refresh_tokens(&desired.desired);

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let api_task = tokio::spawn(api_server(d.clone(), stop_rx.clone()));
    d.api.set_live_details(live_details(&d));
    let reconcile_task = tokio::spawn(reconcile_loop(d.clone(), stop_rx.clone()));
    let consent_task = tokio::spawn(
        d.consent
            .clone()
            .run(kawaii_plan::CONSENT_PORT, stop_rx.clone()),
    );
    let wg_sync_task = tokio::spawn(
        d.wireguard
            .clone()
            .run_sync(stop_rx.clone(), d.replan.clone()),
    );
    // HA: a change of VIP ownership re-plans at once (addresses, SNAT, openings follow it).
    let vrrp_task = tokio::spawn({
        let d = d.clone();
        let mut stop = stop_rx.clone();
        let mut owned = d.vrrp.owned();
        async move {
            let mut held = owned.borrow().clone();
            loop {
                tokio::select! {
                    r = owned.changed() => if r.is_err() { break },
                    _ = stop.changed() => break,
                }
                d.replan.notify_one();
                // Zones just taken over: their VPN peers are told at once where we are.
                let now = owned.borrow().clone();
                let gained: std::collections::BTreeSet<String> =
                    now.difference(&held).cloned().collect();
                if !gained.is_empty() {
                    // Handshakes must leave from the VIPs: wait (briefly) until the reconcile
                    // has put them on the interfaces.
                    let until = std::time::Instant::now() + Duration::from_secs(1);
                    while !gained.is_subset(&d.vrrp.announced())
                        && std::time::Instant::now() < until
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let n = d.wireguard.take_over(&gained).await;
                    if n > 0 {
                        info!(peers = n, "VIPs taken over: WireGuard handshakes started");
                    }
                    // Back in our own zone: its peers that a sibling took over come home. The
                    // siblings may not have said yet who they are (they tell every 0.5 s).
                    if let Some(own) = d.zone.clone().filter(|z| gained.contains(z)) {
                        let d = d.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                            if d.vrrp.owned().borrow().contains(&own) {
                                let n = d.wireguard.take_over(&[own].into()).await;
                                if n > 0 {
                                    info!(peers = n, "own zone back: WireGuard peers called home");
                                }
                            }
                        });
                    }
                }
                held = now;
            }
        }
    });
    let counters_task = tokio::spawn({
        let d = d.clone();
        let mut stop = stop_rx.clone();
        async move {
            loop {
                // The reads that cost a process or a device query; the rest of the status is
                // read live at each request (`live_details`).
                d.counters.refresh(&d.api).await;
                d.wireguard.refresh().await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    });
    let reload = Arc::new(Notify::new());
    let watch_task = tokio::spawn(watch_file(d.clone(), reload.clone(), stop_rx.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => { info!("SIGHUP: reloading the config file"); reload.notify_one(); }
            _ = stop_rx.changed() => break,
        }
    }
    info!("stopping");
    // HA: resign every virtual router first (priority 0: a backup takes over after Skew_Time),
    // then drop the VIPs from this node's interfaces.
    if !d.vrrp.status().is_empty() {
        let speaker = d.vrrp.clone();
        let _ = tokio::task::spawn_blocking(move || speaker.shutdown()).await;
        reconcile_once(&d).await;
    }
    let _ = stop_tx.send(true);
    // Drain the domain router: no new connections, established ones get time to finish.
    tokio::join!(d.router.drain(DRAIN), d.pipes.drain(DRAIN));
    d.ipsec.shutdown().await;
    d.conntrackd.shutdown().await;
    d.wireguard.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = api_task.await;
        let _ = reconcile_task.await;
        let _ = consent_task.await;
        let _ = vrrp_task.await;
        let _ = wg_sync_task.await;
        let _ = watch_task.await;
        let _ = counters_task.await;
    })
    .await;
    Ok(ExitCode::SUCCESS)
}

impl Daemon {
    /// Applies the config file if its content differs from the last file applied.
    /// Returns whether it committed a new revision; errors leave the state untouched.
    async fn apply_file(&self) -> Result<bool, Vec<kawaii_model::FieldError>> {
        let result = config::load_valid(&self.config);
        let (loaded, report) = match result {
            Ok(ok) => ok,
            Err(errors) => {
                for e in &errors {
                    error!(file = %self.config.display(), %e, "config rejected; the running state stays");
                }
                self.metrics
                    .config_reloads
                    .get_or_create(&vec![("result".into(), "rejected".into())])
                    .inc();
                self.api
                    .update_status(|s| s.rejected_config = errors.clone());
                return Err(errors);
            }
        };
        for w in &report.warnings {
            warn!(file = %self.config.display(), %w, "config warning");
        }
        self.api.update_status(|s| s.rejected_config.clear());
        let hash = hex::encode(Sha256::digest(&loaded.bytes));
        let store = self.store.clone();
        let actor = Actor {
            name: format!("file:{}", self.config.display()),
            action: "config file applied".into(),
        };
        let mut gateway: Gateway = loaded.gateway;
        let store_error = |e: String| vec![kawaii_model::FieldError::new("(store)", e)];
        let outcome =
            tokio::task::spawn_blocking(move || -> Result<bool, Vec<kawaii_model::FieldError>> {
                let err = |e: kawaii_store::StoreError| store_error(e.to_string());
                if store.get_meta(FILE_HASH_KEY).map_err(err)?.as_deref() == Some(hash.as_str()) {
                    return Ok(false);
                }
                let cur = store.current().map_err(err)?;
                gateway.prepare_commit(&cur.gateway);
                // What the server filled in (VPN addresses) must still be valid.
                kawaii_model::validate(&gateway).map_err(|e| e.0)?;
                let rev = store.commit(None, &gateway, &actor).map_err(err)?;
                store.set_meta(FILE_HASH_KEY, &hash).map_err(err)?;
                Ok(rev != cur.revision)
            })
            .await
            .unwrap_or_else(|e| Err(store_error(e.to_string())));
        match outcome {
            Ok(changed) => {
                if changed {
                    info!(file = %self.config.display(), "config file applied");
                }
                self.metrics
                    .config_reloads
                    .get_or_create(&vec![("result".into(), "applied".into())])
                    .inc();
                Ok(changed)
            }
            Err(errors) => {
                for e in &errors {
                    error!(%e, "storing the config file failed");
                }
                Err(errors)
            }
        }
    }

    /// Tokens from the document, the token file, and (when none is configured) the bootstrap
    /// token under the state directory.
    fn refresh_tokens(&self, d: &Desired) {
        let mut tokens = d.api.tokens.clone();
        if let Some(file) = &d.api.token_file {
            match read_token_file(Path::new(file)) {
                Ok(more) => tokens.extend(more),
                Err(e) => warn!(file, %e, "token file unreadable; its tokens are not accepted"),
            }
        }
        if tokens.is_empty() {
            match bootstrap_token(&self.state_dir) {
                Ok(hash) => tokens.push(TokenSpec {
                    name: "bootstrap".into(),
                    role: Role::Admin,
                    sha256: hash,
                }),
                Err(e) => warn!(%e, "cannot write the bootstrap token; the API accepts no token"),
            }
        }
        self.api.set_tokens(tokens);
    }
}

/// `name role sha256hex` per line; `#` comments.
fn read_token_file(path: &Path) -> anyhow::Result<Vec<TokenSpec>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(role), Some(hash)) = (
            f.first(),
            f.get(1).and_then(|r| Role::parse(r)),
            f.get(2).and_then(|h| kawaii_model::valid::sha256_hex(h)),
        ) else {
            anyhow::bail!("line {}: expected `name role sha256hex`", n + 1);
        };
        out.push(TokenSpec {
            name: name.to_string(),
            role,
            sha256: hash,
        });
    }
    Ok(out)
}

/// Creates (once) a random admin token in `STATE/admin.token`, mode 0600; returns its hash.
fn bootstrap_token(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join(BOOTSTRAP_TOKEN);
    let token = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let mut bytes = [0u8; 24];
            rand::fill(&mut bytes);
            let token = hex::encode(bytes);
            crate::keys::write_private(&path, &token)?;
            info!(path = %path.display(), "no API token configured: wrote a bootstrap admin token");
            token
        }
    };
    Ok(kawaii_api::hash_token(&token))
}

/// Serves the API on the desired listen address; moves when the address changes.
async fn api_server(d: Arc<Daemon>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut rev_rx = d.store.watch();
    let mut current: Option<(SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>)> = None;
    loop {
        let want = d
            .store
            .current()
            .ok()
            .and_then(|s| kawaii_model::validate(&s.gateway).ok())
            .map(|r| r.desired.api.listen);
        if let Some(addr) = want
            && current.as_ref().map(|c| c.0) != Some(addr)
        {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    info!(%addr, "API listening");
                    let (tx, rx) = oneshot::channel::<()>();
                    let app = kawaii_api::router(d.api.clone());
                    let task = tokio::spawn(async move {
                        let _ = axum::serve(listener, app)
                            .with_graceful_shutdown(async {
                                let _ = rx.await;
                            })
                            .await;
                    });
                    if let Some((old, tx_old, _)) = current.replace((addr, tx, task)) {
                        info!(%old, "API moved; closing the old listener");
                        let _ = tx_old.send(());
                    }
                }
                Err(e) => error!(%addr, %e, "API cannot listen; keeping the previous listener"),
            }
        }
        tokio::select! {
            r = rev_rx.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    if let Some((_, tx, task)) = current {
        let _ = tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

/// Polls the config file (content hash) and reacts to SIGHUP.
async fn watch_file(
    d: Arc<Daemon>,
    reload: Arc<Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = std::fs::read(&d.config).ok().map(|b| Sha256::digest(&b));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                let now = std::fs::read(&d.config).ok().map(|b| Sha256::digest(&b));
                if now.is_some() && now != last {
                    last = now;
                    info!(file = %d.config.display(), "config file changed");
                    let _ = d.apply_file().await;
                }
            }
            _ = reload.notified() => {
                last = std::fs::read(&d.config).ok().map(|b| Sha256::digest(&b));
                let _ = d.apply_file().await;
            }
            _ = stop.changed() => break,
        }
    }
}

/// Re-plans and applies after every committed change; retries failed applies with backoff.
async fn reconcile_loop(d: Arc<Daemon>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut rx = d.store.watch();
    let mut backoff = Duration::from_millis(250);
    loop {
        let revision = *rx.borrow_and_update();
        let ok = reconcile_once(&d).await;
        // After a failure retry with backoff; otherwise re-check now and then, so drift in the
        // kernel (an address removed by hand) is repaired without a change.
        let wait = if ok {
            backoff = Duration::from_millis(250);
            kawaii_drivers::netlink::RESYNC
        } else {
            backoff = (backoff * 2).min(Duration::from_secs(30));
            backoff
        };
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = d.replan.notified() => {}
            _ = tokio::time::sleep(wait) => {
                if !ok {
                    info!(revision, "retrying the failed apply");
                }
            }
            _ = stop.changed() => break,
        }
    }
}

async fn reconcile_once(d: &Daemon) -> bool {
    let t0 = std::time::Instant::now();
    let snap = match d.store.current() {
        Ok(s) => s,
        Err(e) => {
            error!(%e, "reading the store failed");
            return false;
        }
    };
    d.metrics.desired_revision.set(snap.revision as i64);
    let read_us = t0.elapsed().as_micros() as u64;
    let report = match kawaii_model::validate(&snap.gateway) {
        Ok(r) => r,
        Err(e) => {
            // Only validated documents are committed, so this is a bug or a newer schema.
            error!(%e, revision = snap.revision, "stored state does not validate");
            return false;
        }
    };
    let validate_us = t0.elapsed().as_micros() as u64 - read_us;
    d.refresh_tokens(&report.desired);
    d.consent.set_intents(consent_intents(&report.desired));
    let observed = kawaii_plan::Observed {
        consented_peerings: d.consent.consented(),
        wg_elsewhere: d.wireguard.elsewhere(),
        // HA: the zones whose VIPs the VRRP speaker says this node holds.
        vip_zones: report
            .desired
            .ha
            .is_some()
            .then(|| d.vrrp.owned().borrow().clone()),
    };
    let plan = match kawaii_plan::plan_with(&report.desired, d.zone.as_deref(), &observed) {
        Ok(p) => p,
        Err(e) => {
            error!(%e, "planning failed");
            d.api.update_status(|s| {
                s.drivers = vec![DriverStatus {
                    name: "plan".into(),
                    ok: false,
                    error: Some(e.to_string()),
                    ..Default::default()
                }]
            });
            return false;
        }
    };
    let planned_us = t0.elapsed().as_micros() as u64;
    let mut results = Vec::new();
    let mut all_ok = true;
    // HA: the speaker follows the plan (it announces the plan's VIPs).
    d.vrrp.configure(plan.vrrp.clone());
    for driver in &d.drivers {
        let prev = d
            .api
            .status()
            .drivers
            .into_iter()
            .find(|s| s.name == driver.name());
        let started = std::time::Instant::now();
        let r = driver.apply(&plan).await;
        if d.wireguard.take_recreated() {
            // A new WireGuard interface has no addresses or routes yet.
            d.netlink.invalidate();
        }
        let at = Some(kawaii_store::now_rfc3339());
        if r.is_ok() && driver.name() == "netlink" {
            // The VIPs just added are announced (gratuitous ARP) before the drivers after
            // this one start talking from them: an IKE answer must not go to the failed
            // instance's MAC address.
            announce_vips(d, &observed);
        }
        match r {
            Ok(()) => {
                info!(
                    driver = driver.name(),
                    revision = snap.revision,
                    took_ms = started.elapsed().as_millis() as u64,
                    "applied"
                );
                results.push(DriverStatus {
                    name: driver.name().into(),
                    ok: true,
                    applied_revision: snap.revision,
                    error: None,
                    last_apply: at,
                });
            }
            Err(e) => {
                all_ok = false;
                error!(driver = driver.name(), revision = snap.revision, %e, "apply failed; the previous state stays in force");
                results.push(DriverStatus {
                    name: driver.name().into(),
                    ok: false,
                    applied_revision: prev.map(|p| p.applied_revision).unwrap_or(0),
                    error: Some(e.to_string()),
                    last_apply: at,
                });
            }
        }
    }
    // Where a reconcile spends its time (the change -> converged tail).
    debug!(
        revision = snap.revision,
        read_us,
        validate_us,
        plan_us = planned_us - read_us - validate_us,
        apply_us = t0.elapsed().as_micros() as u64 - planned_us,
        "reconcile phases"
    );
    let applied = results
        .iter()
        .map(|r| r.applied_revision)
        .min()
        .unwrap_or(snap.revision);
    let result = if all_ok { "ok" } else { "failed" };
    d.metrics
        .reconciles
        .get_or_create(&vec![("result".into(), result.into())])
        .inc();
    d.metrics.applied_revision.set(applied as i64);
    // HA: a failed data plane lowers this node's priorities; VIPs not announced yet (the
    // netlink driver failed) are announced now.
    d.vrrp.set_healthy(all_ok);
    announce_vips(d, &observed);
    d.api.set_wg_public_key(d.wireguard.public_key());
    d.api.update_status(|s: &mut Status| {
        s.gateway = report.desired.name.clone();
        s.zone = plan.zone.clone();
        s.desired_revision = snap.revision;
        s.applied_revision = applied;
        s.drivers = results;
        s.ready = s.ready || all_ok;
    });
    if plan.nftables.is_some() {
        // Off the reconcile path: the next change must not wait for a counter read-back.
        d.counters.refresh_soon(&d.api);
    }
    all_ok
}

/// HA: gratuitous ARP for the held zones' VIPs, once per takeover.
fn announce_vips(d: &Daemon, observed: &kawaii_plan::Observed) {
    let Some(held) = &observed.vip_zones else {
        return;
    };
    let now: std::collections::BTreeSet<String> = d
        .vrrp
        .owned()
        .borrow()
        .intersection(held)
        .cloned()
        .collect();
    let started = std::time::Instant::now();
    for zone in d.vrrp.announce(&now) {
        info!(zone = %zone, took_us = started.elapsed().as_micros() as u64, "VIPs taken over; gratuitous ARP sent");
    }
}

/// The status sections read from the drivers' in-memory views at each `/v1/status` request:
/// VRRP, router, pipes, IPsec, VPC peerings and WireGuard (its counters as of the last device
/// read). Only the firewall counters and the WireGuard device are read in the background.
/// A weak reference: the API state must not keep the daemon's drivers alive.
fn live_details(d: &Arc<Daemon>) -> kawaii_api::LiveDetails {
    let weak = Arc::downgrade(d);
    Arc::new(move |details| {
        let Some(d) = weak.upgrade() else {
            return;
        };
        let mut set = |key: &str, v: Option<serde_json::Value>| match v {
            Some(v) => {
                details.insert(key.into(), v);
            }
            None => {
                details.remove(key);
            }
        };
        let vrrp = d.vrrp.status();
        set(
            "vrrp",
            (!vrrp.is_empty()).then(|| serde_json::to_value(vrrp).unwrap_or_default()),
        );
        set("router", Some(d.router.status()));
        set("ipsec", Some(d.ipsec.status()));
        set("conntrack_sync", d.conntrackd.status());
        let pipes = d.pipes.status();
        set(
            "pipes",
            (!pipes.is_empty()).then(|| serde_json::to_value(&pipes).unwrap_or_default()),
        );
        set(
            "vpc_peerings",
            Some(serde_json::to_value(d.consent.status()).unwrap_or_default()),
        );
        set(
            "wireguard",
            d.wireguard
                .status()
                .map(|w| serde_json::to_value(w).unwrap_or_default()),
        );
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
                theirs: p.subnet,
                key: p.consent_key.clone()?,
            })
        })
        .collect()
}
