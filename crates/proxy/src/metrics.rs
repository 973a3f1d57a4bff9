//! Prometheus metrics (prometheus-client), registered into a registry the caller passes in.
//!
//! Contract: every metric is named `kawaii_router_*`; hot paths hold pre-resolved handles (one
//! `get_or_create` per backend per config, not per byte).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BackendLabels {
    pub listener_protocol: String,
    pub route: String,
    pub backend: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BytesLabels {
    pub listener_protocol: String,
    pub route: String,
    pub backend: String,
    /// `to_backend` or `to_client`.
    pub direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    /// `listener` or `route`.
    pub scope: String,
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResetLabels {
    pub route: String,
    /// The peer that reset: `client` or `backend`.
    pub side: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ListenerLabels {
    pub listener: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    connections: Family<BackendLabels, Counter>,
    active: Family<BackendLabels, Gauge>,
    bytes: Family<BytesLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    errors: Family<ErrorLabels, Counter>,
    resets_after_response: Family<ResetLabels, Counter>,
    accepted: Family<ListenerLabels, Counter>,
    listener_active: Family<ListenerLabels, Gauge>,
}

/// Handles for one backend.
#[derive(Debug, Clone)]
pub(crate) struct BackendMetrics {
    pub connections: Counter,
    pub active: Gauge,
    pub bytes_to_backend: Counter,
    pub bytes_to_client: Counter,
    pub up: Gauge,
}

/// Handles for one listener.
#[derive(Debug, Clone)]
pub(crate) struct ListenerMetrics {
    pub accepted: Counter,
    pub active: Gauge,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("kawaii_router");
        r.register(
            "connections",
            "Connections proxied to a backend",
            m.connections.clone(),
        );
        r.register(
            "active_connections",
            "Open proxied connections",
            m.active.clone(),
        );
        r.register("bytes", "Bytes proxied", m.bytes.clone());
        r.register(
            "backend_up",
            "1 when the health check marks the backend up",
            m.backend_up.clone(),
        );
        r.register(
            "errors",
            "Refused or failed connections by kind",
            m.errors.clone(),
        );
        r.register(
            "resets_after_response",
            "Proxied connections a peer reset after the backend's whole answer, FIN included, was passed on (not errors)",
            m.resets_after_response.clone(),
        );
        r.register(
            "accepted_connections",
            "Connections accepted by a listener",
            m.accepted.clone(),
        );
        r.register(
            "listener_active_connections",
            "Open connections per listener",
            m.listener_active.clone(),
        );
        m
    }

    pub(crate) fn backend(&self, protocol: &str, route: &str, backend: &str) -> BackendMetrics {
        let l = BackendLabels {
            listener_protocol: protocol.to_owned(),
            route: route.to_owned(),
            backend: backend.to_owned(),
        };
        let bytes = |direction: &str| {
            self.bytes
                .get_or_create(&BytesLabels {
                    listener_protocol: l.listener_protocol.clone(),
                    route: l.route.clone(),
                    backend: l.backend.clone(),
                    direction: direction.to_owned(),
                })
                .clone()
        };
        BackendMetrics {
            connections: self.connections.get_or_create(&l).clone(),
            active: self.active.get_or_create(&l).clone(),
            bytes_to_backend: bytes("to_backend"),
            bytes_to_client: bytes("to_client"),
            up: self.backend_up.get_or_create(&l).clone(),
        }
    }

    pub(crate) fn listener(&self, name: &str) -> ListenerMetrics {
        let l = ListenerLabels {
            listener: name.to_owned(),
        };
        ListenerMetrics {
            accepted: self.accepted.get_or_create(&l).clone(),
            active: self.listener_active.get_or_create(&l).clone(),
        }
    }

    pub(crate) fn error(&self, scope: &str, name: &str, kind: crate::ErrorKind) {
        let l = ErrorLabels {
            scope: scope.to_owned(),
            name: name.to_owned(),
            kind: kind.as_str().to_owned(),
        };
        self.errors.get_or_create(&l).inc();
    }

    pub(crate) fn reset_after_response(&self, route: &str, side: &str) {
        let l = ResetLabels {
            route: route.to_owned(),
            side: side.to_owned(),
        };
        self.resets_after_response.get_or_create(&l).inc();
    }
}
