//! The daemon's metrics, the `/metrics` collectors of the capabilities (VRRP, IPsec, WireGuard, pipes), read from
//! their drivers at scrape time, and the helper that encodes one metric family.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

pub(crate) const COUNTER: prometheus_client::metrics::MetricType =
    prometheus_client::metrics::MetricType::Counter;
pub(crate) const GAUGE: prometheus_client::metrics::MetricType =
    prometheus_client::metrics::MetricType::Gauge;

/// The daemon's own metrics: revisions, reconcile passes, config reloads.
#[derive(Debug, Clone, Default)]
pub(crate) struct DaemonMetrics {
    pub(crate) desired_revision: Gauge,
    pub(crate) applied_revision: Gauge,
    pub(crate) reconciles: Family<Vec<(String, String)>, Counter>,
    pub(crate) config_reloads: Family<Vec<(String, String)>, Counter>,
}

impl DaemonMetrics {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "kawaii_desired_revision",
            "Revision of the desired state in the store",
            self.desired_revision.clone(),
        );
        r.register(
            "kawaii_applied_revision",
            "Revision every driver has applied",
            self.applied_revision.clone(),
        );
        r.register(
            "kawaii_reconciles",
            "Reconcile passes by result",
            self.reconciles.clone(),
        );
        r.register(
            "kawaii_config_reloads",
            "Config file reloads by result",
            self.config_reloads.clone(),
        );
    }
}

/// Encodes one metric family (a counter or a gauge) with one sample per item.
pub(crate) fn family<T, L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, prometheus_client::metrics::MetricType),
    items: &[T],
    sample: impl Fn(&T) -> (L, u64),
) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::EncodeMetric;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    let mut f = enc.encode_descriptor(name, help, None, kind)?;
    for item in items {
        let (labels, v) = sample(item);
        let e = f.encode_family(&labels)?;
        if matches!(kind, prometheus_client::metrics::MetricType::Gauge) {
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(e)?;
        } else {
            ConstCounter::new(v).encode(e)?;
        }
    }
    Ok(())
}

/// One metric of a [`table`]: its name, help and type, and the value an item gives.
pub(crate) type Column<T> = (
    &'static str,
    &'static str,
    prometheus_client::metrics::MetricType,
    fn(&T) -> u64,
);

/// Encodes one family per column, each with one sample per item labelled by `labels`.
pub(crate) fn table<T, L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    items: &[T],
    labels: impl Fn(&T) -> L,
    columns: &[Column<T>],
) -> Result<(), std::fmt::Error> {
    for &(name, help, kind, value) in columns {
        family(enc, (name, help, kind), items, |i| (labels(i), value(i)))?;
    }
    Ok(())
}

/// The label set of a metric that has one sample.
fn unlabelled<T>(_: &T) -> Vec<(String, String)> {
    Vec::new()
}

/// `kawaii_vrrp_*` metrics per virtual router, read from the speaker at scrape time.
#[derive(Debug)]
pub(crate) struct VrrpMetrics(pub(crate) Arc<kawaii_drivers::vrrp::Speaker>);

impl prometheus_client::collector::Collector for VrrpMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use kawaii_drivers::vrrp::{RouterStatus, State};
        let labels = |r: &RouterStatus| {
            [
                ("zone", r.zone.clone()),
                ("vrid", r.vrid.to_string()),
                ("family", r.family.label().to_string()),
            ]
        };
        let columns: &[Column<RouterStatus>] = &[
            (
                "kawaii_vrrp_master_transitions",
                "Transitions to Master per virtual router",
                COUNTER,
                |r| r.transitions,
            ),
            (
                "kawaii_vrrp_adverts_sent",
                "VRRP adverts sent per virtual router",
                COUNTER,
                |r| r.adverts_sent,
            ),
            (
                "kawaii_vrrp_adverts_received",
                "VRRP adverts received per virtual router",
                COUNTER,
                |r| r.adverts_received,
            ),
            (
                "kawaii_vrrp_master",
                "1 when this node is master of the virtual router (holds the zone's VIPs)",
                GAUGE,
                |r| u64::from(r.state == State::Master),
            ),
        ];
        table(&mut enc, &self.0.status(), labels, columns)
    }
}

/// Per IPsec connection: SA state and traffic; charon restarts.
#[derive(Debug)]
pub(crate) struct IpsecMetrics(pub(crate) Arc<kawaii_drivers::ipsec::Ipsec>);

impl prometheus_client::collector::Collector for IpsecMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use kawaii_drivers::ipsec::{ConnView, View};
        let view = self.0.view();
        if view.connections.is_empty() && !view.charon.running {
            return Ok(());
        }
        let label = |c: &ConnView| [("connection", c.name.clone())];
        let columns: &[Column<ConnView>] = &[
            (
                "kawaii_ipsec_child_sa_up",
                "1 while the connection's CHILD SA is installed",
                GAUGE,
                |c| u64::from(c.child_state == "INSTALLED"),
            ),
            (
                "kawaii_ipsec_bytes_in",
                "Bytes received through the tunnel",
                COUNTER,
                |c| c.bytes_in,
            ),
            (
                "kawaii_ipsec_bytes_out",
                "Bytes sent through the tunnel",
                COUNTER,
                |c| c.bytes_out,
            ),
            (
                "kawaii_ipsec_packets_in",
                "Packets received through the tunnel",
                COUNTER,
                |c| c.packets_in,
            ),
            (
                "kawaii_ipsec_packets_out",
                "Packets sent through the tunnel",
                COUNTER,
                |c| c.packets_out,
            ),
        ];
        table(&mut enc, &view.connections, label, columns)?;
        let restarts: &[Column<View>] = &[(
            "kawaii_ipsec_charon_restarts",
            "Times kawaii restarted its charon",
            COUNTER,
            |v| u64::from(v.charon.restarts),
        )];
        table(&mut enc, &[view], unlabelled, restarts)
    }
}

/// Per WireGuard peer: bytes both ways and the last handshake, read at the last refresh.
#[derive(Debug)]
pub(crate) struct WgMetrics(pub(crate) Arc<kawaii_drivers::wireguard::WireGuard>);

impl prometheus_client::collector::Collector for WgMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use kawaii_drivers::wireguard::PeerStatus;
        let Some(status) = self.0.status() else {
            return Ok(());
        };
        let label = |p: &PeerStatus| [("peer", p.name.clone())];
        let columns: &[Column<PeerStatus>] = &[
            (
                "kawaii_wireguard_peer_rx_bytes",
                "Bytes received from the WireGuard peer",
                COUNTER,
                |p| p.rx_bytes,
            ),
            (
                "kawaii_wireguard_peer_tx_bytes",
                "Bytes sent to the WireGuard peer",
                COUNTER,
                |p| p.tx_bytes,
            ),
            (
                "kawaii_wireguard_peer_last_handshake_seconds",
                "Unix time of the peer's last completed handshake (0: never)",
                GAUGE,
                |p| p.last_handshake.unwrap_or(0),
            ),
        ];
        table(&mut enc, &status.peers, label, columns)
    }
}

/// Per pipe: connections, open connections, bytes both ways, errors by kind.
#[derive(Debug)]
pub(crate) struct PipeMetrics(pub(crate) Arc<kawaii_drivers::pipes::PipesDriver>);

impl prometheus_client::collector::Collector for PipeMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pipes = self.0.status();
        if pipes.is_empty() {
            return Ok(());
        }
        let label = |p: &kawaii_proxy::PipeStatus| [("pipe", p.name.clone())];
        let columns: &[Column<kawaii_proxy::PipeStatus>] = &[
            (
                "kawaii_pipe_connections",
                "Connections accepted by the pipe",
                COUNTER,
                |p| p.connections,
            ),
            (
                "kawaii_pipe_active_connections",
                "Connections open through the pipe",
                GAUGE,
                |p| p.active,
            ),
        ];
        table(&mut enc, &pipes, label, columns)?;
        let bytes: Vec<_> = pipes
            .iter()
            .flat_map(|p| [(p, "in", p.bytes_in), (p, "out", p.bytes_out)])
            .collect();
        let help = "Bytes through the pipe (in: client to target, out: back)";
        family(
            &mut enc,
            ("kawaii_pipe_bytes", help, COUNTER),
            &bytes,
            |(p, dir, n)| {
                (
                    [("pipe", p.name.clone()), ("direction", (*dir).to_string())],
                    *n,
                )
            },
        )?;
        let errors: Vec<_> = pipes
            .iter()
            .flat_map(|p| p.errors.iter().map(move |(k, n)| (p, *k, *n)))
            .collect();
        let help = "Pipe connections that failed, by kind";
        family(
            &mut enc,
            ("kawaii_pipe_errors", help, COUNTER),
            &errors,
            |(p, k, n)| {
                (
                    [("pipe", p.name.clone()), ("kind", k.as_str().to_string())],
                    *n,
                )
            },
        )
    }
}

/// `kawaii_conntrack_sync_*`: the connection-state sync's counters, read from the conntrackd
/// driver at scrape time (nothing while sync is off).
#[derive(Debug)]
pub(crate) struct ConntrackdMetrics(pub(crate) Arc<kawaii_drivers::conntrackd::Conntrackd>);

impl prometheus_client::collector::Collector for ConntrackdMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0.view();
        if !v.enabled {
            return Ok(());
        }
        use kawaii_drivers::conntrackd::View;
        let columns: &[Column<View>] = &[
            (
                "kawaii_conntrack_sync_synced_entries",
                "This node's flows in conntrackd's cache (sent to the siblings)",
                GAUGE,
                |v| v.synced_entries,
            ),
            (
                "kawaii_conntrack_sync_injected_entries",
                "Siblings' flows put into this node's kernel table since conntrackd started",
                COUNTER,
                |v| v.injected_entries,
            ),
            (
                "kawaii_conntrack_sync_resyncs",
                "Resyncs completed (one after each conntrackd start)",
                COUNTER,
                |v| v.resyncs,
            ),
            (
                "kawaii_conntrack_sync_errors",
                "Failed injections, send/receive errors, malformed and lost messages",
                COUNTER,
                |v| v.errors,
            ),
            (
                "kawaii_conntrack_sync_last_resync_milliseconds",
                "How long the last resync took",
                GAUGE,
                |v| v.last_resync_ms.unwrap_or(0),
            ),
            (
                "kawaii_conntrack_sync_ready",
                "1 once the siblings' flows are in this node's kernel table",
                GAUGE,
                |v| u64::from(v.ready),
            ),
            (
                "kawaii_conntrack_sync_restarts",
                "Times kawaii restarted its conntrackd",
                COUNTER,
                |v| u64::from(v.restarts),
            ),
            (
                "kawaii_conntrack_sync_watchdog_restarts",
                "Restarts of a hung or frozen conntrackd by the watchdog",
                COUNTER,
                |v| u64::from(v.watchdog_restarts),
            ),
            (
                "kawaii_conntrack_sync_running",
                "1 while conntrackd runs",
                GAUGE,
                |v| u64::from(v.running),
            ),
        ];
        table(&mut enc, &[v], unlabelled, columns)
    }
}

/// The conntrack table's fill (entries against size; the ratio is theirs) and its guard.
#[derive(Debug)]
pub(crate) struct ConntrackMetrics(pub(crate) Arc<kawaii_drivers::conntrack::Guard>);

impl prometheus_client::collector::Collector for ConntrackMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.status();
        if s.max == 0 {
            return Ok(());
        }
        use kawaii_drivers::conntrack::GuardStatus;
        let columns: &[Column<GuardStatus>] = &[
            (
                "kawaii_conntrack_entries",
                "Entries in the conntrack table",
                GAUGE,
                |s| s.count,
            ),
            (
                "kawaii_conntrack_max",
                "Size of the conntrack table (nf_conntrack_max)",
                GAUGE,
                |s| s.max,
            ),
            (
                "kawaii_conntrack_public_cap",
                "Table fill at which new flows from the public side are dropped",
                GAUGE,
                |s| s.public_cap,
            ),
            (
                "kawaii_conntrack_guard_engaged",
                "1 while new flows from the public side are dropped to keep room for egress",
                GAUGE,
                |s| u64::from(s.engaged),
            ),
        ];
        table(&mut enc, &[s], unlabelled, columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl prometheus_client::collector::Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let columns: &[Column<(&str, u64)>] = &[
                ("demo", "Sum", COUNTER, |i| i.1),
                ("demo_up", "Up", GAUGE, |i| u64::from(i.1 > 1)),
            ];
            table(
                &mut enc,
                &[("a", 1), ("b", 7)],
                |i| [("item", i.0)],
                columns,
            )?;
            table(
                &mut enc,
                &[()],
                unlabelled,
                &[("demo_one", "One", GAUGE, |_| 3)],
            )
        }
    }

    #[test]
    fn a_table_gives_one_family_per_column_and_one_sample_per_item() {
        let mut r = Registry::default();
        r.register_collector(Box::new(Fixed));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "# TYPE demo counter",
            "demo_total{item=\"a\"} 1",
            "demo_total{item=\"b\"} 7",
            "# TYPE demo_up gauge",
            "demo_up{item=\"a\"} 0",
            "demo_up{item=\"b\"} 1",
            "demo_one{} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
