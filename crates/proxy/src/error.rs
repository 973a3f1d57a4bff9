//! The crate's error type and the per-connection outcome kinds counted in status and metrics.

use serde::Serialize;
use std::net::SocketAddr;

/// Errors of [`crate::DomainRouter`] operations.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Invalid input (maps to 400 in the API).
    #[error("invalid router config at {field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// Transient: the address is in use or not ours; the previous config stays in force.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the router is shut down")]
    ShutDown,
}

/// Why a connection ended badly, or was refused. Counted per listener, route and backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NoSni,
    UnknownName,
    NotTls,
    BadClientHello,
    MalformedRequest,
    HeadTooLarge,
    HeaderTimeout,
    ClientClosedEarly,
    BadProxyHeader,
    ListenerLimit,
    SourceLimit,
    /// The process's connection budget (from its open-file limit) was spent.
    ConnectionBudget,
    AcceptFailed,
    ConnectFailed,
    ConnectTimeout,
    NoBackendAvailable,
    IdleTimeout,
    Io,
    ShutdownAbort,
    /// Pipes: the client reset the connection (ECONNRESET, EPIPE). Its doing, not the gateway's.
    ClientReset,
    /// Pipes: the target reset the connection (ECONNRESET, EPIPE).
    TargetReset,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 21] = [
        Self::NoSni,
        Self::UnknownName,
        Self::NotTls,
        Self::BadClientHello,
        Self::MalformedRequest,
        Self::HeadTooLarge,
        Self::HeaderTimeout,
        Self::ClientClosedEarly,
        Self::BadProxyHeader,
        Self::ListenerLimit,
        Self::SourceLimit,
        Self::ConnectionBudget,
        Self::AcceptFailed,
        Self::ConnectFailed,
        Self::ConnectTimeout,
        Self::NoBackendAvailable,
        Self::IdleTimeout,
        Self::Io,
        Self::ShutdownAbort,
        Self::ClientReset,
        Self::TargetReset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSni => "no_sni",
            Self::UnknownName => "unknown_name",
            Self::NotTls => "not_tls",
            Self::BadClientHello => "bad_client_hello",
            Self::MalformedRequest => "malformed_request",
            Self::HeadTooLarge => "head_too_large",
            Self::HeaderTimeout => "header_timeout",
            Self::ClientClosedEarly => "client_closed_early",
            Self::BadProxyHeader => "bad_proxy_header",
            Self::ListenerLimit => "listener_limit",
            Self::SourceLimit => "source_limit",
            Self::ConnectionBudget => "connection_budget",
            Self::AcceptFailed => "accept_failed",
            Self::ConnectFailed => "connect_failed",
            Self::ConnectTimeout => "connect_timeout",
            Self::NoBackendAvailable => "no_backend_available",
            Self::IdleTimeout => "idle_timeout",
            Self::Io => "io",
            Self::ShutdownAbort => "shutdown_abort",
            Self::ClientReset => "client_reset",
            Self::TargetReset => "target_reset",
        }
    }
}

/// One atomic counter per [`ErrorKind`].
#[derive(Debug, Default)]
pub(crate) struct ErrorCounters([std::sync::atomic::AtomicU64; ErrorKind::ALL.len()]);

impl ErrorCounters {
    pub(crate) fn inc(&self, kind: ErrorKind) {
        self.0[kind as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self) -> std::collections::BTreeMap<ErrorKind, u64> {
        ErrorKind::ALL
            .iter()
            .map(|k| {
                (
                    *k,
                    self.0[*k as usize].load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect()
    }
}
