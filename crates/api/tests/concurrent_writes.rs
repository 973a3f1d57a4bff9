//! Concurrent writers through the API, in process: every answer to a create or a replace is the
//! item that request wrote (its own id and fields), never whatever a later read finds at the
//! same place after other writers' changes.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "operator-token-for-concurrent-writes";

async fn send(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<String>,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("served");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// One writer: creates a rule on its own port, replaces it, deletes it, `rounds` times; checks
/// that each answer is its own rule.
async fn writer(app: axum::Router, k: u16, rounds: u16) {
    for i in 0..rounds {
        let port = 20000 + 1000 * k + i;
        let rule = |p: u16| format!(r#"{{"protocol": "tcp", "ports": "{p}"}}"#);
        let (status, created) = send(&app, "POST", "/v1/ingress-rules", Some(rule(port))).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(
            created["ports"],
            port.to_string(),
            "POST answered another rule: {created}"
        );
        let id = created["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {created}"))
            .to_owned();
        let path = format!("/v1/ingress-rules/{id}");
        let (status, replaced) = send(&app, "PUT", &path, Some(rule(port + 500))).await;
        assert_eq!(status, StatusCode::OK, "{replaced}");
        assert_eq!(
            replaced["id"],
            id.as_str(),
            "PUT answered another rule: {replaced}"
        );
        assert_eq!(replaced["ports"], (port + 500).to_string(), "{replaced}");
        let (status, _) = send(&app, "DELETE", &path, None).await;
        assert!(status.is_success(), "DELETE {path}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_and_replaces_answer_their_own_item() {
    let store = Arc::new(kawaii_store::SqliteStore::in_memory().expect("store"));
    let g = kawaii_model::Gateway::parse(
        "[gateway]\nname = \"acme\"\nprivate_subnet = \"10.1.0.0/24\"\n",
        kawaii_model::Format::Toml,
    )
    .expect("doc");
    let seed = kawaii_store::Actor {
        name: "test".into(),
        action: "seed".into(),
    };
    kawaii_store::Store::commit(store.as_ref(), None, &g, &seed).expect("commit");
    let state = kawaii_api::ApiState::new(store, prometheus_client::registry::Registry::default());
    state.set_tokens(vec![kawaii_model::valid::TokenSpec {
        name: "ops".into(),
        role: kawaii_model::valid::Role::Operator,
        sha256: kawaii_api::hash_token(TOKEN),
    }]);
    // The writers hammer the API far beyond the per-token default rate on purpose.
    state.set_policy(
        false,
        kawaii_model::valid::ApiLimits {
            rate_limit: 1_000_000,
            ..Default::default()
        },
    );
    let app = kawaii_api::router(state);
    let writers: Vec<_> = (0..4)
        .map(|k| tokio::spawn(writer(app.clone(), k, 40)))
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let (_, left) = send(&app, "GET", "/v1/ingress-rules", None).await;
    assert_eq!(
        left,
        serde_json::json!([]),
        "every rule was deleted by the id its POST answered"
    );
}
