//! `[api]`: the listen address and the bearer tokens (name, role, SHA-256 of the token).
//! A token hash is a secret: its errors never echo the value.

use super::primitives::unique;
use crate::error::Errors;
use crate::spec::ApiSettings;
use std::net::SocketAddr;

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
}

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
    Some(ApiSpec {
        listen: listen?,
        tokens,
        token_file: a.token_file.clone(),
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
