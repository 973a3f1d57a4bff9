//! The authorization matrix: every route the OpenAPI spec lists × {no token, viewer, operator,
//! admin}, each cell asserted against the policy, in process (no root, no network). A new route
//! is covered as soon as it is in the spec; a route whose policy is not written here fails.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kawaii_api::ApiState;
use kawaii_model::valid::Role;
use std::sync::Arc;
use tower::ServiceExt;

const TOKENS: [(&str, Role); 3] = [
    ("viewer-token-for-the-matrix", Role::Viewer),
    ("operator-token-for-the-matrix", Role::Operator),
    ("admin-token-for-the-matrix", Role::Admin),
];

/// Who may do what. `None`: no token needed.
fn needed(method: &str, path: &str) -> Option<Role> {
    match (method, path) {
        ("GET", "/healthz" | "/readyz" | "/metrics" | "/openapi.json") => None,
        // The status page's assets: no data in them, the page asks for a token.
        ("GET", "/ui" | "/ui/app.js" | "/ui/app.css") => None,
        ("GET", "/v1/audit") => Some(Role::Admin),
        ("GET", p) if p.starts_with("/v1/") => Some(Role::Viewer),
        (_, p) if p.starts_with("/v1/") => Some(Role::Operator),
        (m, p) => panic!("no policy written for {m} {p}: add it to the matrix"),
    }
}

fn rank(r: Role) -> u8 {
    match r {
        Role::Viewer => 0,
        Role::Operator => 1,
        Role::Admin => 2,
    }
}

/// A peer whose pre-shared key only operators and admins may see in showconf.
const PEER_PSK: &str = "b2N0ZXRzLXRoYXQtbXVzdC1uZXZlci1sZWFrLTQyIT0=";

fn app() -> axum::Router {
    let doc = format!(
        r#"[gateway]
name = "acme"
private_subnet = "10.1.0.0/24"
[wireguard]
address = "10.8.0.1/24"
[[wireguard.peers]]
name = "alice"
public_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
preshared_key = "{PEER_PSK}"
"#
    );
    let g = kawaii_model::Gateway::parse(&doc, kawaii_model::Format::Toml).expect("doc");
    let store = Arc::new(kawaii_store::SqliteStore::in_memory_with(&g).expect("store"));
    let state = ApiState::new(store, prometheus_client::registry::Registry::default());
    state.set_wg_public_key(Some("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=".into()));
    state.set_tokens(
        TOKENS
            .iter()
            .map(|(t, role)| kawaii_api::token_spec(*role, t))
            .collect(),
    );
    kawaii_api::router(state)
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let body = if matches!(method, "PUT" | "POST") {
        req = req.header("Content-Type", "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    let served = app.clone().oneshot(req.body(body).expect("request"));
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), served)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 5 s"))
        .expect("served");
    let status = resp.status();
    // A stream (the event feed) is read only as far as it has something to say at once.
    let read = axum::body::to_bytes(resp.into_body(), 1 << 20);
    let bytes = tokio::time::timeout(std::time::Duration::from_millis(300), read)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn every_route_times_every_role() {
    let app = app();
    let (status, spec) = call(&app, "GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let spec: serde_json::Value = serde_json::from_str(&spec).expect("spec");
    let mut cells = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let method = method.to_uppercase();
            let concrete = path.replace("{key}", "probe");
            let need = needed(&method, path);
            let callers = std::iter::once((None, None))
                .chain(TOKENS.iter().map(|(t, r)| (Some(*t), Some(*r))));
            for (token, role) in callers {
                let (status, body) = call(&app, &method, &concrete, token).await;
                let allowed = match (need, role) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(n), Some(r)) => rank(r) >= rank(n),
                };
                let who = role.map_or("no token".to_string(), |r| format!("{r:?}"));
                if allowed {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{method} {path} as {who}: refused with {status}: {body}"
                    );
                } else {
                    let want = if token.is_none() {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    assert_eq!(status, want, "{method} {path} as {who}: {body}");
                }
                // No answer ever carries a token.
                for (t, _) in TOKENS {
                    assert!(!body.contains(t), "{method} {path} as {who} echoed a token");
                }
                cells += 1;
            }
        }
    }
    assert!(cells >= 4 * 40, "only {cells} cells: the spec lost routes?");
}

/// showconf gives the peer's pre-shared key to operators and admins only, in every format.
#[tokio::test]
async fn showconf_shows_the_psk_by_role() {
    let app = app();
    for format in ["wireguard", "json", "yaml"] {
        let path = format!("/v1/wireguard/peers/alice/config?format={format}");
        for (token, role) in TOKENS {
            let (status, body) = call(&app, "GET", &path, Some(token)).await;
            assert_eq!(status, StatusCode::OK, "{format} as {role:?}: {body}");
            assert!(
                body.contains("GY5aT1N9dTR") || body.contains("PublicKey"),
                "{body}"
            );
            let shown = body.contains(PEER_PSK);
            assert_eq!(
                shown,
                rank(role) >= rank(Role::Operator),
                "{format} as {role:?}: {body}"
            );
        }
        let (status, _) = call(&app, "GET", &path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_wrong_token_is_refused_everywhere_it_matters() {
    let app = app();
    for path in [
        "/v1/gateway",
        "/v1/status",
        "/v1/audit",
        "/v1/ingress-rules",
    ] {
        let (status, _) = call(&app, "GET", path, Some("not-a-known-token")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}
