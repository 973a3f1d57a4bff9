//! The domain router's plan: listeners and route table, in the model's types. The driver turns
//! it into `kawaii-proxy`'s config field by field; its JSON (the golden `router.json`) uses the
//! proxy config's names, so the proxy reads every golden file too (a test in the driver).
//! A zone with an IPv6 VIP gets IPv6 listeners (`https6`, `http6`) beside the IPv4 ones;
//! backends may be of either family.

use kawaii_model::Desired;
use kawaii_model::valid::{Balance, HealthCheck, ProxyProtocol, ZoneSpec};
use serde::{Serialize, Serializer};
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
    pub protocol: ListenerKind,
    pub max_connections: Option<u32>,
    pub max_connections_per_source: Option<u32>,
    #[serde(serialize_with = "as_text")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// What a listener reads to choose a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// The TLS ClientHello's SNI.
    Tls,
    /// The HTTP Host header.
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub domain: String,
    pub https: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    #[serde(serialize_with = "balance")]
    pub balance: Balance,
    #[serde(serialize_with = "proxy_protocol")]
    pub proxy_protocol: Option<ProxyProtocol>,
    pub health_check: Option<Check>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    #[serde(serialize_with = "check_kind")]
    pub kind: HealthCheck,
}

fn as_text<S: Serializer>(nets: &[ipnet::IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(ToString::to_string))
}

fn balance<S: Serializer>(b: &Balance, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match b {
        Balance::RoundRobin => "round_robin",
        Balance::LeastConnections => "least_connections",
    })
}

fn proxy_protocol<S: Serializer>(p: &Option<ProxyProtocol>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        None => s.serialize_none(),
        Some(ProxyProtocol::V1) => s.serialize_some("v1"),
        Some(ProxyProtocol::V2) => s.serialize_some("v2"),
    }
}

fn check_kind<S: Serializer>(k: &HealthCheck, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match k {
        HealthCheck::Tcp => "tcp",
        HealthCheck::Http => "http",
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    pub header_ms: u64,
    pub connect_ms: u64,
    pub idle_ms: u64,
}

impl RouterPlan {
    /// The listener ports (for the firewall), each once.
    pub fn ports(&self) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        for p in self.listeners.iter().map(|l| l.bind.port()) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
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
    let listener = |name: &str, ip: IpAddr, port: u16, protocol| Listener {
        name: name.into(),
        bind: SocketAddr::new(ip, port),
        protocol,
        max_connections: r.max_connections,
        max_connections_per_source: r.max_connections_per_source,
        trusted_proxies: r.trusted_proxies.clone(),
    };
    let mut listeners = vec![
        listener("https", ip, r.https_port, ListenerKind::Tls),
        listener("http", ip, r.http_port, ListenerKind::Http),
    ];
    // Dual-stack: the zone's IPv6 VIP too, unless the listeners are bound to one address.
    if let (None, Some(v6)) = (r.listen, zone.and_then(|z| z.public_vip6)) {
        let ip6 = IpAddr::V6(v6.addr());
        listeners.push(listener("https6", ip6, r.https_port, ListenerKind::Tls));
        listeners.push(listener("http6", ip6, r.http_port, ListenerKind::Http));
    }
    Some(RouterPlan {
        listeners,
        routes: d
            .routes
            .iter()
            .map(|rt| Route {
                domain: rt.domain.clone(),
                https: rt.https.clone(),
                http: rt.http.clone(),
                balance: rt.balance,
                proxy_protocol: rt.proxy_protocol,
                health_check: rt.health_check.map(|kind| Check { kind }),
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
