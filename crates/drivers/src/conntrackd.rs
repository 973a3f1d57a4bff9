//! Connection-state sync through kawaii's own conntrackd (never Debian's service): the driver
//! writes its config (lock file, UNIX socket and log under `--state`), runs it in the foreground
//! as a child, restarts it within a second when it dies, restarts it when its config changes
//! (the kernel table is untouched, so the data plane does not notice), watches its counters and
//! restarts a hung or frozen daemon. After each start it waits for the resync (the injected
//! count stable, bounded) and only then reports [`Conntrackd::ready`], which holds the VRRP
//! speaker's preemption. On a takeover it puts the flows it injected into its own cache (`-R`),
//! so that a sibling that returns gets them back. It never runs `-t` or `-f`: in kawaii's
//! active-active shape those would delete this node's own zone's flows.

use crate::child::{self, Backoff, Supervisor};
use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName};
use kawaii_plan::Plan;
use kawaii_plan::conntrackd::{SyncPlan, Transport};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Debian's conntrackd (package conntrackd); `KAWAII_CONNTRACKD` overrides it.
pub const CONNTRACKD: &str = "/usr/sbin/conntrackd";
/// The resync is over when the injected count has not moved for this long...
const RESYNC_STABLE: Duration = Duration::from_millis(1000);
/// ...but not before this (a sibling answers a resync request within milliseconds on a LAN)...
const RESYNC_MIN: Duration = Duration::from_millis(1500);
/// ...and at the latest after this (no sibling answers: nothing to wait for).
const RESYNC_MAX: Duration = Duration::from_secs(10);
/// How often the counters are read (status, metrics, watchdog).
const POLL: Duration = Duration::from_secs(1);
/// A client command (`-s`, `-n`, `-R`) that takes longer than this means a hung daemon.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive failed counter reads after which the daemon is restarted.
const HUNG_AFTER: u32 = 3;
/// The frozen-sync window: local changes were queued but nothing was sent for this long.
const FROZEN_AFTER: Duration = Duration::from_secs(10);
/// A sibling is `up` while its messages arrived within this (FTFW sends an alive message
/// every second when idle).
const PEER_SILENT_AFTER: Duration = Duration::from_secs(3);

/// The driver. Cheap to share; [`Conntrackd::status`] is `/v1/status`'s `conntrack_sync`.
pub struct Conntrackd {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Conntrackd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conntrackd")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

struct Shared {
    dir: PathBuf,
    binary: PathBuf,
    /// The config conntrackd must run (None: sync off).
    want: watch::Sender<Option<String>>,
    /// The config of the conntrackd that is running now (None: not running).
    running: watch::Sender<Option<String>>,
    ready: watch::Sender<bool>,
    view: StdMutex<View>,
    /// The zones held at the last apply, by IPv4 and by IPv6 VIPs.
    held: StdMutex<[BTreeSet<String>; 2]>,
    supervisor: Supervisor,
}

/// Status: the process, the resync, the counters, the siblings.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct View {
    pub enabled: bool,
    /// `ftfw-unicast` (two zones) or `notrack-multicast` (three or more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    pub running: bool,
    pub pid: Option<u32>,
    /// Times kawaii (re)started it after the first start (crashes, watchdog, config changes).
    pub restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// Unix milliseconds of the last restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_restart_ms: Option<u64>,
    /// The siblings' flows are in this node's kernel (the resync after the last start ended).
    pub ready: bool,
    /// Unix milliseconds when the last resync ended (the speaker may preempt from then on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_at_ms: Option<u64>,
    pub resyncs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_resync_ms: Option<u64>,
    /// Restarts by the watchdog (hung daemon or frozen sync).
    pub watchdog_restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_watchdog: Option<String>,
    /// This node's flows in conntrackd's cache (what it sends).
    pub synced_entries: u64,
    /// The siblings' flows put into this kernel (created; updated and destroyed below).
    pub injected_entries: u64,
    pub injected_updates: u64,
    pub injected_destroys: u64,
    /// Failed injections, cache failures, send/receive errors, malformed and lost messages.
    pub errors: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub siblings: Vec<SiblingView>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SiblingView {
    pub address: String,
    /// `up` (messages arriving), `silent` (none for 3 s), or `multicast` (NOTRACK over
    /// multicast: conntrackd does not count per sender).
    pub state: String,
    /// Seconds since its last message (unicast only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heard_secs: Option<u64>,
}

/// `conntrackd -s`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub internal_active: u64,
    pub internal_events: u64,
    pub internal_failed: u64,
    pub inject_created: u64,
    pub inject_updated: u64,
    pub inject_destroyed: u64,
    pub inject_failed: u64,
    pub pkts_sent: u64,
    pub pkts_recv: u64,
    pub errors_send: u64,
    pub errors_recv: u64,
    pub malformed: u64,
    pub lost: u64,
}

impl Stats {
    /// Everything the siblings put into this kernel: moves while a resync arrives.
    pub fn injected_total(&self) -> u64 {
        self.inject_created + self.inject_updated + self.inject_destroyed
    }

    pub fn errors(&self) -> u64 {
        self.internal_failed
            + self.inject_failed
            + self.errors_send
            + self.errors_recv
            + self.malformed
            + self.lost
    }
}

/// Parses `conntrackd -s` (conntrack-tools 1.4.x layout; unknown lines are skipped).
pub fn parse_stats(text: &str) -> Stats {
    #[derive(PartialEq)]
    enum Section {
        Other,
        Internal,
        Inject,
        Traffic,
        Tracking,
    }
    let mut s = Stats::default();
    let mut section = Section::Other;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("cache internal") {
            section = Section::Internal;
            continue;
        }
        if t.starts_with("external inject") {
            section = Section::Inject;
            continue;
        }
        if t.contains("traffic (active device") {
            section = Section::Traffic;
            continue;
        }
        if t.starts_with("message tracking") {
            section = Section::Tracking;
            continue;
        }
        if t.ends_with(':') && !t.contains('\t') {
            section = Section::Other;
            continue;
        }
        let nums: Vec<u64> = t
            .split(|c: char| c.is_whitespace() || c == ':')
            .filter_map(|w| w.parse().ok())
            .collect();
        let first = nums.first().copied().unwrap_or(0);
        let second = nums.get(1).copied().unwrap_or(0);
        match section {
            Section::Internal | Section::Inject => {
                let internal = section == Section::Internal;
                if t.starts_with("current active connections") && internal {
                    s.internal_active = first;
                } else if let Some(kind) = t
                    .strip_prefix("connections ")
                    .and_then(|r| r.split(':').next())
                {
                    if internal {
                        s.internal_events += first;
                        s.internal_failed += second;
                    } else {
                        match kind {
                            "created" => s.inject_created = first,
                            "updated" => s.inject_updated = first,
                            "destroyed" => s.inject_destroyed = first,
                            _ => {}
                        }
                        s.inject_failed += second;
                    }
                }
            }
            Section::Traffic => {
                if t.contains("Pckts sent") {
                    (s.pkts_sent, s.pkts_recv) = (first, second);
                } else if t.contains("Error send") {
                    (s.errors_send, s.errors_recv) = (first, second);
                }
            }
            Section::Tracking => {
                if t.contains("Malformed") {
                    (s.malformed, s.lost) = (first, second);
                }
            }
            Section::Other => {}
        }
    }
    s
}

fn transient(e: impl std::fmt::Display) -> DriverError {
    DriverError::transient(format!("conntrackd: {e}"))
}

fn unix_ms() -> u64 {
    child::unix_ms(std::time::SystemTime::now())
}

impl Conntrackd {
    /// `state_dir` is the daemon's; the driver keeps its files under `state_dir/conntrackd`.
    pub fn new(state_dir: &Path) -> Conntrackd {
        let binary = child::binary("KAWAII_CONNTRACKD", CONNTRACKD);
        Conntrackd {
            shared: Arc::new(Shared {
                dir: state_dir.join("conntrackd"),
                binary,
                want: watch::channel(None).0,
                running: watch::channel(None).0,
                ready: watch::channel(false).0,
                view: StdMutex::new(View::default()),
                held: StdMutex::default(),
                supervisor: Supervisor::new(),
            }),
        }
    }

    /// True once the siblings' flows are in this node's kernel (after each start's resync);
    /// false again while conntrackd restarts. Feed it to [`crate::vrrp::Speaker::set_sync_ready`].
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.shared.ready.subscribe()
    }

    pub fn view(&self) -> View {
        self.shared
            .view
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The `conntrack_sync` section of `/v1/status` (None while sync is off).
    pub fn status(&self) -> Option<View> {
        let v = self.view();
        v.enabled.then_some(v)
    }

    /// Stops conntrackd (SIGTERM, then SIGKILL) and the supervisor. The kernel table stays.
    pub async fn shutdown(&self) {
        self.shared.supervisor.shutdown().await;
    }

    async fn apply_plan(&self, plan: &Plan) -> Result<(), DriverError> {
        let Some(p) = &plan.conntrackd else {
            if self.shared.want.borrow().is_some() {
                info!("connection-state sync off: stopping conntrackd");
            }
            self.shared.want.send_replace(None);
            // Nothing gates preemption without sync.
            self.shared.ready.send_replace(true);
            if let Ok(mut v) = self.shared.view.lock() {
                v.enabled = false;
            }
            return Ok(());
        };
        let dir = self.shared.dir.to_string_lossy().into_owned();
        let config = kawaii_plan::conntrackd::render(p, &dir);
        if let Ok(mut v) = self.shared.view.lock() {
            v.enabled = true;
            v.transport = Some(
                match p.transport {
                    Transport::Unicast { .. } => "ftfw-unicast",
                    Transport::Multicast { .. } => "notrack-multicast",
                }
                .into(),
            );
            let known: Vec<String> = p.siblings.iter().map(ToString::to_string).collect();
            v.siblings.retain(|s| known.contains(&s.address));
            for a in known {
                if !v.siblings.iter().any(|s| s.address == a) {
                    v.siblings.push(SiblingView {
                        address: a,
                        state: "silent".into(),
                        last_heard_secs: None,
                    });
                }
            }
        }
        if *self.shared.want.borrow() != Some(config.clone()) {
            self.shared.want.send_replace(Some(config.clone()));
        }
        let shared = self.shared.clone();
        self.shared.supervisor.ensure(|| supervise(shared));
        let mut running = self.shared.running.subscribe();
        let up = tokio::time::timeout(Duration::from_secs(5), async {
            running
                .wait_for(|r| r.as_deref() == Some(config.as_str()))
                .await
                .is_ok()
        })
        .await;
        if up != Ok(true) {
            let why = self
                .view()
                .last_exit
                .unwrap_or_else(|| "not running yet".into());
            return Err(transient(format!("not running with this config: {why}")));
        }
        self.takeover(p).await;
        Ok(())
    }

    /// Zones gained since the last apply: the flows injected for them become this node's own
    /// (`-R` dumps the kernel table into conntrackd's cache), so a resync request from the
    /// sibling that returns is answered with them.
    async fn takeover(&self, p: &SyncPlan) {
        let gained: Vec<String> = {
            let Ok(mut held) = self.shared.held.lock() else {
                return;
            };
            let now = [&p.held_zones, &p.held_zones6];
            let mut gained = Vec::new();
            for ((was, now), family) in held.iter_mut().zip(now).zip(["", " (ipv6)"]) {
                gained.extend(now.difference(was).map(|z| format!("{z}{family}")));
                was.clone_from(now);
            }
            gained
        };
        if gained.is_empty() {
            return;
        }
        let started = Instant::now();
        match client(&self.shared, "-R").await {
            Ok(_) => info!(
                zones = ?gained,
                took_ms = started.elapsed().as_millis() as u64,
                "zones taken: injected flows moved into conntrackd's cache"
            ),
            Err(e) => warn!(%e, zones = ?gained, "conntrackd -R failed"),
        }
    }
}

impl Driver for Conntrackd {
    fn name(&self) -> DriverName {
        DriverName::Conntrackd
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move { self.apply_plan(plan).await.map(|()| Applied::quiet()) })
    }
}

/// `conntrackd -C CONF <args>`, bounded: stdout, or an error (a timeout means a hung daemon).
async fn client(shared: &Shared, arg: &str) -> Result<String, DriverError> {
    let conf = shared.dir.join("conntrackd.conf");
    let out = tokio::time::timeout(
        COMMAND_TIMEOUT,
        tokio::process::Command::new(&shared.binary)
            .arg("-C")
            .arg(&conf)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| transient(format!("{arg} timed out")))?
    .map_err(|e| transient(format!("{arg}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(transient(format!(
            "{arg}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs conntrackd while sync is wanted: start, resync, watch, restart.
async fn supervise(shared: Arc<Shared>) {
    let mut stop = shared.supervisor.stopping();
    let mut want = shared.want.subscribe();
    let mut backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(5),
        Duration::from_secs(30),
    );
    let mut starts = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(config) = want.borrow_and_update().clone() else {
            tokio::select! {
                r = want.changed() => if r.is_err() { break },
                _ = stop.changed() => break,
            }
            continue;
        };
        if starts > 0
            && let Ok(mut v) = shared.view.lock()
        {
            v.restarts += 1;
            v.last_restart_ms = Some(unix_ms());
        }
        starts += 1;
        let started = Instant::now();
        let end = match run_once(&shared, &config, &mut want, &mut stop).await {
            Ok(end) => end,
            Err(e) => {
                warn!(%e, "conntrackd failed to start");
                if let Ok(mut v) = shared.view.lock() {
                    v.last_exit = Some(e.to_string());
                }
                End::Died
            }
        };
        shared.running.send_replace(None);
        shared.ready.send_replace(false);
        if let Ok(mut v) = shared.view.lock() {
            v.running = false;
            v.pid = None;
            v.ready = false;
        }
        match end {
            End::Stopped => break,
            End::Reconfigure => backoff.reset(),
            // Within a second after a crash; slower only if it keeps dying at once.
            End::Died | End::Watchdog => {
                if !backoff.wait("conntrackd", started, &mut stop).await {
                    break;
                }
            }
        }
    }
    shared.running.send_replace(None);
}

enum End {
    /// Stopped on request (daemon shutdown).
    Stopped,
    /// The config changed (or sync was turned off): start again with the new one.
    Reconfigure,
    Died,
    Watchdog,
}

/// What the watchdog and the sibling states remember between counter reads.
struct Watch {
    last: Option<Stats>,
    failed_reads: u32,
    /// Since when local changes were queued without anything sent.
    quiet_since: Option<Instant>,
    last_recv: Option<Instant>,
}

/// One life of conntrackd.
async fn run_once(
    shared: &Arc<Shared>,
    config: &str,
    want: &mut watch::Receiver<Option<String>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<End, DriverError> {
    child::write_private(&shared.dir, "conntrackd.conf", config, transient)?;
    // Ours alone (the directory is the driver's): a lock or socket left by a killed
    // conntrackd would stop the next one from starting.
    let _ = std::fs::remove_file(shared.dir.join("conntrackd.lock"));
    let _ = std::fs::remove_file(shared.dir.join("conntrackd.ctl"));
    let mut child = spawn(shared)?;
    let pid = child.id();
    info!(pid, "conntrackd started");
    if let Ok(mut v) = shared.view.lock() {
        v.running = true;
        v.pid = pid;
        v.ready = false;
    }
    // Up when its socket answers.
    let ctl = shared.dir.join("conntrackd.ctl");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ctl.exists() {
        if Instant::now() > deadline {
            stop_child(&mut child, pid).await;
            return Err(transient("its UNIX socket did not appear"));
        }
        if let Ok(Some(st)) = child.try_wait() {
            let why = format!("exited at start: {st}; see {}", log_hint(shared));
            return Err(transient(why));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.running.send_replace(Some(config.to_string()));
    // StartupResync asked the siblings already; ask again in case they were not listening.
    let resync_started = Instant::now();
    if let Err(e) = client(shared, "-n").await {
        debug!(%e, "resync request failed");
    }
    let mut resync: Option<(u64, Instant)> = None;
    let mut w = Watch {
        last: None,
        failed_reads: 0,
        quiet_since: None,
        last_recv: None,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_poll = Instant::now() - POLL;
    loop {
        tokio::select! {
            st = child.wait() => {
                let why = st.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                warn!(pid, status = %why, "conntrackd exited");
                if let Ok(mut v) = shared.view.lock() {
                    v.last_exit = Some(why);
                }
                return Ok(End::Died);
            }
            _ = stop.changed() => {
                stop_child(&mut child, pid).await;
                return Ok(End::Stopped);
            }
            r = want.changed() => {
                if r.is_err() || want.borrow().as_deref() != Some(config) {
                    info!("conntrackd config changed: restarting it (the kernel table stays)");
                    stop_child(&mut child, pid).await;
                    return Ok(End::Reconfigure);
                }
            }
            _ = tick.tick() => {
                let ready = *shared.ready.borrow();
                // While resyncing, every 200 ms; after that once a second.
                if ready && last_poll.elapsed() < POLL {
                    continue;
                }
                last_poll = Instant::now();
                let stats = match client(shared, "-s").await {
                    Ok(text) => parse_stats(&text),
                    Err(e) => {
                        w.failed_reads += 1;
                        debug!(%e, failed = w.failed_reads, "conntrackd counters unreadable");
                        if w.failed_reads >= HUNG_AFTER {
                            return Ok(watchdog(shared, &mut child, pid, "hung: its socket does not answer").await);
                        }
                        continue;
                    }
                };
                w.failed_reads = 0;
                if !ready {
                    let total = stats.injected_total();
                    let since = match resync {
                        Some((n, at)) if n == total => at,
                        _ => {
                            resync = Some((total, Instant::now()));
                            Instant::now()
                        }
                    };
                    let elapsed = resync_started.elapsed();
                    let stable = since.elapsed() >= RESYNC_STABLE && elapsed >= RESYNC_MIN;
                    if stable || elapsed >= RESYNC_MAX {
                        if !stable {
                            warn!(injected = total, "resync did not settle; ready anyway");
                        }
                        info!(injected = stats.inject_created, took_ms = elapsed.as_millis() as u64, "conntrackd resync done; ready");
                        if let Ok(mut v) = shared.view.lock() {
                            v.ready = true;
                            v.ready_at_ms = Some(unix_ms());
                            v.resyncs += 1;
                            v.last_resync_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
                        }
                        shared.ready.send_replace(true);
                    }
                }
                if let Some(why) = frozen(&mut w, &stats) {
                    return Ok(watchdog(shared, &mut child, pid, why).await);
                }
                record(shared, &stats, &w);
                w.last = Some(stats);
            }
        }
    }
}

/// The frozen-sync check: this node's cache saw changes, yet nothing went out for a while.
fn frozen(w: &mut Watch, now: &Stats) -> Option<&'static str> {
    let Some(last) = &w.last else {
        return None;
    };
    if now.pkts_recv != last.pkts_recv {
        w.last_recv = Some(Instant::now());
    }
    let changed = now.internal_events != last.internal_events;
    let sent = now.pkts_sent != last.pkts_sent;
    match (changed, sent) {
        (_, true) => w.quiet_since = None,
        (true, false) => {
            let since = *w.quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= FROZEN_AFTER {
                return Some("frozen: flows changed but nothing was sent");
            }
        }
        // Idle: a change that was never sent (a `-R` dump is not) does not count later.
        (false, false) => w.quiet_since = None,
    }
    None
}

async fn watchdog(
    shared: &Shared,
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    why: &str,
) -> End {
    warn!(pid, why, "conntrackd watchdog: restarting it");
    // SIGKILL also ends a stopped process; the kernel table stays.
    let _ = child.kill().await;
    if let Ok(mut v) = shared.view.lock() {
        v.watchdog_restarts += 1;
        v.last_watchdog = Some(why.to_string());
        v.last_exit = Some(format!("killed by the watchdog ({why})"));
    }
    End::Watchdog
}

fn record(shared: &Shared, s: &Stats, w: &Watch) {
    let Ok(mut v) = shared.view.lock() else {
        return;
    };
    v.synced_entries = s.internal_active;
    v.injected_entries = s.inject_created;
    v.injected_updates = s.inject_updated;
    v.injected_destroys = s.inject_destroyed;
    v.errors = s.errors();
    v.messages_sent = s.pkts_sent;
    v.messages_received = s.pkts_recv;
    let unicast = v.transport.as_deref() == Some("ftfw-unicast");
    for sib in &mut v.siblings {
        if unicast {
            let heard = w.last_recv.map(|t| t.elapsed());
            sib.last_heard_secs = heard.map(|d| d.as_secs());
            sib.state = match heard {
                Some(d) if d < PEER_SILENT_AFTER => "up",
                _ => "silent",
            }
            .into();
        } else {
            sib.state = "multicast".into();
            sib.last_heard_secs = None;
        }
    }
}

fn log_hint(shared: &Shared) -> String {
    shared.dir.join("conntrackd.log").display().to_string()
}

/// conntrackd in the foreground (console mode, so its pid is the child's), killed if kawaii
/// dies. Its lock file and socket are under the driver's directory, so it needs no private
/// mount: several instances run on one machine (in their network namespaces) side by side.
fn spawn(shared: &Shared) -> Result<tokio::process::Child, DriverError> {
    let (out, err) = child::output(&shared.dir, "conntrackd.out", transient)?;
    tokio::process::Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(&shared.binary)
        .arg("-C")
        .arg(shared.dir.join("conntrackd.conf"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| transient(format!("cannot start {}: {e}", shared.binary.display())))
}

/// SIGTERM (conntrackd removes its lock file and socket), then SIGKILL.
async fn stop_child(child: &mut tokio::process::Child, pid: Option<u32>) {
    child::terminate(child, pid, Duration::from_secs(2)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `conntrackd -s` of a node that injected one sibling flow (captured, conntrack-tools 1.4.7).
    const INJECTED: &str = include_str!("../testdata/conntrackd-stats-injected.txt");
    /// `conntrackd -s` of the sibling that sent it.
    const SENT: &str = include_str!("../testdata/conntrackd-stats-sent.txt");

    #[test]
    fn stats_of_the_receiving_node() {
        let s = parse_stats(INJECTED);
        assert_eq!(s.internal_active, 0);
        assert_eq!(s.inject_created, 1);
        assert_eq!(s.injected_total(), 1);
        assert_eq!((s.pkts_sent, s.pkts_recv), (2, 2));
        assert_eq!(s.errors(), 0);
    }

    #[test]
    fn stats_of_the_sending_node() {
        let s = parse_stats(SENT);
        assert_eq!(s.internal_active, 1);
        assert_eq!(s.internal_events, 1);
        assert_eq!(s.inject_created, 0);
        assert_eq!((s.pkts_sent, s.pkts_recv), (2, 2));
    }

    #[test]
    fn errors_are_summed_and_garbage_is_harmless() {
        let text = SENT
            .replacen(
                "failed:\t           0\nconnections updated",
                "failed:\t           4\nconnections updated",
                1,
            )
            .replacen("0 Error send", "3 Error send", 1);
        let s = parse_stats(&text);
        assert_eq!(s.errors(), 7, "{text}");
        assert_eq!(parse_stats("not conntrackd\n\n:::\n"), Stats::default());
    }

    fn stats(events: u64, sent: u64) -> Stats {
        Stats {
            internal_events: events,
            pkts_sent: sent,
            ..Stats::default()
        }
    }

    #[test]
    fn a_sync_that_sends_nothing_while_flows_change_is_frozen() {
        let mut w = Watch {
            last: Some(stats(10, 5)),
            failed_reads: 0,
            quiet_since: Some(Instant::now() - FROZEN_AFTER),
            last_recv: None,
        };
        assert!(frozen(&mut w, &stats(11, 5)).is_some());
        // Something went out: not frozen, the window starts again.
        let mut w = Watch {
            last: Some(stats(10, 5)),
            failed_reads: 0,
            quiet_since: Some(Instant::now() - FROZEN_AFTER),
            last_recv: None,
        };
        assert!(frozen(&mut w, &stats(11, 6)).is_none());
        assert!(w.quiet_since.is_none());
        // Nothing changed and nothing sent: idle, not frozen.
        let mut w = Watch {
            last: Some(stats(10, 5)),
            failed_reads: 0,
            quiet_since: None,
            last_recv: None,
        };
        assert!(frozen(&mut w, &stats(10, 5)).is_none());
        assert!(w.quiet_since.is_none());
    }
}
