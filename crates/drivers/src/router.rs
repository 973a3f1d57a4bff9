//! The domain router driver: hands the plan's listeners and routes to `kawaii-proxy`, which
//! applies them live (new listeners bound, removed ones closed, established connections kept).

use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName, LastApplied};
use kawaii_plan::Plan;
use kawaii_plan::router::RouterPlan;
use kawaii_proxy::{DomainRouter, ProxyError, RouterConfig};
use std::time::Duration;

#[derive(Debug)]
pub struct Router {
    inner: DomainRouter,
    last: LastApplied<Option<RouterPlan>>,
}

/// The plan's router section as the proxy's config.
pub fn to_config(p: &RouterPlan) -> RouterConfig {
    use kawaii_model::valid::{Balance, HealthCheck, ProxyProtocol};
    use kawaii_plan::router::ListenerKind;
    use kawaii_proxy::config as proxy;
    let listeners = p
        .listeners
        .iter()
        .map(|l| proxy::ListenerConfig {
            name: l.name.clone(),
            bind: l.bind,
            protocol: match l.protocol {
                ListenerKind::Tls => proxy::ListenerProtocol::Tls,
                ListenerKind::Http => proxy::ListenerProtocol::Http,
            },
            max_connections: l.max_connections,
            max_connections_per_source: l.max_connections_per_source,
            trusted_proxies: l
                .trusted_proxies
                .iter()
                .map(|n| proxy::Cidr {
                    addr: n.addr(),
                    prefix: n.prefix_len(),
                })
                .collect(),
            header_timeout_ms: None,
        })
        .collect();
    let routes = p
        .routes
        .iter()
        .map(|r| proxy::RouteConfig {
            domain: r.domain.clone(),
            https: r.https.clone(),
            http: r.http.clone(),
            balance: match r.balance {
                Balance::RoundRobin => proxy::Balance::RoundRobin,
                Balance::LeastConnections => proxy::Balance::LeastConnections,
            },
            proxy_protocol: r.proxy_protocol.map(|v| match v {
                ProxyProtocol::V1 => proxy::ProxyProtocolVersion::V1,
                ProxyProtocol::V2 => proxy::ProxyProtocolVersion::V2,
            }),
            health_check: r.health_check.as_ref().map(|c| proxy::HealthCheck {
                kind: match c.kind {
                    HealthCheck::Tcp => proxy::HealthCheckKind::Tcp,
                    HealthCheck::Http => proxy::HealthCheckKind::Http,
                },
                ..proxy::HealthCheck::default()
            }),
            connect_timeout_ms: None,
            idle_timeout_ms: None,
        })
        .collect();
    RouterConfig {
        listeners,
        routes,
        timeouts: proxy::Timeouts {
            header_ms: p.timeouts.header_ms,
            connect_ms: p.timeouts.connect_ms,
            idle_ms: p.timeouts.idle_ms,
        },
        access_log: p.access_log,
    }
}

impl Router {
    pub fn new(registry: &mut prometheus_client::registry::Registry) -> Router {
        Router {
            inner: DomainRouter::new(Some(registry)),
            last: LastApplied::default(),
        }
    }

    /// Per listener, route and backend: connections, bytes, errors, health.
    pub fn status(&self) -> kawaii_proxy::RouterStatus {
        self.inner.status()
    }

    /// Stops accepting and lets connections finish, up to `drain`.
    pub async fn drain(&self, drain: Duration) {
        self.inner.shutdown(drain).await;
    }
}

impl Driver for Router {
    fn name(&self) -> DriverName {
        DriverName::Router
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move {
            if self.last.is(&plan.router) {
                return Ok(Applied::quiet());
            }
            let cfg = match &plan.router {
                Some(p) => to_config(p),
                None => RouterConfig::default(),
            };
            self.inner.apply(cfg).await.map_err(|e| match e {
                ProxyError::InvalidConfig { .. } => DriverError::rejected_from("", e),
                other => DriverError::transient_from("", other),
            })?;
            self.last.set(&plan.router);
            Ok(Applied::quiet())
        })
    }
}

#[cfg(test)]
mod tests {
    /// Every golden router plan converts to the proxy's config and passes its validation, and
    /// the typed conversion gives what the proxy reads from the golden JSON (defaults included).
    #[test]
    fn golden_router_plans_fit_the_proxy() {
        use kawaii_model::{Format, Gateway, validate};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plan/testdata/render");
        let mut seen = 0;
        for case in std::fs::read_dir(root).expect("testdata") {
            let case = case.expect("entry").path();
            let path = case.join("router.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let from_json: kawaii_proxy::RouterConfig =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            from_json
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!from_json.routes.is_empty());
            let config = std::fs::read_to_string(case.join("config.toml")).expect("config");
            let g = Gateway::parse(&config, Format::Toml).expect("parses");
            let d = validate(&g).expect("valid").desired;
            let plan = kawaii_plan::plan(&d, None).expect("plan");
            let typed = super::to_config(plan.router.as_ref().expect("router plan"));
            assert_eq!(typed, from_json, "{}", case.display());
            seen += 1;
        }
        assert!(seen > 0, "no router golden file");
    }
}
