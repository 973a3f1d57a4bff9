//! `[api]`: the listen address, TLS, the limits and the bearer tokens (name, role, SHA-256 of
//! the token). A token hash is a secret: its errors never echo the value. A listen address other
//! than loopback needs TLS unless `allow_plain_http` says otherwise.

use super::primitives::{positive_duration, unique};
use crate::error::Errors;
use crate::spec::ApiSettings;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// The hash is treated as a secret (it identifies the token): `Debug` redacts it.
impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("sha256", &crate::secret::REDACTED)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSpec {
    pub listen: SocketAddr,
    pub tokens: Vec<TokenSpec>,
    pub token_file: Option<String>,
    /// `ready_timeout`: how long the reconcile loop may be behind before `/readyz` fails.
    pub ready_timeout: Duration,
    /// None: plain HTTP (loopback, or `allow_plain_http`).
    pub tls: Option<ApiTls>,
    pub metrics_auth: bool,
    pub limits: ApiLimits,
}

/// HTTPS: the certificate chain and key files, and the CA that client certificates need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    pub cert_file: String,
    pub key_file: String,
    pub client_ca_file: Option<String>,
}

/// What one client may take of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    pub max_connections: u32,
    pub max_body_bytes: u32,
    pub max_header_bytes: u32,
    /// Requests per second per token (bursts of twice this).
    pub rate_limit: u32,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 256,
            max_body_bytes: 1 << 20,
            max_header_bytes: 16 << 10,
            rate_limit: 100,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The default `api.ready_timeout`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn check_api(a: &ApiSettings, e: &mut Errors) -> Option<ApiSpec> {
    let listen = e.check(
        "api.listen",
        a.listen
            .parse::<SocketAddr>()
            .map_err(|_| format!("{:?} is not an address:port", a.listen)),
    );
    unique(
        e,
        "api.tokens",
        a.tokens.iter().map(|t| t.name.as_str()),
        "name",
    );
    let mut tokens = Vec::new();
    for (i, t) in a.tokens.iter().enumerate() {
        let p = format!("api.tokens[{i}]");
        let role = Role::parse(&t.role);
        if role.is_none() {
            e.push(
                format!("{p}.role"),
                format!("{:?} is not a role; use admin, operator or viewer", t.role),
            );
        }
        let hash = sha256_hex(t.sha256.expose());
        if hash.is_none() {
            // Never echo the value: it is a secret.
            e.push(
                format!("{p}.sha256"),
                "must be 64 hex digits (the SHA-256 of the token)",
            );
        }
        if let (Some(role), Some(sha256)) = (role, hash) {
            tokens.push(TokenSpec {
                name: t.name.clone(),
                role,
                sha256,
            });
        }
    }
    let ready_timeout = positive_duration(
        e,
        "api.ready_timeout",
        &a.ready_timeout,
        DEFAULT_READY_TIMEOUT,
    );
    let tls = check_tls(a, e);
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && tls.is_none()
        && !a.allow_plain_http
    {
        e.push(
            "api.listen",
            format!(
                "{addr} is not loopback: set tls_cert_file and tls_key_file, \
                 or allow_plain_http = true"
            ),
        );
    }
    let limits = check_limits(a, e);
    Some(ApiSpec {
        listen: listen?,
        tokens,
        token_file: a.token_file.clone(),
        ready_timeout: ready_timeout?,
        tls,
        metrics_auth: a.metrics_auth,
        limits: limits?,
    })
}

fn check_tls(a: &ApiSettings, e: &mut Errors) -> Option<ApiTls> {
    match (&a.tls_cert_file, &a.tls_key_file) {
        (Some(cert), Some(key)) => Some(ApiTls {
            cert_file: cert.clone(),
            key_file: key.clone(),
            client_ca_file: a.client_ca_file.clone(),
        }),
        (cert, key) => {
            if cert.is_some() {
                e.push("api.tls_key_file", "required with tls_cert_file");
            }
            if key.is_some() {
                e.push("api.tls_cert_file", "required with tls_key_file");
            }
            if a.client_ca_file.is_some() {
                e.push(
                    "api.client_ca_file",
                    "needs TLS: set tls_cert_file and tls_key_file",
                );
            }
            None
        }
    }
}

fn check_limits(a: &ApiSettings, e: &mut Errors) -> Option<ApiLimits> {
    let d = ApiLimits::default();
    let count = |e: &mut Errors, field: &str, v: Option<u32>, default: u32, min: u32| match v {
        None => Some(default),
        Some(n) if n >= min => Some(n),
        Some(n) => {
            e.push(
                format!("api.{field}"),
                format!("{n} is below the minimum {min}"),
            );
            None
        }
    };
    let max_connections = count(
        e,
        "max_connections",
        a.max_connections,
        d.max_connections,
        1,
    );
    let max_body_bytes = count(
        e,
        "max_body_bytes",
        a.max_body_bytes,
        d.max_body_bytes,
        1024,
    );
    // hyper reads heads in a buffer of at least 8 KiB.
    let max_header_bytes = count(
        e,
        "max_header_bytes",
        a.max_header_bytes,
        d.max_header_bytes,
        8192,
    );
    let rate_limit = count(e, "rate_limit", a.rate_limit, d.rate_limit, 1);
    let header_timeout =
        positive_duration(e, "api.header_timeout", &a.header_timeout, d.header_timeout);
    let idle_timeout = positive_duration(e, "api.idle_timeout", &a.idle_timeout, d.idle_timeout);
    Some(ApiLimits {
        max_connections: max_connections?,
        max_body_bytes: max_body_bytes?,
        max_header_bytes: max_header_bytes?,
        rate_limit: rate_limit?,
        header_timeout: header_timeout?,
        idle_timeout: idle_timeout?,
    })
}

/// Parses 64 hex digits into 32 bytes.
pub fn sha256_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}
