//! The REST API: `/v1/...` resources over the store, bearer-token auth with roles, errors as
//! `{"error", "details": [{"path", "reason"}]}`, `/openapi.json` generated from the handlers,
//! Prometheus text at `/metrics`, `/healthz` and `/readyz`, and the status page at `/ui` with
//! its live feed `/v1/events`.
//!
//! Handlers only read the store and commit validated documents to it; the daemon's reconcile loop
//! watches the store and applies. No handler talks to the kernel.

mod auth;
mod error;
mod handlers;
mod server;
mod state;
mod ui;

pub use auth::{Caller, hash_token, token_spec};
pub use error::ApiError;
pub use handlers::{GatewayView, fuzz_bodies, router, urlencode};
pub use server::{serve, tls_acceptor};
pub use state::{
    ApiState, Details, DriverStatus, ErrorKind, LimitLabels, LiveDetails, OnWrite, Status,
};
pub use ui::{StatusEvent, StoreState, Whoami, status_event};
