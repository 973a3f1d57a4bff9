//! Shared state of the API: the store, the token table, the observed status and the metrics.

use kawaii_model::valid::{ApiLimits, TokenSpec};
use kawaii_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How a driver's last apply failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// Tried again soon, with backoff (a tool or the kernel was busy).
    Transient,
    /// The kernel or a peer tool refused the plan; tried again slowly.
    Rejected,
}

/// What one driver last did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DriverStatus {
    pub name: String,
    pub ok: bool,
    /// The desired revision this driver last applied successfully (0: never).
    pub applied_revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// The resource the error is about, as a document path (`vpc_peerings[1]`), when the
    /// error names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<String>,
}

/// Observed state, filled by the reconcile loop.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub desired_revision: u64,
    /// The revision every driver has applied (the minimum over drivers).
    pub applied_revision: u64,
    pub ready: bool,
    /// Why the data plane is not what the desired state says (a driver failing, with the
    /// resource it failed on; planning failed); `/readyz` answers 503 meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    pub drivers: Vec<DriverStatus>,
    /// Why the last pass could not plan (the drivers kept what they had applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_error: Option<String>,
    /// The store's state, as of this request (`GET /v1/status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<kawaii_store::StoreHealth>,
    /// Config-file errors of the last reload that was rejected, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected_config: Vec<kawaii_model::FieldError>,
    /// Per capability: what its driver observes (absent where the capability is off).
    #[serde(skip_serializing_if = "Details::is_empty")]
    pub details: Details,
}

/// The capability sections of the status.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Details {
    /// Packets and bytes per firewall rule, read back from nftables every 2 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<kawaii_drivers::nftables::RuleCounter>>,
    /// HA: one virtual router per zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrrp: Option<Vec<kawaii_drivers::vrrp::RouterStatus>>,
    /// The domain router's listeners, routes and backends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router: Option<kawaii_proxy::RouterStatus>,
    /// charon and every IPsec connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipsec: Option<kawaii_drivers::ipsec::View>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipes: Option<Vec<kawaii_proxy::PipeStatus>>,
    /// Consent state per VPC peering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_peerings: Option<Vec<kawaii_drivers::consent::PeeringStatus>>,
    /// The WireGuard device and its peers (counters as of the last device read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<kawaii_drivers::wireguard::DeviceStatus>,
    /// HA: connection-state sync (conntrackd) and each sibling's sync state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_sync: Option<kawaii_drivers::conntrackd::View>,
    /// The conntrack table's fill and its public-side guard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<kawaii_drivers::conntrack::GuardStatus>,
}

impl Details {
    pub fn is_empty(&self) -> bool {
        let Details {
            rules,
            vrrp,
            router,
            ipsec,
            pipes,
            vpc_peerings,
            wireguard,
            conntrack_sync,
            conntrack,
        } = self;
        rules.is_none()
            && vrrp.is_none()
            && router.is_none()
            && ipsec.is_none()
            && pipes.is_none()
            && vpc_peerings.is_none()
            && wireguard.is_none()
            && conntrack_sync.is_none()
            && conntrack.is_none()
    }
}

/// Fills status sections when status is asked for, from views the drivers keep in memory, so
/// that those sections are never older than the request.
pub type LiveDetails = Arc<dyn Fn(&mut Details) + Send + Sync>;

/// Called after every committed API write.
pub type OnWrite = Arc<dyn Fn() + Send + Sync>;

/// Warnings about the machine for a document a write made (`serve` reads its interfaces and
/// routes); they join the validation warnings in the write's answer.
pub type EnvCheck =
    Arc<dyn Fn(&kawaii_model::Gateway) -> Vec<kawaii_model::FieldError> + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    tokens: Arc<RwLock<Arc<Vec<TokenSpec>>>>,
    status: Arc<RwLock<Status>>,
    /// Bumped at every stored-status change (wakes the `/v1/events` streams).
    status_changes: tokio::sync::watch::Sender<u64>,
    live: Arc<RwLock<Option<LiveDetails>>>,
    on_write: Arc<RwLock<Option<OnWrite>>>,
    env_check: Arc<RwLock<Option<EnvCheck>>>,
    progress: Arc<RwLock<Progress>>,
    /// The WireGuard device's public key while it runs (for `showconf`).
    wg_public_key: Arc<RwLock<Option<String>>>,
    pub registry: Arc<Registry>,
    pub(crate) requests: prometheus_client::metrics::family::Family<
        crate::handlers::ReqLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    policy: Arc<RwLock<Policy>>,
    /// Per token name: the request budget left and when it was last refilled.
    buckets: Arc<std::sync::Mutex<std::collections::HashMap<String, Bucket>>>,
    pub(crate) auth_failures: Family<ReasonLabels, Counter>,
    pub(crate) limited: Family<LimitLabels, Counter>,
    /// This instance's writes one at a time: they never race each other for a revision (only
    /// writes through other instances of a shared store do, and they are retried).
    pub(crate) writes: Arc<std::sync::Mutex<()>>,
}

/// `[api]` settings the handlers apply at each request.
#[derive(Debug, Clone, Copy, Default)]
struct Policy {
    metrics_auth: bool,
    limits: ApiLimits,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    budget: f64,
    at: std::time::Instant,
}

/// Why an authentication failed: `missing` (no bearer token) or `unknown` (no such token).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: &'static str,
}

/// Which limit refused: `connections`, `rate`, `body`, `header_timeout`, `idle_timeout`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

impl ApiState {
    /// `registry` must be built with [`ApiState::register`] having been called on it.
    pub fn new(store: Arc<dyn Store>, mut registry: Registry) -> ApiState {
        registry.register_collector(Box::new(StoreMetrics(store.clone())));
        let requests = prometheus_client::metrics::family::Family::default();
        registry.register(
            "kawaii_api_requests",
            "API requests by method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or other) and status code",
            requests.clone(),
        );
        let auth_failures = Family::default();
        registry.register(
            "kawaii_api_auth_failures",
            "Requests refused for a missing or unknown bearer token",
            auth_failures.clone(),
        );
        let limited = Family::default();
        registry.register(
            "kawaii_api_limited",
            "Connections or requests refused or closed by an [api] limit",
            limited.clone(),
        );
        ApiState {
            store,
            tokens: Arc::default(),
            status: Arc::default(),
            status_changes: tokio::sync::watch::Sender::new(0),
            live: Arc::default(),
            on_write: Arc::default(),
            env_check: Arc::default(),
            progress: Arc::default(),
            wg_public_key: Arc::default(),
            registry: Arc::new(registry),
            requests,
            policy: Arc::default(),
            buckets: Arc::default(),
            auth_failures,
            limited,
            writes: Arc::new(std::sync::Mutex::new(())),
        }
    }

    /// Applies `[api] metrics_auth` and the limits the handlers enforce (the rate and the body
    /// size); the listener applies the others.
    pub fn set_policy(&self, metrics_auth: bool, limits: ApiLimits) {
        if let Ok(mut p) = self.policy.write() {
            *p = Policy {
                metrics_auth,
                limits,
            };
        }
    }

    pub fn metrics_auth(&self) -> bool {
        self.policy.read().map(|p| p.metrics_auth).unwrap_or(true)
    }

    pub fn limits(&self) -> ApiLimits {
        self.policy.read().map(|p| p.limits).unwrap_or_default()
    }

    /// Counts one refusal by `limit` in `kawaii_api_limited_total`.
    pub fn count_limited(&self, limit: &'static str) {
        self.limited.get_or_create(&LimitLabels { limit }).inc();
    }

    /// Takes one request from `token`'s budget (a token bucket of `rate_limit` per second,
    /// holding twice that). Err: seconds until one request is allowed again.
    pub(crate) fn take_request(&self, token: &str) -> Result<(), u64> {
        let rate = f64::from(self.limits().rate_limit.max(1));
        let burst = 2.0 * rate;
        let now = std::time::Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let b = buckets.entry(token.to_string()).or_insert(Bucket {
            budget: burst,
            at: now,
        });
        b.budget = (b.budget + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.budget >= 1.0 {
            b.budget -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.budget) / rate).ceil().max(1.0) as u64)
        }
    }

    pub fn tokens(&self) -> Arc<Vec<TokenSpec>> {
        self.tokens.read().map(|t| t.clone()).unwrap_or_default()
    }

    pub fn set_tokens(&self, tokens: Vec<TokenSpec>) {
        if let Ok(mut t) = self.tokens.write() {
            *t = Arc::new(tokens);
        }
    }

    /// The status as the reconcile loop stored it (cheap: no live section is read).
    pub fn status(&self) -> Status {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The stored status with the live sections filled in now (`GET /v1/status`).
    pub fn live_status(&self) -> Status {
        let mut s = self.status();
        s.store = Some(self.store.health());
        let live = self.live.read().ok().and_then(|l| l.clone());
        if let Some(fill) = live {
            fill(&mut s.details);
        }
        s
    }

    /// Sections computed at each status request (see [`LiveDetails`]).
    pub fn set_live_details(&self, fill: LiveDetails) {
        if let Ok(mut l) = self.live.write() {
            *l = Some(fill);
        }
    }

    /// Called after every committed API write (the daemon wakes its reconcile loop).
    pub fn set_on_write(&self, f: OnWrite) {
        if let Ok(mut w) = self.on_write.write() {
            *w = Some(f);
        }
    }

    /// Checks the machine for every write's warnings (see [`EnvCheck`]).
    pub fn set_env_check(&self, f: EnvCheck) {
        if let Ok(mut c) = self.env_check.write() {
            *c = Some(f);
        }
    }

    /// A reconcile pass starts (`/readyz` fails when one runs longer than the bound).
    pub fn pass_started(&self, now: Instant) {
        if let Ok(mut p) = self.progress.write() {
            p.pass_started = Some(now);
        }
    }

    /// A pass ended; `behind`: the applied revision is behind the desired one. `bound` is
    /// `api.ready_timeout`.
    pub fn pass_done(&self, now: Instant, behind: bool, bound: Duration) {
        if let Ok(mut p) = self.progress.write() {
            p.pass_started = None;
            p.bound = bound;
            p.behind_since = match (behind, p.behind_since) {
                (false, _) => None,
                (true, since) => since.or(Some(now)),
            };
        }
    }

    /// Why the reconcile loop counts as stuck at `now`, if it does.
    pub fn stalled(&self, now: Instant) -> Option<String> {
        self.progress.read().ok()?.stalled(now)
    }

    pub(crate) fn env_check(&self) -> Option<EnvCheck> {
        self.env_check.read().ok().and_then(|c| c.clone())
    }

    pub(crate) fn written(&self) {
        let f = self.on_write.read().ok().and_then(|w| w.clone());
        if let Some(f) = f {
            f();
        }
    }

    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.write() {
            f(&mut s);
        }
        self.status_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever the stored status was updated.
    pub fn status_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.status_changes.subscribe()
    }

    pub fn wg_public_key(&self) -> Option<String> {
        self.wg_public_key.read().ok().and_then(|k| k.clone())
    }

    pub fn set_wg_public_key(&self, key: Option<String>) {
        if let Ok(mut k) = self.wg_public_key.write() {
            *k = key;
        }
    }
}

/// How the reconcile loop keeps up: when the running pass started, since when the data plane
/// is behind the desired state, and how long either may last.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub pass_started: Option<Instant>,
    pub behind_since: Option<Instant>,
    pub bound: Duration,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            pass_started: None,
            behind_since: None,
            bound: kawaii_model::valid::DEFAULT_READY_TIMEOUT,
        }
    }
}

impl Progress {
    /// Why the loop counts as stuck at `now`: one pass running, or the data plane behind the
    /// desired state, for longer than the bound.
    pub fn stalled(&self, now: Instant) -> Option<String> {
        let over = |since: Option<Instant>| {
            since
                .map(|s| now.saturating_duration_since(s))
                .filter(|d| *d > self.bound)
        };
        if let Some(d) = over(self.pass_started) {
            return Some(format!(
                "the reconcile loop has been in one pass for {} s (api.ready_timeout {})",
                d.as_secs(),
                kawaii_model::duration::format(self.bound)
            ));
        }
        over(self.behind_since).map(|d| {
            format!(
                "the data plane has been behind the desired state for {} s (api.ready_timeout {})",
                d.as_secs(),
                kawaii_model::duration::format(self.bound)
            )
        })
    }
}

/// `kawaii_store_up` and `kawaii_store_seconds_since_sync`, read at each scrape.
struct StoreMetrics(Arc<dyn Store>);

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for StoreMetrics {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        let h = self.0.health();
        let up = ConstGauge::new(i64::from(h.up));
        let labels = [("backend", h.backend.clone())];
        let mut e = enc.encode_descriptor(
            "kawaii_store_up",
            "1 while the store answers, 0 while it is unreachable",
            None,
            up.metric_type(),
        )?;
        up.encode(e.encode_family(&labels)?)?;
        let age = h.seconds_since_sync.unwrap_or(-1.0);
        let age = ConstGauge::new(age);
        let mut e = enc.encode_descriptor(
            "kawaii_store_seconds_since_sync",
            "Seconds since this instance last confirmed it holds the store's current revision (-1: never)",
            None,
            age.metric_type(),
        )?;
        age.encode(e.encode_family(&labels)?)
    }
}
