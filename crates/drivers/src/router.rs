//! The domain router driver: hands the plan's listeners and routes to `kawaii-proxy`, which
//! applies them live (new listeners bound, removed ones closed, established connections kept).

use crate::{ApplyFuture, Driver, DriverError};
use kawaii_plan::Plan;
use kawaii_plan::router::RouterPlan;
use kawaii_proxy::{DomainRouter, ProxyError, RouterConfig};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug)]
pub struct Router {
    inner: DomainRouter,
    last: Mutex<Option<Option<RouterPlan>>>,
}

/// The plan's router section as the proxy's config (same field names, checked by a test).
pub fn to_config(p: &RouterPlan) -> Result<RouterConfig, DriverError> {
    let v =
        serde_json::to_value(p).map_err(|e| DriverError::Rejected(format!("router plan: {e}")))?;
    serde_json::from_value(v)
        .map_err(|e| DriverError::Rejected(format!("router plan does not fit the proxy: {e}")))
}

impl Router {
    pub fn new(registry: &mut prometheus_client::registry::Registry) -> Router {
        Router {
            inner: DomainRouter::new(Some(registry)),
            last: Mutex::new(None),
        }
    }

    /// Per listener, route and backend: connections, bytes, errors, health.
    pub fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.inner.status()).unwrap_or_default()
    }

    /// Stops accepting and lets connections finish, up to `drain`.
    pub async fn drain(&self, drain: Duration) {
        self.inner.shutdown(drain).await;
    }
}

impl Driver for Router {
    fn name(&self) -> &'static str {
        "router"
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move {
            if self
                .last
                .lock()
                .map(|l| l.as_ref() == Some(&plan.router))
                .unwrap_or(false)
            {
                return Ok(());
            }
            let cfg = match &plan.router {
                Some(p) => to_config(p)?,
                None => RouterConfig::default(),
            };
            self.inner.apply(cfg).await.map_err(|e| match e {
                ProxyError::InvalidConfig { .. } => DriverError::Rejected(e.to_string()),
                other => DriverError::Transient(other.to_string()),
            })?;
            if let Ok(mut l) = self.last.lock() {
                *l = Some(plan.router.clone());
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    /// Every golden router plan converts to the proxy's config and passes its validation.
    #[test]
    fn golden_router_plans_fit_the_proxy() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plan/testdata/render");
        let mut seen = 0;
        for case in std::fs::read_dir(root).expect("testdata") {
            let path = case.expect("entry").path().join("router.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let cfg: kawaii_proxy::RouterConfig =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            cfg.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!cfg.routes.is_empty());
            seen += 1;
        }
        assert!(seen > 0, "no router golden file");
    }
}
