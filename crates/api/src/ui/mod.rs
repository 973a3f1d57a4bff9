//! The status page (`GET /ui`) and the live feed it reads (`GET /v1/events`).
//!
//! The page is plain HTML/CSS/JS embedded in the binary; it holds the bearer token in
//! `sessionStorage` and reads `/v1/events` with `fetch`, so the token never goes in a URL. The
//! feed pushes the whole status whenever it changes, at most every [`MIN_GAP`]; it carries only
//! what `GET /v1/status` shows, which never holds a secret.

use crate::auth::Caller;
use crate::error::ErrorBody;
use crate::state::{ApiState, Status};
use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// No inline script or style, no third party, no framing; the page talks to its own origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The least time between two events of one stream.
pub const MIN_GAP: Duration = Duration::from_millis(500);
/// How often a stream looks at the live sections (counters, VRRP) when nothing woke it.
const TICK: Duration = Duration::from_millis(500);

fn asset(mime: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The status page (no token needed to load it; it asks for one).
#[utoipa::path(get, path = "/ui", tag = "ui", responses((status = 200, description = "The status page", content_type = "text/html", body = String)))]
pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// The status page's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "ui", responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)))]
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The status page's style sheet.
#[utoipa::path(get, path = "/ui/app.css", tag = "ui", responses((status = 200, description = "CSS", content_type = "text/css", body = String)))]
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The caller's token name and role.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Whoami {
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

/// Who the bearer token belongs to.
#[utoipa::path(get, path = "/v1/whoami", tag = "status",
    responses((status = 200, description = "OK", body = Whoami), (status = 401, description = "Missing or unknown token", body = ErrorBody)))]
pub(crate) async fn whoami(Extension(caller): Extension<Caller>) -> axum::Json<Whoami> {
    axum::Json(Whoami {
        role: caller.role_name().to_string(),
        name: caller.name,
    })
}

/// Whether the store answers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoreState {
    pub reachable: bool,
    /// The store's current revision (absent when it cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One event of `GET /v1/events`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusEvent {
    /// As `GET /v1/status` returns it.
    pub status: Status,
    pub store: StoreState,
    /// Every instance's fixed addresses (the VRRP sources) with its zone, so that a virtual
    /// router's `master` address can be shown as the zone that holds the VIPs.
    pub instances: BTreeMap<String, String>,
}

/// Builds one event: the live status, the store's state, and the address → zone table.
pub async fn status_event(state: &ApiState) -> StatusEvent {
    let store = state.store.clone();
    let snap = tokio::task::spawn_blocking(move || store.current())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let mut instances = BTreeMap::new();
    let store = match snap {
        Ok(snap) => {
            for z in &snap.gateway.zones {
                for addr in [&z.private_address, &z.public_address]
                    .into_iter()
                    .flatten()
                {
                    // `public_address` may carry a prefix length.
                    let ip = addr.split('/').next().unwrap_or(addr);
                    instances.insert(ip.to_string(), z.name.clone());
                }
            }
            StoreState {
                reachable: true,
                revision: Some(snap.revision),
                error: None,
            }
        }
        Err(error) => StoreState {
            reachable: false,
            revision: None,
            error: Some(error),
        },
    };
    StatusEvent {
        status: state.live_status(),
        store,
        instances,
    }
}

/// What one stream remembers between events.
struct Feed {
    state: ApiState,
    changes: tokio::sync::watch::Receiver<u64>,
    last: Option<String>,
    sent_at: Option<Instant>,
    /// The last look found nothing new: wait for a wake or a tick before the next one.
    idle: bool,
}

/// The next event: at once for a new stream; then, [`MIN_GAP`] after the last one, as soon as a
/// look (at every stored-status change and every [`TICK`]) finds the status changed.
async fn next_status(mut feed: Feed) -> Option<(String, Feed)> {
    loop {
        if let Some(at) = feed.sent_at {
            tokio::time::sleep_until(at + MIN_GAP).await;
        }
        if feed.idle {
            tokio::select! {
                r = feed.changes.changed() => if r.is_err() { tokio::time::sleep(TICK).await },
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        let event = status_event(&feed.state).await;
        let json = match serde_json::to_string(&event) {
            Ok(j) => j,
            Err(error) => {
                tracing::error!(%error, "cannot encode a status event; closing the stream");
                return None;
            }
        };
        if feed.last.as_deref() == Some(json.as_str()) {
            feed.idle = true;
            continue;
        }
        feed.idle = false;
        feed.sent_at = Some(Instant::now());
        feed.last = Some(json.clone());
        return Some((json, feed));
    }
}

/// Server-sent events: a `status` event with a [`StatusEvent`] at once, then one whenever it
/// changes (at most one every 500 ms). Read it with `fetch` and a bearer token.
#[utoipa::path(get, path = "/v1/events", tag = "status",
    responses((status = 200, description = "text/event-stream of `status` events, each a StatusEvent as JSON", content_type = "text/event-stream", body = StatusEvent),
        (status = 401, description = "Missing or unknown token", body = ErrorBody)))]
pub(crate) async fn events(State(state): State<ApiState>) -> impl IntoResponse {
    let feed = Feed {
        changes: state.status_changes(),
        state,
        last: None,
        sent_at: None,
        idle: false,
    };
    let stream = futures_util::stream::unfold(feed, next_status)
        .map(|json| Ok::<_, Infallible>(Event::default().event("status").data(json)));
    (
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ApiState {
        let store = kawaii_store::SqliteStore::in_memory().expect("in-memory store");
        ApiState::new(std::sync::Arc::new(store), Default::default())
    }

    fn feed(state: &ApiState) -> Feed {
        Feed {
            changes: state.status_changes(),
            state: state.clone(),
            last: None,
            sent_at: None,
            idle: false,
        }
    }

    fn revision(json: &str) -> u64 {
        let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
        v["status"]["desired_revision"].as_u64().expect("revision")
    }

    /// The first event at once; nothing while nothing changes; a change within MIN_GAP; never
    /// two events within MIN_GAP.
    #[tokio::test]
    async fn the_feed_sends_changes_only_and_spaces_them() {
        let state = state();
        let mut stream = std::pin::pin!(futures_util::stream::unfold(feed(&state), next_status));
        let t0 = std::time::Instant::now();
        let first = stream.next().await.expect("first event");
        assert!(
            t0.elapsed() < Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(revision(&first), 0);

        let quiet = tokio::time::timeout(Duration::from_millis(1500), stream.next()).await;
        assert!(quiet.is_err(), "an event without a change");

        state.update_status(|s| s.desired_revision = 7);
        let t1 = std::time::Instant::now();
        let e1 = stream.next().await.expect("event");
        assert!(
            t1.elapsed() < Duration::from_millis(300),
            "{:?}",
            t1.elapsed()
        );
        assert_eq!(revision(&e1), 7);

        let sent1 = std::time::Instant::now();
        state.update_status(|s| s.desired_revision = 8);
        let e2 = stream.next().await.expect("event");
        let gap = sent1.elapsed();
        assert_eq!(revision(&e2), 8);
        assert!(
            gap >= MIN_GAP - Duration::from_millis(20),
            "events {gap:?} apart"
        );
        assert!(
            gap < MIN_GAP + Duration::from_millis(300),
            "a change waited {gap:?}"
        );
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(PAGE.contains("src=\"/ui/app.js\""));
        assert!(PAGE.contains("href=\"/ui/app.css\""));
        // The CSP forbids inline code: none may be in the page.
        assert!(!PAGE.contains("<script>"), "inline script in index.html");
        assert!(!PAGE.contains("<style"), "inline style in index.html");
        assert!(
            !PAGE.contains(" style=\""),
            "inline style attribute in index.html"
        );
        assert!(!PAGE.contains("onclick="), "inline handler in index.html");
    }

    #[test]
    fn the_token_never_goes_in_a_url() {
        // The script keeps the token in sessionStorage and sends it as a header only.
        assert!(SCRIPT.contains("sessionStorage"));
        assert!(SCRIPT.contains("Authorization"));
        assert!(!SCRIPT.contains("localStorage"));
        assert!(!SCRIPT.contains("?token"));
        assert!(!SCRIPT.contains("new EventSource"));
    }
}
