//! Point-in-time status of the router, serializable for the API and `kawaii status`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::ErrorKind;
use crate::config::ListenerProtocol;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RouterStatus {
    pub listeners: Vec<ListenerStatus>,
    pub routes: Vec<RouteStatus>,
    /// Pipes parked for reuse by splice(2) (Linux); idle connections hold none.
    pub idle_pipes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ListenerStatus {
    pub name: String,
    #[schema(value_type = String)]
    pub bind: SocketAddr,
    /// The bound address (differs from `bind` when it asked for port 0).
    #[schema(value_type = String)]
    pub local_addr: SocketAddr,
    pub protocol: ListenerProtocol,
    pub active_connections: u64,
    pub accepted_connections: u64,
    /// Refusals and failures before a route was chosen (limits, bad input, unknown names).
    pub errors: BTreeMap<ErrorKind, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RouteStatus {
    pub domain: String,
    pub protocol: ListenerProtocol,
    pub active_connections: u64,
    pub total_connections: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BackendStatus {
    #[schema(value_type = String)]
    pub address: SocketAddr,
    pub healthy: bool,
    /// Whether an active health check runs (otherwise `healthy` is always true).
    pub health_checked: bool,
    pub active_connections: u64,
    pub total_connections: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
}
