//! IPsec through kawaii's own strongSwan charon, driven over VICI. The driver starts charon
//! (own `strongswan.conf`, VICI socket under the state directory, private `/run`), restarts it
//! with backoff when it dies and reloads the same connections, applies every change live
//! (`load-conn`, `load-shared`, `terminate`, `initiate`, `unload-*`; never files + restart), and
//! reports per connection the IKE/CHILD state, counters and the last error. PSKs go to charon
//! over the socket only; they appear in no file, log, status or error.

use crate::child::{self, Backoff, Supervisor};
use crate::ipsec_vici::{self as vici, IkeConfig, Outcome, SharedKey};
use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName};
use futures_util::{Stream, StreamExt, TryStreamExt};
use kawaii_model::Secret;
use kawaii_plan::Plan;
use kawaii_plan::ipsec::{Connection, PskSource};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify, watch};
use tracing::{debug, info, warn};

/// Debian's charon (package strongswan-charon); `KAWAII_CHARON` overrides it.
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// How often a connection that should be up but is not is initiated again.
const RETRY: Duration = Duration::from_secs(3);
/// How long an apply waits for a (re)starting charon.
const READY_WAIT: Duration = Duration::from_secs(15);

/// Where ESP runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The kernel's XFRM does ESP; charon installs SAs and policies with `kernel-netlink`.
    Kernel,
    /// No XFRM/ESP in this kernel: charon's `kernel-libipsec` does ESP in userspace on a TUN
    /// device (UDP-encapsulated), `kernel-netlink` installs the routes.
    KernelLibipsec,
}

/// The IPsec driver. Cheap to share; `status()` is what `/v1/status` shows under `ipsec`.
pub struct Ipsec {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ipsec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipsec")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// One connection as the driver wants it in charon: the plan's part and the PSK it resolved.
#[derive(Clone, PartialEq, Eq)]
struct Want {
    conn: Connection,
    psk: Secret,
}

struct Shared {
    dir: PathBuf,
    charon: PathBuf,
    mode: tokio::sync::OnceCell<Mode>,
    inner: Mutex<Inner>,
    view: StdMutex<View>,
    wake: Notify,
    /// Generation of the charon that is up and loaded (0: none).
    up: watch::Sender<u64>,
    supervisor: Supervisor,
}

#[derive(Default)]
struct Inner {
    client: Option<rsvici::Client>,
    desired: BTreeMap<String, Want>,
    /// What the running charon has loaded (cleared when it dies).
    loaded: BTreeMap<String, Want>,
    last_initiate: BTreeMap<String, Instant>,
}

/// Status: the charon process and every connection.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct View {
    pub mode: Option<Mode>,
    pub charon: CharonView,
    pub connections: Vec<ConnView>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CharonView {
    pub running: bool,
    pub pid: Option<u32>,
    pub restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ConnView {
    pub id: String,
    pub name: String,
    pub remote_peer: String,
    /// The office's real subnet (the remote traffic selector).
    pub remote_subnet: String,
    /// Overlapping subnets: how our hosts address the office (translated to `remote_subnet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_alias: Option<String>,
    /// Overlapping subnets: how the office sees our private subnet (the local traffic selector).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_alias: Option<String>,
    /// What the operator asked for, and what the driver does about it.
    pub start_action: String,
    pub start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// IKE SA state (`ESTABLISHED`, `CONNECTING`, ...), `DOWN` when there is none.
    pub ike_state: String,
    pub child_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub established_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_installed_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<String>,
    /// The remote traffic selectors of the installed CHILD SA, as negotiated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub child_remote_ts: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorView>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ErrorView {
    pub reason: String,
    /// charon's own words.
    pub detail: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

fn transient(e: impl std::fmt::Display) -> DriverError {
    DriverError::transient(format!("charon: {e}"))
}

/// Awaits a VICI command and checks its `success`; the request body never enters the error.
async fn command<T: Serialize>(
    c: &mut rsvici::Client,
    cmd: &str,
    msg: T,
) -> Result<(), DriverError> {
    let out: Outcome = tokio::time::timeout(Duration::from_secs(10), c.request(cmd, msg))
        .await
        .map_err(|_| transient(format!("{cmd} timed out")))?
        .map_err(|e| transient(format!("{cmd}: {e}")))?;
    match out.success {
        Some(false) => Err(DriverError::rejected(format!(
            "charon refused {cmd}: {}",
            out.errmsg.unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

fn now_epoch() -> u64 {
    child::unix_ms(std::time::SystemTime::now()) / 1000
}

impl Ipsec {
    /// `state_dir` is the daemon's; the driver keeps its files under `state_dir/ipsec`.
    pub fn new(state_dir: &Path) -> Ipsec {
        let charon = child::binary("KAWAII_CHARON", CHARON);
        Ipsec {
            shared: Arc::new(Shared {
                dir: state_dir.join("ipsec"),
                charon,
                mode: tokio::sync::OnceCell::new(),
                inner: Mutex::new(Inner::default()),
                view: StdMutex::new(View::default()),
                wake: Notify::new(),
                up: watch::channel(0).0,
                supervisor: Supervisor::new(),
            }),
        }
    }

    /// Per connection state, counters and last error; the charon process; the mode.
    pub fn view(&self) -> View {
        self.shared
            .view
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Stops charon (SIGTERM, then SIGKILL) and the supervisor.
    pub async fn shutdown(&self) {
        self.shared.supervisor.shutdown().await;
    }

    async fn apply_plan(&self, plan: &Plan) -> Result<(), DriverError> {
        let mut desired = BTreeMap::new();
        for c in &plan.ipsec {
            let psk = match &c.psk {
                PskSource::Inline { secret } => secret.clone(),
                PskSource::File { path } => read_psk(&c.name, path)?,
            };
            desired.insert(
                c.id.clone(),
                Want {
                    conn: c.clone(),
                    psk,
                },
            );
        }
        let started = self.shared.supervisor.started();
        if desired.is_empty() && !started {
            return Ok(());
        }
        {
            let mut inner = self.shared.inner.lock().await;
            inner.desired = desired;
        }
        let shared = self.shared.clone();
        self.shared.supervisor.ensure(|| supervise(shared));
        // Wait for a running charon, then make it match.
        let mut up = self.shared.up.subscribe();
        let ready = tokio::time::timeout(READY_WAIT, async {
            up.wait_for(|g| *g != 0).await.map(|_| ())
        })
        .await;
        if !matches!(ready, Ok(Ok(()))) {
            return Err(transient("not running yet (starting or restarting)"));
        }
        let mode = self
            .shared
            .mode
            .get()
            .copied()
            .unwrap_or(Mode::KernelLibipsec);
        let mut inner = self.shared.inner.lock().await;
        let r = sync(&mut inner, mode).await;
        drop(inner);
        self.shared.wake.notify_one();
        r
    }
}

impl Driver for Ipsec {
    fn name(&self) -> DriverName {
        DriverName::Ipsec
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move { self.apply_plan(plan).await.map(|()| Applied::quiet()) })
    }
}

fn read_psk(name: &str, path: &str) -> Result<Secret, DriverError> {
    let text = crate::secret_file::read("pre_shared_key_file", path)
        .map_err(|e| DriverError::rejected(format!("ipsec {name:?}: {e}")))?;
    let key = text.trim_end_matches(['\n', '\r']);
    if key.len() < 8 {
        return Err(DriverError::rejected(format!(
            "ipsec {name:?}: the key in {path} is shorter than 8 characters"
        )));
    }
    Ok(Secret::new(key))
}

/// What charon itself does at load, and whether the driver initiates.
fn start_for(mode: Mode, requested: &str) -> (&'static str, bool, Option<&'static str>) {
    match (requested, mode) {
        ("none", _) => ("none", false, None),
        ("trap", Mode::Kernel) => ("trap", false, None),
        ("trap", Mode::KernelLibipsec) => (
            "none",
            true,
            Some("kernel-libipsec cannot trap traffic: initiated at load instead"),
        ),
        _ => ("none", true, None),
    }
}

/// Makes the running charon's connections equal the desired ones.
async fn sync(inner: &mut Inner, mode: Mode) -> Result<(), DriverError> {
    let Inner {
        client,
        desired,
        loaded,
        last_initiate,
    } = inner;
    let Some(c) = client.as_mut() else {
        return Err(transient("not connected"));
    };
    let gone: Vec<String> = loaded
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    for id in gone {
        terminate(c, &id).await;
        command(c, "unload-conn", vici::ByName { name: id.clone() }).await?;
        let _ = command(c, "unload-shared", vici::ById { id: psk_id(&id) }).await;
        loaded.remove(&id);
        last_initiate.remove(&id);
        info!(conn = %id, "ipsec connection removed; its SAs are torn down");
    }
    for (id, want) in desired.iter() {
        if loaded.get(id) == Some(want) {
            continue;
        }
        let conn = &want.conn;
        let (charon_start, initiate, _) = start_for(mode, conn.start_action);
        command(
            c,
            "load-shared",
            SharedKey {
                id: psk_id(id),
                kind: "IKE",
                data: want.psk.expose(),
                owners: vec![conn.local_id.clone(), conn.remote_id.clone()],
            },
        )
        .await?;
        command(c, "load-conn", IkeConfig::from_plan(conn, charon_start)).await?;
        let changed = loaded.contains_key(id);
        if changed {
            // Existing SAs were negotiated with the old parameters: re-establish now.
            terminate(c, id).await;
            info!(conn = %id, name = %conn.name, "ipsec connection changed; re-establishing");
        } else {
            info!(conn = %id, name = %conn.name, "ipsec connection loaded");
        }
        loaded.insert(id.clone(), want.clone());
        if initiate {
            initiate_conn(c, id).await;
            last_initiate.insert(id.clone(), Instant::now());
        }
    }
    Ok(())
}

fn psk_id(id: &str) -> String {
    format!("psk-{id}")
}

async fn terminate(c: &mut rsvici::Client, id: &str) {
    let msg = vici::Terminate {
        ike: id.to_string(),
        force: true,
        timeout: 1000,
    };
    if let Err(e) = command(c, "terminate", msg).await {
        // "no matching SAs" is the common, harmless case.
        debug!(conn = %id, %e, "terminate");
    }
}

async fn initiate_conn(c: &mut rsvici::Client, id: &str) {
    let msg = vici::Initiate {
        child: id.to_string(),
        ike: id.to_string(),
        timeout: -1,
        init_limits: false,
    };
    if let Err(e) = command(c, "initiate", msg).await {
        warn!(conn = %id, %e, "initiate failed");
    }
}

/// Runs charon for as long as the daemon does: start, load, watch, restart with backoff.
async fn supervise(shared: Arc<Shared>) {
    let mut stop = shared.supervisor.stopping();
    let mut backoff = Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    let mut generation = 0u64;
    loop {
        if *stop.borrow() {
            break;
        }
        let mode = *shared.mode.get_or_init(detect_mode).await;
        if let Ok(mut v) = shared.view.lock() {
            v.mode = Some(mode);
        }
        let started = Instant::now();
        match run_once(&shared, mode, &mut generation, &mut stop).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => warn!(%e, "charon failed to start"),
        }
        {
            let mut inner = shared.inner.lock().await;
            inner.client = None;
            inner.loaded.clear();
        }
        shared.up.send_replace(0);
        if let Ok(mut v) = shared.view.lock() {
            v.charon.running = false;
            v.charon.pid = None;
            v.charon.restarts += 1;
        }
        if !backoff.wait("charon", started, &mut stop).await {
            break;
        }
    }
}

/// One life of charon. Ok(true): stopped on request; Ok(false): charon exited.
async fn run_once(
    shared: &Arc<Shared>,
    mode: Mode,
    generation: &mut u64,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, DriverError> {
    let config = render_config(&shared.dir, mode);
    let conf = child::write_private(&shared.dir, "strongswan.conf", &config, transient)?;
    let socket = shared.dir.join("charon.vici");
    let _ = std::fs::remove_file(&socket);
    let mut child = spawn_charon(&shared.charon, &conf, &shared.dir)?;
    let pid = child.id();
    info!(pid, mode = ?mode, "charon started");
    if let Ok(mut v) = shared.view.lock() {
        v.charon.running = true;
        v.charon.pid = pid;
    }
    let connect = async {
        loop {
            if let Ok(c) = rsvici::unix::connect(&socket).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let client = tokio::select! {
        c = tokio::time::timeout(Duration::from_secs(10), connect) => c.ok(),
        st = child.wait() => {
            let why = format!("exited at start: {}", st.map(|s| s.to_string()).unwrap_or_default());
            record_exit(shared, &why);
            return Err(transient(why));
        }
    };
    let Some(client) = client else {
        stop_charon(&mut child, pid).await;
        return Err(transient("its VICI socket did not appear"));
    };
    let events = rsvici::unix::connect(&socket)
        .await
        .map_err(|e| transient(format!("events: {e}")))?;
    let pump = tokio::spawn(pump_events(shared.clone(), events));
    *generation += 1;
    {
        let mut inner = shared.inner.lock().await;
        inner.client = Some(client);
        inner.loaded.clear();
        inner.last_initiate.clear();
        if let Err(e) = sync(&mut inner, mode).await {
            warn!(%e, "reloading connections into the new charon failed; retrying");
        }
    }
    shared.up.send_replace(*generation);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            st = child.wait() => {
                let why = st.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                warn!(pid, status = %why, "charon exited");
                record_exit(shared, &why);
                break Ok(false);
            }
            _ = stop.changed() => {
                stop_charon(&mut child, pid).await;
                break Ok(true);
            }
            _ = tick.tick() => refresh(shared, mode).await,
            _ = shared.wake.notified() => refresh(shared, mode).await,
        }
    };
    pump.abort();
    result
}

fn record_exit(shared: &Shared, why: &str) {
    if let Ok(mut v) = shared.view.lock() {
        v.charon.last_exit = Some(why.to_string());
    }
}

/// SIGTERM (so charon removes its routes and TUN device), then SIGKILL.
async fn stop_charon(child: &mut tokio::process::Child, pid: Option<u32>) {
    child::terminate(child, pid, Duration::from_secs(3)).await;
}

/// Reads the SAs, updates the status, initiates what should be up and is not.
async fn refresh(shared: &Arc<Shared>, mode: Mode) {
    let mut inner = shared.inner.lock().await;
    let Some(c) = inner.client.as_mut() else {
        return;
    };
    let sas = match list_sas(c).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%e, "list-sas failed");
            return;
        }
    };
    // A connection's newest IKE SA (highest unique id) wins.
    let mut by_conn: BTreeMap<String, vici::IkeSa> = BTreeMap::new();
    for (name, sa) in sas {
        let newer = by_conn.get(&name).is_none_or(|old| {
            let uid = |s: &vici::IkeSa| {
                s.uniqueid
                    .as_deref()
                    .and_then(|u| u.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            uid(&sa) > uid(old)
        });
        if newer {
            by_conn.insert(name, sa);
        }
    }
    let desired: Vec<Want> = inner.desired.values().cloned().collect();
    let mut to_initiate = Vec::new();
    let mut views = Vec::new();
    let prev: BTreeMap<String, ConnView> = shared
        .view
        .lock()
        .map(|v| {
            v.connections
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect()
        })
        .unwrap_or_default();
    for w in &desired {
        let conn = &w.conn;
        let (_, initiate, note) = start_for(mode, conn.start_action);
        let sa = by_conn.get(&conn.id);
        let child = sa.and_then(|s| {
            s.child_sas
                .values()
                .filter(|c| c.state.as_deref() == Some("INSTALLED"))
                .max_by_key(|c| c.install_time.map(|t| u64::MAX - t).unwrap_or(0))
                .or_else(|| s.child_sas.values().next())
        });
        let ike_state = sa
            .and_then(|s| s.state.clone())
            .unwrap_or_else(|| "DOWN".into());
        let child_state = child
            .and_then(|c| c.state.clone())
            .unwrap_or_else(|| "DOWN".into());
        let mut v = ConnView {
            id: conn.id.clone(),
            name: conn.name.clone(),
            remote_peer: conn.remote_id.clone(),
            remote_subnet: conn
                .remote_ts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            remote_alias: conn.remote_alias.map(|n| n.to_string()),
            local_alias: conn.local_alias.map(|n| n.to_string()),
            start_action: conn.start_action.to_string(),
            start: if initiate {
                "initiate"
            } else {
                conn.start_action
            }
            .to_string(),
            note: note.map(String::from),
            established_seconds: sa.and_then(|s| s.established),
            child_installed_seconds: child.and_then(|c| c.install_time),
            algorithms: child.map(|c| {
                [&c.encr_alg, &c.integ_alg, &c.dh_group]
                    .iter()
                    .filter_map(|a| a.as_deref())
                    .collect::<Vec<_>>()
                    .join("-")
            }),
            child_remote_ts: child.map(|c| c.remote_ts.clone()).unwrap_or_default(),
            bytes_in: child.and_then(|c| c.bytes_in).unwrap_or(0),
            bytes_out: child.and_then(|c| c.bytes_out).unwrap_or(0),
            packets_in: child.and_then(|c| c.packets_in).unwrap_or(0),
            packets_out: child.and_then(|c| c.packets_out).unwrap_or(0),
            last_error: prev.get(&conn.id).and_then(|p| p.last_error.clone()),
            ike_state,
            child_state,
        };
        if v.child_state == "INSTALLED" {
            v.last_error = None;
        }
        let busy = matches!(
            v.ike_state.as_str(),
            "CONNECTING" | "REKEYING" | "DELETING" | "PASSIVE"
        );
        let recent = inner
            .last_initiate
            .get(&conn.id)
            .is_some_and(|t| t.elapsed() < RETRY);
        if initiate && v.child_state != "INSTALLED" && !busy && !recent {
            to_initiate.push(conn.id.clone());
        }
        views.push(v);
    }
    if let Ok(mut view) = shared.view.lock() {
        view.connections = views;
    }
    for id in to_initiate {
        if let Some(c) = inner.client.as_mut() {
            debug!(conn = %id, "initiating");
            initiate_conn(c, &id).await;
        }
        inner.last_initiate.insert(id, Instant::now());
    }
}

async fn list_sas(c: &mut rsvici::Client) -> Result<Vec<(String, vici::IkeSa)>, DriverError> {
    let stream =
        c.stream_request::<vici::Empty, vici::ListSa>("list-sas", "list-sa", vici::Empty {});
    let collect = async {
        let mut stream = std::pin::pin!(stream);
        let mut out = Vec::new();
        while let Some(item) = stream.try_next().await? {
            out.extend(item);
        }
        Ok::<_, rsvici::Error>(out)
    };
    tokio::time::timeout(Duration::from_secs(5), collect)
        .await
        .map_err(|_| transient("list-sas timed out"))?
        .map_err(|e| transient(format!("list-sas: {e}")))
}

enum Event {
    Log(vici::LogEvent),
    Updown(&'static str),
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, rsvici::Error>> + Send>>;

/// charon's events: log lines become per-connection errors; up/down wakes a refresh.
async fn pump_events(shared: Arc<Shared>, mut client: rsvici::Client) {
    let streams: Vec<EventStream> = vec![
        Box::pin(
            client
                .subscribe::<vici::LogEvent>("log")
                .map(|r| r.map(Event::Log)),
        ),
        Box::pin(
            client
                .subscribe::<vici::Updown>("ike-updown")
                .map(|r| r.map(|u| Event::Updown(u.direction()))),
        ),
        Box::pin(
            client
                .subscribe::<vici::Updown>("child-updown")
                .map(|r| r.map(|u| Event::Updown(u.direction()))),
        ),
    ];
    let mut all = futures_util::stream::select_all(streams);
    while let Some(ev) = all.next().await {
        match ev {
            Ok(Event::Updown(direction)) => {
                debug!(direction, "charon SA up/down");
                shared.wake.notify_one();
            }
            Ok(Event::Log(l)) => {
                let (Some(name), Some(msg)) = (l.ikesa_name, l.msg) else {
                    continue;
                };
                if let Some(reason) = vici::classify(&msg) {
                    warn!(conn = %name, reason, detail = %msg, "ipsec connection error");
                    if let Ok(mut v) = shared.view.lock()
                        && let Some(c) = v.connections.iter_mut().find(|c| c.id == name)
                    {
                        c.last_error = Some(ErrorView {
                            reason: reason.to_string(),
                            detail: msg,
                            at: now_epoch(),
                        });
                    }
                    shared.wake.notify_one();
                }
            }
            Err(e) => {
                debug!(%e, "charon event stream");
                if e.is_closed() || e.is_io() {
                    break;
                }
            }
        }
    }
}

/// XFRM with ESP, or not: adds and removes one SA between documentation addresses (no policy,
/// so no traffic is affected). `KAWAII_IPSEC_MODE=kernel|libipsec` overrides the probe.
async fn detect_mode() -> Mode {
    match std::env::var("KAWAII_IPSEC_MODE").as_deref() {
        Ok("kernel") => return Mode::Kernel,
        Ok("libipsec") | Ok("kernel-libipsec") => return Mode::KernelLibipsec,
        _ => {}
    }
    // A throwaway SA between documentation addresses: added, then deleted at once.
    let sa = "src 192.0.2.254 dst 192.0.2.253 proto esp spi 0x6b617761";
    let add = format!(
        "xfrm state add {sa} mode tunnel enc cbc(aes) 0x6b617761696b617761696b617761696b \
         auth hmac(sha1) 0x6b617761696b617761696b617761696b61776169"
    );
    let add: Vec<&str> = add.split_whitespace().collect();
    let mode = match crate::tool::run("ip", &add, None).await {
        Ok(_) => {
            let del = format!("xfrm state delete {sa}");
            let del: Vec<&str> = del.split_whitespace().collect();
            let _ = crate::tool::run("ip", &del, None).await;
            Mode::Kernel
        }
        Err(_) => Mode::KernelLibipsec,
    };
    info!(mode = ?mode, "ipsec mode");
    mode
}

/// kawaii's own `strongswan.conf` for its charon (rewritten at each start; no secrets in it).
pub fn render_config(dir: &Path, mode: Mode) -> String {
    // kernel-libipsec must come first: the first ipsec interface registered is the one used.
    let libipsec = match mode {
        Mode::Kernel => "",
        Mode::KernelLibipsec => " kernel-libipsec",
    };
    let dir = dir.display();
    let (table, prio) = (
        kawaii_plan::twin::CHARON_TABLE,
        kawaii_plan::twin::CHARON_PRIORITY,
    );
    format!(
        r#"# Written by kawaii for the charon it runs; rewritten at every start.
charon {{
    load_modular = no
    load = random nonce openssl aes sha1 sha2 hmac gmp kdf pem pkcs1 x509 pubkey socket-default{libipsec} kernel-netlink vici
    install_virtual_ip = no
    # Where charon's routes into the tunnels go; an office on our own subnet is steered into this
    # table by a mark (kawaii_plan::twin).
    routing_table = {table}
    routing_table_prio = {prio}
    retransmit_timeout = 2.0
    retransmit_base = 1.4
    retransmit_tries = 3
    syslog {{
        daemon {{
            default = -1
        }}
    }}
    filelog {{
        kawaii {{
            path = {dir}/charon.log
            time_format = %F %T
            ike_name = yes
            flush_line = yes
            default = 1
        }}
    }}
    plugins {{
        vici {{
            socket = unix://{dir}/charon.vici
        }}
    }}
}}
"#
    )
}

/// charon in a private mount namespace whose `/run` is a fresh tmpfs (its pid file lives
/// there, so several charons can run on one machine), killed if kawaii dies.
/// The shell line that gives charon (`$0`) a fresh `/run` and keeps its directory
/// (`$KAWAII_CHARON_DIR`) there if it lies under `/run`: the shell's working directory still
/// reaches the directory the tmpfs hides, and is bound back at its path (`.` as it is: a
/// canonicalized path would name the new, empty one).
const PRIVATE_RUN: &str = "cd \"$KAWAII_CHARON_DIR\" && mount -t tmpfs -o mode=0755 kawaii-charon-run /run && mkdir -p \"$KAWAII_CHARON_DIR\" && mount --no-canonicalize --bind . \"$KAWAII_CHARON_DIR\" && exec \"$0\"";

fn spawn_charon(
    charon: &Path,
    conf: &Path,
    dir: &Path,
) -> Result<tokio::process::Child, DriverError> {
    let (out, err) = child::output(dir, "charon.out", transient)?;
    tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args(["setpriv", "--pdeathsig", "KILL", "--"])
        .args(["sh", "-c", PRIVATE_RUN])
        .arg(charon)
        .env("STRONGSWAN_CONF", conf)
        .env("KAWAII_CHARON_DIR", dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| transient(format!("cannot start {}: {e}", charon.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_becomes_initiate_without_xfrm() {
        assert_eq!(start_for(Mode::Kernel, "trap"), ("trap", false, None));
        let (load, init, note) = start_for(Mode::KernelLibipsec, "trap");
        assert_eq!((load, init), ("none", true));
        assert!(note.is_some());
        assert!(start_for(Mode::KernelLibipsec, "start").1);
        assert!(!start_for(Mode::KernelLibipsec, "none").1);
    }

    #[test]
    fn config_names_its_own_socket_and_plugins() {
        let c = render_config(Path::new("/state/ipsec"), Mode::KernelLibipsec);
        assert!(c.contains("socket = unix:///state/ipsec/charon.vici"));
        assert!(c.contains("kernel-libipsec kernel-netlink vici"));
        assert!(c.contains("routing_table = 220\n") && c.contains("routing_table_prio = 220\n"));
        assert!(!render_config(Path::new("/s"), Mode::Kernel).contains("libipsec"));
    }
}
