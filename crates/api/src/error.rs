//! API errors and their HTTP mapping. Bodies never carry secrets: they are built from
//! validation messages, which never echo secret values.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kawaii_model::FieldError;
use kawaii_store::StoreError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("role {role} may not {what}")]
    Forbidden { role: &'static str, what: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("revision {expected} is stale; the current revision is {current}")]
    Stale { expected: u64, current: u64 },
    #[error("If-Match with the current revision is required")]
    PreconditionRequired,
    /// A part of the gateway this request needs is not running (yet).
    #[error("{0}")]
    Unavailable(String),
    /// The store has no room for the write (507): nothing changed.
    #[error("{0}")]
    Full(String),
    /// This token sent more than its rate allows; try again after the given seconds.
    #[error("too many requests; try again in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// The API cannot be served as configured (a TLS file is missing or unreadable).
    #[error("{0}")]
    Setup(String),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Stale { expected, current } => ApiError::Stale { expected, current },
            // "store unreachable: ..." (503): nothing was acknowledged; the data plane runs on.
            e @ StoreError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            // A newer kawaii migrated the shared store: this instance cannot write it.
            e @ StoreError::TooNew { .. } => ApiError::Unavailable(e.to_string()),
            e @ StoreError::NotEmpty(_) => ApiError::Conflict(e.to_string()),
            e @ StoreError::Full(_) => ApiError::Full(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Stale { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Setup(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let details = match &self {
            ApiError::Invalid(d) => d.clone(),
            _ => Vec::new(),
        };
        let error = match &self {
            ApiError::Invalid(d) if d.len() == 1 => format!("invalid request: {}", d[0]),
            ApiError::Invalid(d) => format!("invalid request: {} errors", d.len()),
            other => other.to_string(),
        };
        if status.is_server_error() {
            tracing::error!(%error, "API request failed");
        }
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after } => Some(*retry_after),
            _ => None,
        };
        let mut resp = (status, Json(ErrorBody { error, details })).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer realm=\"kawaii\""),
            );
        }
        resp
    }
}
