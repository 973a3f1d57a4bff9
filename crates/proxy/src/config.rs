//! Plain-data configuration of the domain router: listeners, routes and their backends.
//!
//! Contract: these types are what the daemon maps its model onto; they (de)serialize with serde
//! (TOML/JSON), compare with `PartialEq`, and are validated by [`RouterConfig::validate`] before
//! anything is applied. Durations are integer milliseconds.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::ProxyError;

/// The whole router: what to listen on and where to send each name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// One `tracing` event per finished connection on target `kawaii_proxy::access`.
    #[serde(default)]
    pub access_log: bool,
}

/// Which kind of traffic a listener expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// TLS, routed by ClientHello SNI to the routes' `https` backends.
    Tls,
    /// Plain HTTP/1.x, routed by Host to the routes' `http` backends.
    Http,
}

impl fmt::Display for ListenerProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tls => "tls",
            Self::Http => "http",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique name, used in status, metrics and logs.
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: ListenerProtocol,
    /// Concurrent connections on this listener; further ones are closed at accept.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Concurrent connections per client address (the PROXY source when trusted).
    #[serde(default)]
    pub max_connections_per_source: Option<u32>,
    /// Upstream load balancers whose PROXY v1/v2 header is required and believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// Overrides `timeouts.header_ms` for this listener.
    #[serde(default)]
    pub header_timeout_ms: Option<u64>,
}

/// Exact domain, `*.suffix` wildcard, or `*` for the default route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub domain: String,
    /// Backends for TLS listeners.
    #[serde(default)]
    pub https: Vec<SocketAddr>,
    /// Backends for HTTP listeners.
    #[serde(default)]
    pub http: Vec<SocketAddr>,
    #[serde(default)]
    pub balance: Balance,
    /// PROXY header sent to this route's backends.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

/// Active health check, run in the background per backend (never per client connection).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub kind: HealthCheckKind,
    #[serde(default = "defaults::interval")]
    pub interval_ms: u64,
    #[serde(default = "defaults::check_timeout")]
    pub timeout_ms: u64,
    /// Consecutive successes that mark a down backend up.
    #[serde(default = "defaults::rise")]
    pub rise: u32,
    /// Consecutive failures that mark an up backend down.
    #[serde(default = "defaults::fall")]
    pub fall: u32,
    /// Path of the HTTP GET (`kind = "http"`); the route's domain is sent as Host.
    #[serde(default = "defaults::path")]
    pub path: String,
}

/// `http` checks apply to `http` backends; `https` backends always get a TCP check (TLS is never
/// terminated here).
impl Default for HealthCheck {
    /// The defaults a config that names only the kind gets.
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::default(),
            interval_ms: defaults::interval(),
            timeout_ms: defaults::check_timeout(),
            rise: defaults::rise(),
            fall: defaults::fall(),
            path: defaults::path(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    #[default]
    Tcp,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// A client must send a complete ClientHello / request head (and PROXY header) within this.
    #[serde(default = "defaults::header")]
    pub header_ms: u64,
    #[serde(default = "defaults::connect")]
    pub connect_ms: u64,
    /// Close a proxied connection after this long with no byte in either direction.
    #[serde(default = "defaults::idle")]
    pub idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_ms: defaults::header(),
            connect_ms: defaults::connect(),
            idle_ms: defaults::idle(),
        }
    }
}

mod defaults {
    pub fn header() -> u64 {
        5_000
    }
    pub fn connect() -> u64 {
        3_000
    }
    pub fn idle() -> u64 {
        600_000
    }
    pub fn interval() -> u64 {
        2_000
    }
    pub fn check_timeout() -> u64 {
        1_000
    }
    pub fn rise() -> u32 {
        2
    }
    pub fn fall() -> u32 {
        3
    }
    pub fn path() -> String {
        "/".to_owned()
    }
}

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// An IP prefix such as `10.0.0.0/8` or `127.0.0.1` (a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().map_err(|_| format!("`{s}`: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(format!("`{s}`: bad prefix"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A route's domain, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DomainPattern {
    Exact(String),
    /// `*.suffix`; stores `suffix`.
    Wildcard(String),
    Default,
}

impl DomainPattern {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        if s == "*" {
            return Some(Self::Default);
        }
        let (wild, rest) = match s.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let rest = rest.strip_suffix('.').unwrap_or(rest);
        let ok = !rest.is_empty()
            && rest.len() <= 253
            && rest.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !ok {
            return None;
        }
        let rest = rest.to_ascii_lowercase();
        Some(if wild {
            Self::Wildcard(rest)
        } else {
            Self::Exact(rest)
        })
    }
}

impl RouterConfig {
    /// Checks everything `apply` relies on; the error names the field path and the reason.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let invalid = |field: String, reason: &str| ProxyError::InvalidConfig {
            field,
            reason: reason.to_owned(),
        };
        let mut names = std::collections::HashSet::new();
        let mut binds = std::collections::HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if l.name.is_empty() || !names.insert(l.name.as_str()) {
                return Err(invalid(
                    format!("listeners[{i}].name"),
                    "empty or duplicate",
                ));
            }
            if !binds.insert(l.bind) {
                return Err(invalid(format!("listeners[{i}].bind"), "duplicate address"));
            }
            if l.max_connections == Some(0) || l.max_connections_per_source == Some(0) {
                return Err(invalid(
                    format!("listeners[{i}].max_connections"),
                    "must be > 0",
                ));
            }
            if l.header_timeout_ms == Some(0) {
                return Err(invalid(
                    format!("listeners[{i}].header_timeout_ms"),
                    "must be > 0",
                ));
            }
        }
        let mut domains = std::collections::HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let field = |f: &str| format!("routes[{i}].{f}");
            let Some(p) = DomainPattern::parse(&r.domain) else {
                return Err(invalid(field("domain"), "not a domain, `*.domain` or `*`"));
            };
            if !domains.insert(p) {
                return Err(invalid(field("domain"), "duplicate route"));
            }
            if r.https.is_empty() && r.http.is_empty() {
                return Err(invalid(
                    field("https"),
                    "route has neither https nor http backends",
                ));
            }
            if let Some(h) = &r.health_check {
                if h.interval_ms == 0 || h.timeout_ms == 0 || h.rise == 0 || h.fall == 0 {
                    return Err(invalid(
                        field("health_check"),
                        "interval, timeout, rise, fall > 0",
                    ));
                }
                if !h.path.starts_with('/') || h.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(invalid(
                        field("health_check.path"),
                        "must be an absolute path",
                    ));
                }
            }
            if r.connect_timeout_ms == Some(0) || r.idle_timeout_ms == Some(0) {
                return Err(invalid(field("connect_timeout_ms"), "timeouts must be > 0"));
            }
        }
        let t = &self.timeouts;
        if t.header_ms == 0 || t.connect_ms == 0 || t.idle_ms == 0 {
            return Err(invalid("timeouts".into(), "timeouts must be > 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let c: Cidr = "127.0.0.0/8".parse().expect("cidr");
        assert!(c.contains("127.1.2.3".parse().expect("ip")));
        assert!(c.contains("::ffff:127.0.0.9".parse().expect("ip")));
        assert!(!c.contains("10.0.0.1".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("1.2.3.4".parse().expect("ip")));
        assert!("1.2.3.4/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn toml_roundtrip_and_validation() {
        let cfg: RouterConfig = toml::from_str(
            r#"
            access_log = true
            [[listeners]]
            name = "tls"
            bind = "127.0.0.1:8443"
            protocol = "tls"
            trusted_proxies = ["127.0.0.0/8"]
            [[routes]]
            domain = "*.Example.com"
            https = ["127.0.0.1:9443"]
            proxy_protocol = "v2"
            health_check = { kind = "tcp", interval_ms = 500 }
            "#,
        )
        .expect("parses");
        assert!(cfg.validate().is_ok());
        let back: RouterConfig = toml::from_str(&toml::to_string(&cfg).expect("ser")).expect("de");
        assert_eq!(back, cfg);
        let mut bad = cfg.clone();
        bad.routes[0].domain = "a b".into();
        assert!(
            matches!(bad.validate(), Err(ProxyError::InvalidConfig { field, .. }) if field == "routes[0].domain")
        );
    }
}
