//! Bearer-token authentication. Tokens are known only by their SHA-256; a presented token is
//! hashed and compared to every known hash in constant time.

use crate::error::ApiError;
use crate::state::ApiState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use kawaii_model::valid::Role;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who is calling: the token's name (for the audit trail) and its role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Fails unless the caller's role is at least `needed`.
    pub fn require(&self, needed: Role, what: &str) -> Result<(), ApiError> {
        let rank = |r: Role| match r {
            Role::Viewer => 0,
            Role::Operator => 1,
            Role::Admin => 2,
        };
        if rank(self.role) >= rank(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                role: self.role_name(),
                what: what.to_string(),
            })
        }
    }
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The table entry for a bearer token `token` named after its role (tests, the bootstrap).
pub fn token_spec(role: Role, token: &str) -> kawaii_model::valid::TokenSpec {
    kawaii_model::valid::TokenSpec {
        name: format!("{role:?}").to_lowercase(),
        role,
        sha256: hash_token(token),
    }
}

/// Middleware for `/v1`: resolves the bearer token to a [`Caller`] within its request rate;
/// writes need operator.
pub(crate) async fn require_token(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &req)?;
    let method = req.method().clone();
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        caller.require(Role::Operator, &format!("{method} {}", req.uri().path()))?;
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// The caller of `req`, within its token's request rate. Each failure is logged (without the
/// token) and counted in `kawaii_api_auth_failures_total`.
pub(crate) fn authenticate(state: &ApiState, req: &Request) -> Result<Caller, ApiError> {
    let path = req.uri().path();
    let fail = |reason: &'static str| {
        tracing::warn!(reason, path, "API authentication failed");
        state
            .auth_failures
            .get_or_create(&crate::state::ReasonLabels { reason })
            .inc();
        ApiError::Unauthorized
    };
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| fail("missing"))?;
    let hash = hash_token(presented);
    let tokens = state.tokens();
    // Compare against every token, without stopping early, so timing says nothing.
    let mut found: Option<Caller> = None;
    for t in tokens.iter() {
        if bool::from(t.sha256.ct_eq(&hash)) && found.is_none() {
            found = Some(Caller {
                name: t.name.clone(),
                role: t.role,
            });
        }
    }
    let caller = found.ok_or_else(|| fail("unknown"))?;
    if let Err(retry_after) = state.take_request(&caller.name) {
        state.count_limited("rate");
        tracing::warn!(token = %caller.name, path, "API request rate exceeded");
        return Err(ApiError::TooManyRequests { retry_after });
    }
    Ok(caller)
}
