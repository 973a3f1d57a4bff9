//! Route handlers. Every write: load the current document, change it, validate the whole
//! document, commit it at the revision it was read from (retrying on a concurrent write unless
//! the client pinned a revision with `If-Match`).

use crate::auth::{Caller, require_token};
use crate::error::{ApiError, ErrorBody};
use crate::state::{ApiState, Status};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kawaii_model::valid::Role;
use kawaii_model::*;
use kawaii_store::{Actor, AuditEntry, Snapshot};
use prometheus_client::encoding::EncodeLabelSet;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReqLabels {
    method: String,
    code: u16,
}

/// What every write answers: the stored resource (for a delete, the new revision) and the
/// warnings `kawaii check` prints for the document the write made (an empty list when none),
/// each with its field path: the validation warnings and, under `serve`, the machine's
/// (an interface that does not exist, a peering's `via` on no attached network).
#[derive(Debug, Serialize, ToSchema)]
pub struct Written<T> {
    #[serde(flatten)]
    pub item: T,
    pub warnings: Vec<FieldError>,
}

/// A delete's answer (inside [`Written`]).
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub revision: u64,
}

/// The whole desired state with its revision.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayView {
    pub revision: u64,
    pub gateway: Gateway,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Kawaii gateway API", description = "A project's private network gateway."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, FieldError))
)]
struct ApiDoc;

struct BearerAuth;
impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let comps = api.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole HTTP service: `/v1` (token required), plus the open `/healthz`, `/readyz`,
/// `/metrics`, `/openapi.json` and the status page under `/ui`.
pub fn router(state: ApiState) -> axum::Router {
    let (v1, mut spec) = v1_routes().split_for_parts();
    let (open, open_spec) = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(crate::ui::page))
        .routes(routes!(crate::ui::script))
        .routes(routes!(crate::ui::style))
        .split_for_parts();
    spec.merge(open_spec);
    // The open endpoints carry no secrets and need no token.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/ui",
        "/ui/app.js",
        "/ui/app.css",
    ] {
        if let Some(item) = spec.paths.paths.get_mut(path)
            && let Some(op) = item.get.as_mut()
        {
            op.security = Some(vec![
                utoipa::openapi::security::SecurityRequirement::default(),
            ]);
        }
    }
    let spec = std::sync::Arc::new(spec);
    let v1 = v1.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_token,
    ));
    let body_limit = usize::try_from(state.limits().max_body_bytes).unwrap_or(usize::MAX);
    v1.merge(open)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(Extension(spec))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // A bounded label set: any other method (sent before authentication) is "other".
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let resp = next.run(req).await;
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        state.count_limited("body");
    }
    state
        .requests
        .get_or_create(&ReqLabels {
            method,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

fn v1_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(get_gateway, put_gateway))
        .routes(routes!(get_status))
        .routes(routes!(crate::ui::events))
        .routes(routes!(crate::ui::whoami))
        .routes(routes!(get_audit))
        .routes(routes!(ingress_rules::list, ingress_rules::create))
        .routes(routes!(
            ingress_rules::get,
            ingress_rules::replace,
            ingress_rules::delete
        ))
        .routes(routes!(egress_rules::list, egress_rules::create))
        .routes(routes!(
            egress_rules::get,
            egress_rules::replace,
            egress_rules::delete
        ))
        .routes(routes!(nat_rules::list, nat_rules::create))
        .routes(routes!(
            nat_rules::get,
            nat_rules::replace,
            nat_rules::delete
        ))
        .routes(routes!(vpc_peerings::list, vpc_peerings::create))
        .routes(routes!(
            vpc_peerings::get,
            vpc_peerings::replace,
            vpc_peerings::delete
        ))
        .routes(routes!(ipsec::list, ipsec::create))
        .routes(routes!(ipsec::get, ipsec::replace, ipsec::delete))
        .routes(routes!(wireguard_peers::list, wireguard_peers::create))
        .routes(routes!(
            wireguard_peers::get,
            wireguard_peers::replace,
            wireguard_peers::delete
        ))
        .routes(routes!(peer_config))
        .routes(routes!(pipes::list, pipes::create))
        .routes(routes!(pipes::get, pipes::replace, pipes::delete))
        .routes(routes!(routes_::list, routes_::create))
        .routes(routes!(routes_::get, routes_::replace, routes_::delete))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

async fn snapshot(state: &ApiState) -> Result<Snapshot, ApiError> {
    let store = state.store.clone();
    blocking(move || Ok(store.current()?)).await
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default().trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse().map(Some).map_err(|_| {
        ApiError::Invalid(vec![FieldError::new(
            "If-Match",
            format!("{s:?} is not a revision number"),
        )])
    })
}

/// Applies `change` to the current document and commits it; see the module doc.
async fn mutate<T: Send + 'static>(
    state: &ApiState,
    caller: &Caller,
    action: String,
    expected: Option<u64>,
    change: impl Fn(&mut Gateway) -> Result<T, ApiError> + Send + 'static,
) -> Result<(u64, T, Vec<FieldError>), ApiError> {
    let (rev, out, warnings, _) = mutate_committed(state, caller, action, expected, change).await?;
    Ok((rev, out, warnings))
}

/// [`mutate`], also answering the document as committed (ids and addresses assigned): what a
/// write reports must come from its own revision, not from a later read that concurrent
/// writes may have changed.
async fn mutate_committed<T: Send + 'static>(
    state: &ApiState,
    caller: &Caller,
    action: String,
    expected: Option<u64>,
    change: impl Fn(&mut Gateway) -> Result<T, ApiError> + Send + 'static,
) -> Result<(u64, T, Vec<FieldError>, Gateway), ApiError> {
    let store = state.store.clone();
    let caller = caller.clone();
    let env_check = state.env_check();
    let writes = state.writes.clone();
    blocking(move || {
        // A poisoned lock only means another write panicked; the store itself is consistent.
        let _one_at_a_time = writes.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..5 {
            // Read through to a shared store: a change bases on its current revision, not on
            // this instance's copy, which may lag behind a write made through another one.
            let snap = store.latest()?;
            let mut doc = snap.gateway.clone();
            let out = change(&mut doc)?;
            doc.prepare_commit(&snap.gateway);
            let report = validate(&doc).map_err(|e| ApiError::Invalid(e.0))?;
            if doc.api != snap.gateway.api {
                caller.require(Role::Admin, "change [api]")?;
            }
            let actor = Actor {
                name: caller.name.clone(),
                action: action.clone(),
            };
            match store.commit(Some(expected.unwrap_or(snap.revision)), &doc, &actor) {
                Ok(rev) => {
                    let mut warnings = report.warnings;
                    if let Some(check) = &env_check {
                        warnings.extend(check(&doc));
                    }
                    return Ok((rev, out, warnings, doc));
                }
                Err(kawaii_store::StoreError::Stale { .. }) if expected.is_none() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict(
            "too many concurrent writes; try again".into(),
        ))
    })
    .await
    .inspect(|_| state.written())
}

fn with_revision(rev: u64, status: StatusCode, body: impl Serialize) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = format!("\"{rev}\"").parse() {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// The whole desired state. Secrets are always redacted.
#[utoipa::path(get, path = "/v1/gateway", tag = "gateway",
    responses((status = 200, description = "OK", body = GatewayView), (status = 401, description = "Missing or unknown token", body = ErrorBody)))]
async fn get_gateway(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let snap = snapshot(&state).await?;
    Ok(with_revision(
        snap.revision,
        StatusCode::OK,
        GatewayView {
            revision: snap.revision,
            gateway: snap.gateway,
        },
    ))
}

/// Replaces the whole desired state. Takes the document, or the `{revision, gateway}` envelope
/// that GET returns. Requires `If-Match: <revision>` (or the envelope's revision). Secrets sent
/// back as `(redacted)` keep their stored value.
#[utoipa::path(put, path = "/v1/gateway", tag = "gateway", request_body = Gateway,
    params(("If-Match" = String, Header, description = "the revision the change is based on")),
    responses((status = 200, description = "OK", body = Written<GatewayView>), (status = 400, description = "Invalid input: every error with its field path", body = ErrorBody),
        (status = 403, description = "The role may not do this", body = ErrorBody), (status = 412, description = "Stale revision", body = ErrorBody), (status = 428, description = "If-Match required", body = ErrorBody)))]
async fn put_gateway(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let (envelope_rev, body) = unwrap_envelope(&body)?;
    let expected = match (if_match(&headers)?, envelope_rev) {
        (Some(h), Some(e)) if h != e => {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "revision",
                format!("{e} differs from If-Match {h}"),
            )]));
        }
        (Some(h), _) => h,
        (None, Some(e)) => e,
        (None, None) => return Err(ApiError::PreconditionRequired),
    };
    let new = Gateway::parse(&body, Format::Json).map_err(|e| ApiError::Invalid(e.details()))?;
    let (rev, (), warnings) = mutate(
        &state,
        &caller,
        "PUT /v1/gateway".into(),
        Some(expected),
        move |doc| {
            *doc = new.clone();
            Ok(())
        },
    )
    .await?;
    let snap = snapshot(&state).await?;
    Ok(with_revision(
        rev,
        StatusCode::OK,
        Written {
            item: GatewayView {
                revision: rev,
                gateway: snap.gateway,
            },
            warnings,
        },
    ))
}

/// What GET /v1/gateway returns, `{"revision": N, "gateway": DOCUMENT}`, is unwrapped to the
/// document and N; anything else is taken as the document itself. (A document's own top-level
/// `gateway` section never comes with a `revision` beside it.)
fn unwrap_envelope(body: &str) -> Result<(Option<u64>, String), ApiError> {
    let Ok(serde_json::Value::Object(mut top)) = serde_json::from_str::<serde_json::Value>(body)
    else {
        return Ok((None, body.to_string()));
    };
    if top.len() != 2 || !top.contains_key("revision") {
        return Ok((None, body.to_string()));
    }
    let revision = top
        .get("revision")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            ApiError::Invalid(vec![FieldError::new(
                "revision",
                "expected a revision number".to_string(),
            )])
        })?;
    let doc = top.remove("gateway").ok_or_else(|| {
        ApiError::Invalid(vec![FieldError::new(
            "gateway",
            "the envelope has no gateway document".to_string(),
        )])
    })?;
    Ok((Some(revision), doc.to_string()))
}

/// Observed state: applied revision, driver results, and per-capability details.
#[utoipa::path(get, path = "/v1/status", tag = "status", responses((status = 200, description = "OK", body = Status)))]
async fn get_status(State(state): State<ApiState>) -> Json<Status> {
    Json(state.live_status())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct ShowconfQuery {
    /// `wireguard` (a wg-quick file, the default), `json` or `yaml` (a Kilo `Peer` object).
    format: Option<String>,
    /// `ipv4` (the default) or `ipv6`: which of this zone's public VIPs the wg-quick file's
    /// `Endpoint` is (the other one is a comment).
    endpoint: Option<String>,
}

/// The configuration a VPN peer applies to reach this gateway (`kawaii peer showconf`). The
/// peer's preshared key, if any, is included only for operators and admins.
#[utoipa::path(get, path = "/v1/wireguard/peers/{key}/config", tag = "wireguard-peers", params(("key" = String, Path), ShowconfQuery),
    responses((status = 200, description = "The configuration, as text/plain (wireguard) or a Kilo Peer object (json, yaml)"),
        (status = 400, description = "Unknown format or endpoint family", body = ErrorBody), (status = 404, description = "No such peer", body = ErrorBody),
        (status = 409, description = "No address yet, or no IPv6 endpoint (the zone has no public_vip6)", body = ErrorBody),
        (status = 503, description = "The WireGuard device is not running", body = ErrorBody)))]
async fn peer_config(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ShowconfQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "wireguard".into());
    if !["wireguard", "json", "yaml"].contains(&format.as_str()) {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "format",
            format!("{format:?} is not one of wireguard, json, yaml"),
        )]));
    }
    let ipv6 = match q.endpoint.as_deref() {
        None | Some("ipv4") => false,
        Some("ipv6") => true,
        Some(other) => {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "endpoint",
                format!("{other:?} is not one of ipv4, ipv6"),
            )]));
        }
    };
    let snap = snapshot(&state).await?;
    let report = validate(&snap.gateway).map_err(|e| ApiError::Internal(e.to_string()))?;
    let d = &report.desired;
    let stored = snap
        .gateway
        .wireguard
        .as_ref()
        .and_then(|w| w.peers.iter().find(|p| p.name == key))
        .ok_or_else(|| ApiError::NotFound(format!("no WireGuard peer {key:?}")))?;
    let with_secrets = caller.require(Role::Operator, "read secrets").is_ok();
    let body = match format.as_str() {
        "wireguard" => {
            let public_key = state.wg_public_key().ok_or_else(|| {
                ApiError::Unavailable(
                    "the WireGuard device is not running (see the wireguard driver in /v1/status)"
                        .into(),
                )
            })?;
            let zone_name = state.status().zone;
            let zone = d.zones.iter().find(|z| Some(&z.name) == zone_name.as_ref());
            let mut conf = kawaii_plan::wireguard::peer_conf(d, zone, &key, &public_key)
                .map_err(|e| ApiError::Conflict(e.to_string()))?;
            if ipv6 {
                conf = conf
                    .over_ipv6()
                    .map_err(|e| ApiError::Conflict(e.to_string()))?;
            }
            return Ok((
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                conf.render(with_secrets),
            )
                .into_response());
        }
        "json" => serde_json::to_string_pretty(&dropin::kilo_peer(stored, with_secrets))
            .map(|s| s + "\n")
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        _ => yaml_serde::to_string(&dropin::kilo_peer(stored, with_secrets))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let mime = if format == "json" {
        "application/json"
    } else {
        "application/yaml"
    };
    Ok(([(header::CONTENT_TYPE, mime)], body).into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct AuditQuery {
    /// How many entries, newest first (default 100).
    limit: Option<usize>,
}

/// The audit trail (admin only): who changed what, secrets redacted.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "OK", body = Vec<AuditEntry>), (status = 403, description = "The role may not do this", body = ErrorBody)))]
async fn get_audit(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.require(Role::Admin, "read the audit trail")?;
    let store = state.store.clone();
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(blocking(move || Ok(store.audit(limit)?)).await?))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "OK", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: 200 once the first desired state has been applied, the store answers and the
/// data plane is what the desired state says; 503 before, while the store is unreachable (the
/// body says so, and how stale this instance is; the data plane keeps its last applied state
/// meanwhile), while a driver fails (`degraded: `, naming the driver and the resource), and when
/// the reconcile loop has made no progress for longer than `api.ready_timeout` (`stalled: `).
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "OK", body = String), (status = 503, description = "Not ready", body = String)))]
async fn readyz(State(state): State<ApiState>) -> (StatusCode, String) {
    let status = state.status();
    if !status.ready {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into());
    }
    let mut why = String::new();
    if let Some(d) = &status.degraded {
        why += &format!("degraded: {d}\n");
    }
    if let Some(s) = state.stalled(std::time::Instant::now()) {
        why += &format!("stalled: {s}\n");
    }
    if !why.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let store = state.store.health();
    if !store.up {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "store down: {} (last sync {}); running the last applied state\n",
                store.error.as_deref().unwrap_or("unreachable"),
                store
                    .seconds_since_sync
                    .map(|s| format!("{s:.0} s ago"))
                    .unwrap_or_else(|| "never since start".into())
            ),
        );
    }
    (StatusCode::OK, "ready\n".into())
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "OK", body = String)))]
async fn metrics(
    State(state): State<ApiState>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    if state.metrics_auth() {
        crate::auth::authenticate(&state, &req)?;
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &state.registry)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OK", body = Object)))]
async fn openapi_json(
    Extension(spec): Extension<std::sync::Arc<utoipa::openapi::OpenApi>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json((*spec).clone())
}

/// A collection inside the gateway document.
trait Collection: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const WHAT: &'static str;
    const KEY: &'static str;
    fn key(&self) -> Option<String>;
    fn set_key(&mut self, key: &str);
    fn items(g: &Gateway) -> &[Self];
    fn items_mut(g: &mut Gateway) -> Result<&mut Vec<Self>, ApiError>;
}

macro_rules! rule_collection {
    ($t:ty, $what:literal, $field:ident) => {
        impl Collection for $t {
            const WHAT: &'static str = $what;
            const KEY: &'static str = "id";
            fn key(&self) -> Option<String> {
                self.id.clone()
            }
            fn set_key(&mut self, key: &str) {
                self.id = Some(key.to_string());
            }
            fn items(g: &Gateway) -> &[Self] {
                &g.$field
            }
            fn items_mut(g: &mut Gateway) -> Result<&mut Vec<Self>, ApiError> {
                Ok(&mut g.$field)
            }
        }
    };
}
rule_collection!(IngressRule, "ingress rule", ingress_rules);
rule_collection!(EgressRule, "egress rule", egress_rules);
rule_collection!(NatRule, "nat rule", nat_rules);

macro_rules! named_collection {
    ($t:ty, $what:literal, $key:ident, $field:ident) => {
        impl Collection for $t {
            const WHAT: &'static str = $what;
            const KEY: &'static str = stringify!($key);
            fn key(&self) -> Option<String> {
                Some(self.$key.clone())
            }
            fn set_key(&mut self, key: &str) {
                self.$key = key.to_string();
            }
            fn items(g: &Gateway) -> &[Self] {
                &g.$field
            }
            fn items_mut(g: &mut Gateway) -> Result<&mut Vec<Self>, ApiError> {
                Ok(&mut g.$field)
            }
        }
    };
}
named_collection!(VpcPeering, "VPC peering", name, vpc_peerings);
named_collection!(Ipsec, "IPsec connection", name, ipsec);
named_collection!(Pipe, "pipe", name, pipes);
named_collection!(Route, "route", domain, routes);

impl Collection for WgPeer {
    const WHAT: &'static str = "WireGuard peer";
    const KEY: &'static str = "name";
    fn key(&self) -> Option<String> {
        Some(self.name.clone())
    }
    fn set_key(&mut self, key: &str) {
        self.name = key.to_string();
    }
    fn items(g: &Gateway) -> &[Self] {
        g.wireguard
            .as_ref()
            .map(|w| w.peers.as_slice())
            .unwrap_or_default()
    }
    fn items_mut(g: &mut Gateway) -> Result<&mut Vec<Self>, ApiError> {
        g.wireguard.as_mut().map(|w| &mut w.peers).ok_or_else(|| {
            ApiError::Conflict(
                "the gateway has no [wireguard] section; PUT /v1/gateway to add one".into(),
            )
        })
    }
}

async fn list_items<C: Collection>(state: &ApiState) -> Result<Response, ApiError> {
    let snap = snapshot(state).await?;
    Ok(with_revision(
        snap.revision,
        StatusCode::OK,
        C::items(&snap.gateway),
    ))
}

async fn get_item<C: Collection>(state: &ApiState, key: String) -> Result<Response, ApiError> {
    let snap = snapshot(state).await?;
    let item = C::items(&snap.gateway)
        .iter()
        .find(|i| i.key().as_deref() == Some(key.as_str()))
        .ok_or_else(|| ApiError::NotFound(format!("no {} {key:?}", C::WHAT)))?;
    Ok(with_revision(snap.revision, StatusCode::OK, item))
}

/// Fuzzing entry: every request-body parser of the handlers on `body` (the gateway document
/// with or without its revision envelope, each collection's item), and the validation and plan
/// a commit would run on what parses. Nothing is stored. Panics only on a bug.
pub fn fuzz_bodies(body: &str) {
    fn item<C: Collection>(body: &str) {
        if let Ok(it) = parse_body::<C>(body) {
            let mut g = Gateway::default();
            g.gateway.private_subnet = Some("10.1.0.0/24".into());
            if let Ok(items) = C::items_mut(&mut g) {
                items.push(it);
            }
            g.prepare_commit(&Gateway::default());
            if let Ok(r) = validate(&g) {
                let _ = kawaii_plan::plan(&r.desired, None);
            }
        }
    }
    if let Ok((_, doc)) = unwrap_envelope(body)
        && let Ok(mut g) = Gateway::parse(&doc, Format::Json)
    {
        g.prepare_commit(&Gateway::default());
        if let Ok(r) = validate(&g) {
            let _ = kawaii_plan::plan(&r.desired, None);
        }
    }
    item::<IngressRule>(body);
    item::<EgressRule>(body);
    item::<NatRule>(body);
    item::<VpcPeering>(body);
    item::<Ipsec>(body);
    item::<Pipe>(body);
    item::<Route>(body);
    item::<WgPeer>(body);
}

fn parse_body<C: Collection>(body: &str) -> Result<C, ApiError> {
    let mut de = serde_json::Deserializer::from_str(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::Invalid(vec![FieldError::new(path, e.inner().to_string())])
    })
}

async fn create_item<C: Collection>(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    path: &str,
    body: String,
) -> Result<Response, ApiError> {
    let item: C = parse_body(&body)?;
    let expected = if_match(headers)?;
    let (rev, (index, created), warnings, committed) = mutate_committed(
        state,
        caller,
        format!("POST {path}"),
        expected,
        move |doc| {
            let items = C::items_mut(doc)?;
            if let Some(k) = item.key()
                && items.iter().any(|i| i.key().as_deref() == Some(k.as_str()))
            {
                return Err(ApiError::Conflict(format!(
                    "{} {k:?} already exists",
                    C::WHAT
                )));
            }
            items.push(item.clone());
            Ok((items.len() - 1, ()))
        },
    )
    .await?;
    let () = created;
    // What this write stored, with its assigned id.
    let stored = C::items(&committed)
        .get(index)
        .cloned()
        .ok_or_else(|| ApiError::Internal(format!("the new {} was not stored", C::WHAT)))?;
    let location = stored.key().map(|k| format!("{path}/{}", urlencode(&k)));
    let mut resp = with_revision(
        rev,
        StatusCode::CREATED,
        Written {
            item: stored,
            warnings,
        },
    );
    if let Some(Ok(loc)) = location.map(|l| l.parse()) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn replace_item<C: Collection>(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    path: &str,
    key: String,
    body: String,
) -> Result<Response, ApiError> {
    let mut item: C = parse_body(&body)?;
    if let Some(k) = item.key()
        && k != key
    {
        return Err(ApiError::Invalid(vec![FieldError::new(
            C::KEY,
            format!("{k:?} differs from {key:?} in the URL; to rename, delete and create"),
        )]));
    }
    item.set_key(&key);
    let expected = if_match(headers)?;
    let k2 = key.clone();
    let (rev, (), warnings, committed) = mutate_committed(
        state,
        caller,
        format!("PUT {path}/{key}"),
        expected,
        move |doc| {
            let items = C::items_mut(doc)?;
            let slot = items
                .iter_mut()
                .find(|i| i.key().as_deref() == Some(k2.as_str()))
                .ok_or_else(|| ApiError::NotFound(format!("no {} {k2:?}", C::WHAT)))?;
            *slot = item.clone();
            Ok(())
        },
    )
    .await?;
    let stored = C::items(&committed)
        .iter()
        .find(|i| i.key().as_deref() == Some(key.as_str()))
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no {} {key:?}", C::WHAT)))?;
    Ok(with_revision(
        rev,
        StatusCode::OK,
        Written {
            item: stored,
            warnings,
        },
    ))
}

async fn delete_item<C: Collection>(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    path: &str,
    key: String,
) -> Result<Response, ApiError> {
    let expected = if_match(headers)?;
    let (rev, (), warnings) = mutate(
        state,
        caller,
        format!("DELETE {path}/{key}"),
        expected,
        move |doc| {
            let items = C::items_mut(doc)?;
            let before = items.len();
            items.retain(|i| i.key().as_deref() != Some(key.as_str()));
            if items.len() == before {
                return Err(ApiError::NotFound(format!("no {} {key:?}", C::WHAT)));
            }
            Ok(())
        },
    )
    .await?;
    Ok(with_revision(
        rev,
        StatusCode::OK,
        Written {
            item: Deleted { revision: rev },
            warnings,
        },
    ))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `*`), for a path segment.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

macro_rules! collection_handlers {
    ($module:ident, $t:ty, $tag:literal, $base:literal, $item:literal) => {
        pub(crate) mod $module {
            use super::*;

            #[doc = concat!("List every ", $tag, ".")]
            #[utoipa::path(get, path = $base, tag = $tag, operation_id = concat!(stringify!($module), "_list"), responses((status = 200, description = "OK", body = Vec<$t>)))]
            pub(crate) async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
                list_items::<$t>(&state).await
            }

            #[doc = concat!("Create a ", $tag, ".")]
            #[utoipa::path(post, path = $base, tag = $tag, operation_id = concat!(stringify!($module), "_create"), request_body = $t,
                responses((status = 201, description = "Created", body = Written<$t>), (status = 400, description = "Invalid input: every error with its field path", body = ErrorBody), (status = 409, description = "Conflict", body = ErrorBody)))]
            pub(crate) async fn create(
                State(state): State<ApiState>,
                Extension(caller): Extension<Caller>,
                headers: HeaderMap,
                body: String,
            ) -> Result<Response, ApiError> {
                create_item::<$t>(&state, &caller, &headers, $base, body).await
            }

            #[doc = concat!("Read one ", $tag, ".")]
            #[utoipa::path(get, path = $item, tag = $tag, operation_id = concat!(stringify!($module), "_get"), params(("key" = String, Path)),
                responses((status = 200, description = "OK", body = $t), (status = 404, description = "Not found", body = ErrorBody)))]
            pub(crate) async fn get(State(state): State<ApiState>, Path(key): Path<String>) -> Result<Response, ApiError> {
                get_item::<$t>(&state, key).await
            }

            #[doc = concat!("Replace one ", $tag, ".")]
            #[utoipa::path(put, path = $item, tag = $tag, operation_id = concat!(stringify!($module), "_replace"), params(("key" = String, Path)), request_body = $t,
                responses((status = 200, description = "OK", body = Written<$t>), (status = 400, description = "Invalid input: every error with its field path", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
            pub(crate) async fn replace(
                State(state): State<ApiState>,
                Extension(caller): Extension<Caller>,
                headers: HeaderMap,
                Path(key): Path<String>,
                body: String,
            ) -> Result<Response, ApiError> {
                replace_item::<$t>(&state, &caller, &headers, $base, key, body).await
            }

            #[doc = concat!("Delete one ", $tag, ".")]
            #[utoipa::path(delete, path = $item, tag = $tag, operation_id = concat!(stringify!($module), "_delete"), params(("key" = String, Path)),
                responses((status = 200, description = "Deleted", body = Written<Deleted>), (status = 404, description = "Not found", body = ErrorBody)))]
            pub(crate) async fn delete(
                State(state): State<ApiState>,
                Extension(caller): Extension<Caller>,
                headers: HeaderMap,
                Path(key): Path<String>,
            ) -> Result<Response, ApiError> {
                delete_item::<$t>(&state, &caller, &headers, $base, key).await
            }
        }
    };
}

collection_handlers!(
    ingress_rules,
    IngressRule,
    "ingress-rules",
    "/v1/ingress-rules",
    "/v1/ingress-rules/{key}"
);
collection_handlers!(
    egress_rules,
    EgressRule,
    "egress-rules",
    "/v1/egress-rules",
    "/v1/egress-rules/{key}"
);
collection_handlers!(
    nat_rules,
    NatRule,
    "nat-rules",
    "/v1/nat-rules",
    "/v1/nat-rules/{key}"
);
collection_handlers!(
    vpc_peerings,
    VpcPeering,
    "vpc-peerings",
    "/v1/vpc-peerings",
    "/v1/vpc-peerings/{key}"
);
collection_handlers!(ipsec, Ipsec, "ipsec", "/v1/ipsec", "/v1/ipsec/{key}");
collection_handlers!(
    wireguard_peers,
    WgPeer,
    "wireguard-peers",
    "/v1/wireguard/peers",
    "/v1/wireguard/peers/{key}"
);
collection_handlers!(pipes, Pipe, "pipes", "/v1/pipes", "/v1/pipes/{key}");
collection_handlers!(routes_, Route, "routes", "/v1/routes", "/v1/routes/{key}");
