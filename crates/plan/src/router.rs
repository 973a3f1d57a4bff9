//! The domain router's plan: listeners and route table. Field names match `kawaii-proxy`'s
//! `RouterConfig` so the driver hands it over as is (a test in the driver checks every golden).

use kawaii_model::Desired;
use kawaii_model::valid::{Balance, HealthCheck, ProxyProtocol, ZoneSpec};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterPlan {
    pub listeners: Vec<Listener>,
    pub routes: Vec<Route>,
    pub timeouts: Timeouts,
    pub access_log: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    /// `tls` (SNI) or `http` (Host).
    pub protocol: &'static str,
    pub max_connections: Option<u32>,
    pub max_connections_per_source: Option<u32>,
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub domain: String,
    pub https: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub balance: &'static str,
    pub proxy_protocol: Option<&'static str>,
    pub health_check: Option<Check>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    pub header_ms: u64,
    pub connect_ms: u64,
    pub idle_ms: u64,
}

impl RouterPlan {
    /// The listener ports (for the firewall).
    pub fn ports(&self) -> Vec<u16> {
        self.listeners.iter().map(|l| l.bind.port()).collect()
    }
}

/// None when no route is declared: then nothing listens and nothing is opened.
pub fn plan(d: &Desired, zone: Option<&ZoneSpec>) -> Option<RouterPlan> {
    if d.routes.is_empty() {
        return None;
    }
    let r = &d.router;
    let ip = r
        .listen
        .or(zone.map(|z| IpAddr::V4(z.public_vip.addr())))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let listener = |name: &str, port: u16, protocol| Listener {
        name: name.into(),
        bind: SocketAddr::new(ip, port),
        protocol,
        max_connections: r.max_connections,
        max_connections_per_source: r.max_connections_per_source,
        trusted_proxies: r.trusted_proxies.iter().map(ToString::to_string).collect(),
    };
    Some(RouterPlan {
        listeners: vec![
            listener("https", r.https_port, "tls"),
            listener("http", r.http_port, "http"),
        ],
        routes: d
            .routes
            .iter()
            .map(|rt| Route {
                domain: rt.domain.clone(),
                https: rt.https.clone(),
                http: rt.http.clone(),
                balance: match rt.balance {
                    Balance::RoundRobin => "round_robin",
                    Balance::LeastConnections => "least_connections",
                },
                proxy_protocol: rt.proxy_protocol.map(|p| match p {
                    ProxyProtocol::V1 => "v1",
                    ProxyProtocol::V2 => "v2",
                }),
                health_check: rt.health_check.map(|h| Check {
                    kind: match h {
                        HealthCheck::Tcp => "tcp",
                        HealthCheck::Http => "http",
                    },
                }),
            })
            .collect(),
        timeouts: Timeouts {
            header_ms: r.header_timeout.as_millis() as u64,
            connect_ms: r.connect_timeout.as_millis() as u64,
            idle_ms: r.idle_timeout.as_millis() as u64,
        },
        access_log: r.access_log,
    })
}
