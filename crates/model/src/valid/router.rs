//! `[[routes]]` and `[router]`: the domain router's routes (unique lowercase domains, IP:port
//! backends, balance, PROXY protocol, health checks) and its settings (listen address, two
//! distinct ports, trusted proxies, non-zero timeouts), whose ports no NAT rule may forward.

use super::firewall::NatForward;
use super::primitives::{Protocol, domain, port, unique};
use crate::error::Errors;
use crate::spec::{Gateway, Route, RouterSettings};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheck {
    Tcp,
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Lowercase; `*.example.com` for a wildcard, `*` for the default route.
    pub domain: String,
    pub https: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub balance: Balance,
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `tcp` or `http` active checks.
    pub health_check: Option<HealthCheck>,
}

/// The domain router's settings, typed, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSpec {
    pub listen: Option<IpAddr>,
    pub https_port: u16,
    pub http_port: u16,
    pub max_connections: Option<u32>,
    pub max_connections_per_source: Option<u32>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub header_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub access_log: bool,
}

/// The routes, the router settings, and their clash with `nat_rules`.
pub(super) fn check_routing(
    g: &Gateway,
    nat_rules: &[NatForward],
    e: &mut Errors,
) -> (Vec<RouteSpec>, Option<RouterSpec>) {
    let mut routes = Vec::new();
    unique(
        e,
        "routes",
        g.routes.iter().map(|r| r.domain.as_str()),
        "domain",
    );
    for (i, r) in g.routes.iter().enumerate() {
        if let Some(r) = check_route(r, &format!("routes[{i}]"), e) {
            routes.push(r);
        }
    }
    let router = check_router(g.router.as_ref().cloned().unwrap_or_default(), e);
    // The router's ports on the public VIP cannot also be forwarded (IPv6 openings are the
    // hosts' own addresses, not the VIP).
    if let Some(router) = &router
        && !g.routes.is_empty()
    {
        for (i, n) in nat_rules.iter().enumerate() {
            for port in [router.https_port, router.http_port] {
                if n.destination.is_ipv4() && n.protocol == Protocol::Tcp && n.ports.contains(port)
                {
                    e.push(
                        format!("nat_rules[{i}].ports"),
                        format!("tcp {port} is the domain router's listener (routes are declared); forward another port or move the router ([router] https_port/http_port)"),
                    );
                }
            }
        }
    }
    (routes, router)
}

fn check_route(r: &Route, p: &str, e: &mut Errors) -> Option<RouteSpec> {
    let domain = e.check(format!("{p}.domain"), domain(&r.domain));
    if r.https.is_empty() && r.http.is_empty() {
        e.push(p.to_string(), "needs at least one backend in https or http");
    }
    let mut backends: [Vec<SocketAddr>; 2] = [Vec::new(), Vec::new()];
    for (k, (field, list)) in [("https", &r.https), ("http", &r.http)]
        .into_iter()
        .enumerate()
    {
        for (i, b) in list.iter().enumerate() {
            let addr = b.parse::<SocketAddr>().map_err(|_| {
                format!("{b:?} is not an IP:port (backends are addresses; names are not resolved)")
            });
            if let Some(a) = e.check(format!("{p}.{field}[{i}]"), addr) {
                backends[k].push(a);
            }
        }
    }
    let health_check = match r.health_check.as_deref() {
        None => Some(None),
        Some("tcp") => Some(Some(HealthCheck::Tcp)),
        Some("http") => Some(Some(HealthCheck::Http)),
        Some(o) => {
            e.push(
                format!("{p}.health_check"),
                format!("{o:?} is not a health check; use tcp or http"),
            );
            None
        }
    };
    let balance = match r.balance.as_deref() {
        None | Some("round_robin") => Some(Balance::RoundRobin),
        Some("least_connections") => Some(Balance::LeastConnections),
        Some(o) => {
            e.push(
                format!("{p}.balance"),
                format!("{o:?} is not a balance mode; use round_robin or least_connections"),
            );
            None
        }
    };
    let proxy_protocol = match r.proxy_protocol.as_deref() {
        None => Some(None),
        Some("v1") => Some(Some(ProxyProtocol::V1)),
        Some("v2") => Some(Some(ProxyProtocol::V2)),
        Some(o) => {
            e.push(
                format!("{p}.proxy_protocol"),
                format!("{o:?} is not a PROXY protocol version; use v1 or v2"),
            );
            None
        }
    };
    let [https, http] = backends;
    Some(RouteSpec {
        domain: domain?,
        https,
        http,
        balance: balance?,
        proxy_protocol: proxy_protocol?,
        health_check: health_check?,
    })
}

fn check_router(r: RouterSettings, e: &mut Errors) -> Option<RouterSpec> {
    let listen = match &r.listen {
        Some(l) => e.check(
            "router.listen",
            l.parse().map_err(|_| format!("{l:?} is not an IP address")),
        ),
        None => None,
    };
    let port_field = |e: &mut Errors, field: &str, v: Option<u32>, default: u16| {
        e.check(format!("router.{field}"), v.map_or(Ok(default), port))
    };
    let https_port = port_field(e, "https_port", r.https_port, 443);
    let http_port = port_field(e, "http_port", r.http_port, 80);
    if https_port.is_some() && https_port == http_port {
        e.push("router.http_port", "must differ from https_port");
    }
    let mut trusted = Vec::new();
    for (i, t) in r.trusted_proxies.iter().enumerate() {
        let net = if t.contains('/') {
            t.parse::<ipnet::IpNet>().ok()
        } else {
            t.parse::<IpAddr>().ok().map(ipnet::IpNet::from)
        };
        match net {
            Some(n) => trusted.push(n),
            None => e.push(
                format!("router.trusted_proxies[{i}]"),
                format!("{t:?} is not an address or CIDR"),
            ),
        }
    }
    let dur = |e: &mut Errors, field: &str, v: &Option<String>, default: Duration| {
        super::primitives::positive_duration(e, &format!("router.{field}"), v, default)
    };
    let header_timeout = dur(
        e,
        "header_timeout",
        &r.header_timeout,
        Duration::from_secs(5),
    );
    let connect_timeout = dur(
        e,
        "connect_timeout",
        &r.connect_timeout,
        Duration::from_secs(3),
    );
    let idle_timeout = dur(e, "idle_timeout", &r.idle_timeout, Duration::from_secs(600));
    Some(RouterSpec {
        listen,
        https_port: https_port?,
        http_port: http_port?,
        max_connections: r.max_connections,
        max_connections_per_source: r.max_connections_per_source,
        trusted_proxies: trusted,
        header_timeout: header_timeout?,
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        access_log: r.access_log,
    })
}
