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

/// `kawaii_vrrp_*` metrics per virtual router, read from the speaker at scrape time.
#[derive(Debug)]
pub(crate) struct VrrpMetrics(pub(crate) Arc<kawaii_drivers::vrrp::Speaker>);

impl prometheus_client::collector::Collector for VrrpMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let list = self.0.status();
        let labels = |r: &kawaii_drivers::vrrp::RouterStatus| {
            [("zone", r.zone.clone()), ("vrid", r.vrid.to_string())]
        };
        let help = "Transitions to Master per virtual router";
        family(
            &mut enc,
            ("kawaii_vrrp_master_transitions", help, COUNTER),
            &list,
            |r| (labels(r), r.transitions),
        )?;
        let help = "VRRP adverts sent per virtual router";
        family(
            &mut enc,
            ("kawaii_vrrp_adverts_sent", help, COUNTER),
            &list,
            |r| (labels(r), r.adverts_sent),
        )?;
        let help = "VRRP adverts received per virtual router";
        family(
            &mut enc,
            ("kawaii_vrrp_adverts_received", help, COUNTER),
            &list,
            |r| (labels(r), r.adverts_received),
        )?;
        let help = "1 when this node is master of the virtual router (holds the zone's VIPs)";
        family(&mut enc, ("kawaii_vrrp_master", help, GAUGE), &list, |r| {
            (
                labels(r),
                u64::from(r.state == kawaii_drivers::vrrp::State::Master),
            )
        })
    }
}

/// Per IPsec connection: SA state and traffic; charon restarts.
#[derive(Debug)]
pub(crate) struct IpsecMetrics(pub(crate) Arc<kawaii_drivers::ipsec::Ipsec>);

impl prometheus_client::collector::Collector for IpsecMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let view = self.0.view();
        if view.connections.is_empty() && !view.charon.running {
            return Ok(());
        }
        let conns = &view.connections;
        let label = |c: &kawaii_drivers::ipsec::ConnView| [("connection", c.name.clone())];
        let help = "1 while the connection's CHILD SA is installed";
        family(
            &mut enc,
            ("kawaii_ipsec_child_sa_up", help, GAUGE),
            conns,
            |c| (label(c), u64::from(c.child_state == "INSTALLED")),
        )?;
        let help = "Bytes received through the tunnel";
        family(
            &mut enc,
            ("kawaii_ipsec_bytes_in", help, COUNTER),
            conns,
            |c| (label(c), c.bytes_in),
        )?;
        let help = "Bytes sent through the tunnel";
        family(
            &mut enc,
            ("kawaii_ipsec_bytes_out", help, COUNTER),
            conns,
            |c| (label(c), c.bytes_out),
        )?;
        let help = "Packets received through the tunnel";
        family(
            &mut enc,
            ("kawaii_ipsec_packets_in", help, COUNTER),
            conns,
            |c| (label(c), c.packets_in),
        )?;
        let help = "Packets sent through the tunnel";
        family(
            &mut enc,
            ("kawaii_ipsec_packets_out", help, COUNTER),
            conns,
            |c| (label(c), c.packets_out),
        )?;
        let help = "Times kawaii restarted its charon";
        family(
            &mut enc,
            ("kawaii_ipsec_charon_restarts", help, COUNTER),
            &[()],
            |_| {
                (
                    Vec::<(String, String)>::new(),
                    u64::from(view.charon.restarts),
                )
            },
        )
    }
}

/// Per WireGuard peer: bytes both ways and the last handshake, read at the last refresh.
#[derive(Debug)]
pub(crate) struct WgMetrics(pub(crate) Arc<kawaii_drivers::wireguard::WireGuard>);

impl prometheus_client::collector::Collector for WgMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(status) = self.0.status() else {
            return Ok(());
        };
        let peers = &status.peers;
        let label = |p: &kawaii_drivers::wireguard::PeerStatus| [("peer", p.name.clone())];
        let help = "Bytes received from the WireGuard peer";
        family(
            &mut enc,
            ("kawaii_wireguard_peer_rx_bytes", help, COUNTER),
            peers,
            |p| (label(p), p.rx_bytes),
        )?;
        let help = "Bytes sent to the WireGuard peer";
        family(
            &mut enc,
            ("kawaii_wireguard_peer_tx_bytes", help, COUNTER),
            peers,
            |p| (label(p), p.tx_bytes),
        )?;
        let help = "Unix time of the peer's last completed handshake (0: never)";
        family(
            &mut enc,
            ("kawaii_wireguard_peer_last_handshake_seconds", help, GAUGE),
            peers,
            |p| (label(p), p.last_handshake.unwrap_or(0)),
        )
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
        let help = "Connections accepted by the pipe";
        family(
            &mut enc,
            ("kawaii_pipe_connections", help, COUNTER),
            &pipes,
            |p| (label(p), p.connections),
        )?;
        let help = "Connections open through the pipe";
        family(
            &mut enc,
            ("kawaii_pipe_active_connections", help, GAUGE),
            &pipes,
            |p| (label(p), p.active),
        )?;
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
        let none = Vec::<(String, String)>::new;
        let one = [()];
        let list: [(&str, &str, prometheus_client::metrics::MetricType, u64); 9] = [
            (
                "kawaii_conntrack_sync_synced_entries",
                "This node's flows in conntrackd's cache (sent to the siblings)",
                GAUGE,
                v.synced_entries,
            ),
            (
                "kawaii_conntrack_sync_injected_entries",
                "Siblings' flows put into this node's kernel table since conntrackd started",
                COUNTER,
                v.injected_entries,
            ),
            (
                "kawaii_conntrack_sync_resyncs",
                "Resyncs completed (one after each conntrackd start)",
                COUNTER,
                v.resyncs,
            ),
            (
                "kawaii_conntrack_sync_errors",
                "Failed injections, send/receive errors, malformed and lost messages",
                COUNTER,
                v.errors,
            ),
            (
                "kawaii_conntrack_sync_last_resync_milliseconds",
                "How long the last resync took",
                GAUGE,
                v.last_resync_ms.unwrap_or(0),
            ),
            (
                "kawaii_conntrack_sync_ready",
                "1 once the siblings' flows are in this node's kernel table",
                GAUGE,
                u64::from(v.ready),
            ),
            (
                "kawaii_conntrack_sync_restarts",
                "Times kawaii restarted its conntrackd",
                COUNTER,
                u64::from(v.restarts),
            ),
            (
                "kawaii_conntrack_sync_watchdog_restarts",
                "Restarts of a hung or frozen conntrackd by the watchdog",
                COUNTER,
                u64::from(v.watchdog_restarts),
            ),
            (
                "kawaii_conntrack_sync_running",
                "1 while conntrackd runs",
                GAUGE,
                u64::from(v.running),
            ),
        ];
        for (name, help, kind, value) in list {
            family(&mut enc, (name, help, kind), &one, |_| (none(), value))?;
        }
        Ok(())
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
        let one = [()];
        let none = |_: &()| Vec::<(String, String)>::new();
        let gauges = [
            (
                "kawaii_conntrack_entries",
                "Entries in the conntrack table",
                s.count,
            ),
            (
                "kawaii_conntrack_max",
                "Size of the conntrack table (nf_conntrack_max)",
                s.max,
            ),
            (
                "kawaii_conntrack_public_cap",
                "Table fill at which new flows from the public side are dropped",
                s.public_cap,
            ),
            (
                "kawaii_conntrack_guard_engaged",
                "1 while new flows from the public side are dropped to keep room for egress",
                u64::from(s.engaged),
            ),
        ];
        for (name, help, v) in gauges {
            family(&mut enc, (name, help, GAUGE), &one, |u| (none(u), v))?;
        }
        Ok(())
    }
}
