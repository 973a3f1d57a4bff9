//! `kawaii serve`: builds the daemon ([`app`]), applies the config file, then runs its tasks
//! until SIGTERM: the API server, the reconcile loop, the file watcher, the HA follower, the
//! consent and endpoint-sync speakers and the status refresher. Every source of change wakes the
//! reconcile loop with a typed [`wake::Wake`]. Shutdown is one cancellation, in the order
//! described in docs/architecture.md.

mod api_server;
mod app;
mod apply;
mod audit;
mod files;
mod ha;
mod reconcile;
mod status;
mod wake;

use anyhow::Context;
use app::{App, Settings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use wake::{Wake, Wakes};

/// How long SIGTERM waits for proxied connections to finish.
const DRAIN: Duration = Duration::from_secs(10);
/// How long the tasks get to end after the drain.
const TASKS_END: Duration = Duration::from_secs(10);

pub fn run(
    config: PathBuf,
    zone: Option<String>,
    state: PathBuf,
    store: crate::store_url::StoreArgs,
) -> anyhow::Result<ExitCode> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let settings = Settings {
        config,
        zone,
        state_dir: state,
        store,
    };
    rt.block_on(daemon(settings))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KAWAII_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

async fn daemon(settings: Settings) -> anyhow::Result<ExitCode> {
    // A zone the file does not declare is refused before anything is written.
    let file = crate::config::load_valid(&settings.config).ok();
    if let (Some(zone), Some((_, report))) = (&settings.zone, &file) {
        kawaii_plan::select_zone(&report.desired, Some(zone))?;
    }
    // With the SYN proxy, conntrack must see the store's connection start (see
    // `nftables::track_connections`).
    if let Some((_, report)) = &file
        && report.desired.ingress.synproxy
        && !report.desired.zones.is_empty()
        && let Err(e) = kawaii_drivers::nftables::track_connections().await
    {
        warn!(%e, "cannot turn connection tracking on before the store connects");
    }
    if kawaii_drivers::wire::speaking_previous() {
        info!("speaking the previous release's version of every message between instances");
    }
    let (wakes, wake_rx) = Wakes::channel();
    let app = App::build(settings, wakes).await?;
    start(&app).await?;

    let stop = CancellationToken::new();
    app.api.set_live_details(status::live(&app));
    // systemd (Type=notify): READY=1 after the first applied pass, then watchdog pings.
    let systemd = Arc::new(crate::sd_notify::Systemd::from_env());
    let reconcile = tokio::spawn(reconcile::run(app.clone(), wake_rx, systemd.clone()));
    let reload = Arc::new(Notify::new());
    let consent = app.consent.clone();
    let endpoint_sync = app.wakes.notifier(Wake::EndpointSync);
    let tasks = [
        tokio::spawn(api_server::run(app.clone(), stop.clone())),
        tokio::spawn(forward_store(app.clone(), stop.clone())),
        tokio::spawn(consent.run(kawaii_plan::CONSENT_PORT, stop.clone())),
        tokio::spawn(app.wireguard.clone().run_sync(stop.clone(), endpoint_sync)),
        tokio::spawn(ha::follow_sync_ready(app.clone(), stop.clone())),
        tokio::spawn(ha::follow_vrrp(
            app.clone(),
            stop.clone(),
            ha::Timers::default(),
        )),
        tokio::spawn(status::refresh(app.clone(), stop.clone())),
        tokio::spawn({
            let (systemd, stop) = (systemd.clone(), stop.clone());
            async move { systemd.watchdog(stop).await }
        }),
        tokio::spawn(audit::prune(app.clone(), stop.clone())),
        tokio::spawn(files::watch(app.clone(), reload.clone(), stop.clone())),
        tokio::spawn({
            let (guard, stop) = (app.conntrack.clone(), stop.clone());
            let changed = app.wakes.notifier(Wake::Conntrack);
            async move { guard.watch(stop, changed).await }
        }),
    ];

    wait_for_stop(&reload).await?;
    info!("stopping");
    systemd.stopping();
    // HA: resign every virtual router first (priority 0: a backup takes over after Skew_Time);
    // the loop's last pass then takes the VIPs off this node's interfaces.
    if !app.vrrp.status().is_empty() {
        let speaker = app.vrrp.clone();
        let _ = tokio::task::spawn_blocking(move || speaker.shutdown()).await;
    }
    app.wakes.send(Wake::Shutdown);
    if tokio::time::timeout(TASKS_END, reconcile).await.is_err() {
        warn!("the last reconcile pass did not finish in time");
    }
    // IPv6 hosts drop this node as their router (a final advertisement, lifetime 0).
    app.ra.shutdown().await;
    stop.cancel();
    // Drain the proxies: no new connections, established ones get time to finish.
    tokio::join!(app.router.drain(DRAIN), app.pipes.drain(DRAIN));
    app.ipsec.shutdown().await;
    app.conntrackd.shutdown().await;
    app.wireguard.shutdown().await;
    let _ = tokio::time::timeout(TASKS_END, async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await;
    Ok(ExitCode::SUCCESS)
}

/// Before any task runs: the config file becomes the state if it is good and changed; the
/// stored state must be valid for this zone, and the tokens and key files usable.
async fn start(app: &App) -> anyhow::Result<()> {
    let file = &app.settings.config;
    match files::apply_file(app).await {
        Ok(_) => {}
        Err(errors) if app.store.current()?.revision == 0 => {
            for e in &errors {
                error!(%e, "config rejected");
            }
            anyhow::bail!(
                "{} has errors and there is no previous state to run",
                file.display()
            );
        }
        Err(_) => warn!("running the stored state; fix the config file to apply it"),
    }
    let first = app.store.current()?;
    let desired = kawaii_model::validate(&first.gateway)
        .map_err(|e| anyhow::anyhow!("stored state is invalid: {e}"))?;
    if let Some(z) = &app.settings.zone {
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
    files::refresh_tokens(app, &desired.desired);
    Ok(())
}

/// Every committed revision, whoever wrote it, wakes the reconcile loop.
async fn forward_store(app: Arc<App>, stop: CancellationToken) {
    let mut revisions = app.store.watch();
    // A revision installed before this subscription (the start's own file commit, a watch
    // replay) is marked seen by it: one pass reads whatever is current now.
    app.wakes.send(Wake::Store);
    loop {
        tokio::select! {
            r = revisions.changed() => if r.is_err() { break },
            _ = stop.cancelled() => break,
        }
        app.wakes.send(Wake::Store);
    }
}

/// SIGTERM or Ctrl-C: stop. SIGHUP: reload the config file.
async fn wait_for_stop(reload: &Notify) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = hup.recv() => {
                info!("SIGHUP: reloading the config file");
                reload.notify_one();
            }
        }
    }
}
