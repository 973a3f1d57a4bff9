//! The gateway document as the operator writes it (TOML file, or JSON through the API).
//! Field names follow Kowabunga's Kawaii resources. Values stay as written; [`crate::validate`]
//! checks them all and reports every mistake with its field path.

use crate::error::FieldError;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The whole desired state of one project's gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    #[serde(default)]
    pub gateway: GatewaySettings,
    #[serde(default, skip_serializing_if = "ApiSettings::is_default")]
    pub api: ApiSettings,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<Zone>,
    /// `[ingress]`: flood protections of the public side (SYN proxy, conntrack guard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSettings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_rules: Vec<IngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_rules: Vec<EgressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat_rules: Vec<NatRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpc_peerings: Vec<VpcPeering>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipsec: Vec<Ipsec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WireGuard>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipes: Vec<Pipe>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterSettings>,
    /// Multi-zone HA (VRRPv3) settings; see docs/ha.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaSettings>,
    /// How long the audit trail is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSettings>,
    /// Kept by the server: the highest rule id given so far per kind (`ingress`, `egress`,
    /// `nat`), so that a deleted rule's id is never given to another rule. A document sent
    /// without it keeps the stored one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rule_ids: std::collections::BTreeMap<String, u64>,
}

/// `[store]`: the audit trail's retention. Older entries, and all but the newest
/// `audit_max_entries`, are pruned (at start and hourly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Default `90d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_retention: Option<String>,
    /// Default 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_max_entries: Option<u64>,
}

/// `[router]`: the domain router's listeners, limits and timeouts (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    /// Address the listeners bind; default the zone's public VIP (all addresses without zones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// TLS (SNI) listener port, default 443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_port: Option<u32>,
    /// Plain HTTP (Host) listener port, default 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_source: Option<u32>,
    /// Upstream load balancers whose PROXY header is required and believed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// ClientHello / request head deadline, default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// No byte either way for this long closes a connection (not a lifetime cap), default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub access_log: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    #[serde(default = "default_name")]
    pub name: String,
    /// The project's private subnet (CIDR), e.g. `10.1.0.0/24`. Absent on an edge node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_subnet: Option<String>,
    /// The project's routed IPv6 prefix, e.g. `2001:db8:1::/64` (no NAT66: private hosts leave
    /// with their own addresses). Router advertisements announce it on the private side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_subnet6: Option<String>,
    /// With `private_subnet6`: the router advertisements let private hosts configure their
    /// own addresses in it (SLAAC; the prefix must then be a /64).
    #[serde(default, skip_serializing_if = "is_false")]
    pub slaac: bool,
    /// `accept` or `drop`; `egress_rules` are the exceptions to it.
    #[serde(default = "default_accept")]
    pub egress_policy: String,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            name: default_name(),
            private_subnet: None,
            private_subnet6: None,
            slaac: false,
            egress_policy: default_accept(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Where the REST API listens; default `127.0.0.1:7780`.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<ApiToken>,
    /// A file with more tokens, one `name role sha256hex` per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// How long the data plane may stay behind the desired state (a driver failing, one
    /// reconcile pass running) before `/readyz` answers 503; default "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<String>,
    /// PEM certificate chain; with `tls_key_file` the API serves HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    /// PEM private key of `tls_cert_file` (refused unless only its owner may read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    /// PEM CA certificates: clients must present a certificate one of them signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<String>,
    /// Serve plain HTTP on an address other than loopback (e.g. behind a TLS proxy).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_plain_http: bool,
    /// `/metrics` requires a bearer token (any role).
    #[serde(default, skip_serializing_if = "is_false")]
    pub metrics_auth: bool,
    /// Open connections at once, default 256; more are closed at accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Request body limit in bytes, default 1 MiB (413 beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u32>,
    /// Request head limit in bytes, default 16 KiB (431 beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<u32>,
    /// Requests per second per token, default 100, bursts of twice that (429 beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Deadline for a request head (and the TLS handshake), default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<String>,
    /// No byte either way for this long closes a connection, default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: default_listen(),
            tokens: Vec::new(),
            token_file: None,
            ready_timeout: None,
            tls_cert_file: None,
            tls_key_file: None,
            client_ca_file: None,
            allow_plain_http: false,
            metrics_auth: false,
            max_connections: None,
            max_body_bytes: None,
            max_header_bytes: None,
            rate_limit: None,
            header_timeout: None,
            idle_timeout: None,
        }
    }
}

impl ApiSettings {
    fn is_default(&self) -> bool {
        *self == ApiSettings::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Hex SHA-256 of the bearer token (never the token itself).
    pub sha256: Secret,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    pub public_interface: String,
    pub private_interface: String,
    /// This zone's public VIP with its prefix, e.g. `203.0.113.10/24`.
    pub public_vip: String,
    /// The upstream next hop.
    pub public_gateway: String,
    /// This zone's private gateway VIP (its prefix comes from `private_subnet`).
    pub private_vip: String,
    /// HA: this zone's instance's own fixed address on `public_interface` (configured by the
    /// host, never by kawaii).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
    /// HA: this zone's instance's own fixed address on `private_interface` (configured by the
    /// host): the source of its VRRP adverts. Required when there are several zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_address: Option<String>,
    /// HA: the VRID of this zone's virtual router (default 51 + the zone's index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrid: Option<u32>,
    /// HA: the private instances that use this zone's private VIP as their gateway (a CIDR in
    /// `private_subnet`); whoever holds the zone's VIPs SNATs them to this zone's public VIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_hosts: Option<String>,
    /// This zone's public IPv6 VIP with its prefix, e.g. `2001:db8:ff::10/64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_vip6: Option<String>,
    /// The IPv6 upstream next hop (global or link-local); required with `public_vip6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_gateway6: Option<String>,
    /// This zone's global IPv6 gateway address in `private_subnet6` (its prefix comes from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_vip6: Option<String>,
    /// The virtual router's link-local address on the private side (RFC 5798 §5.2.9: its
    /// first IPv6 address): the source of router advertisements. Default `fe80::1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_local_vip6: Option<String>,
    /// HA: this zone's instance's own fixed IPv6 address on `public_interface` (host-configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address6: Option<String>,
    /// HA: this zone's instance's own fixed IPv6 address on `private_interface` (host-configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_address6: Option<String>,
}

/// `[ha]`: VRRPv3 timing and transport, shared by every zone's virtual router.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaSettings {
    /// Advertisement interval in centiseconds, 1..=4095 (default 5: failover in about 0.2 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advert_interval_cs: Option<u32>,
    /// Whether the home zone takes its VIPs back after recovering (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempt: Option<bool>,
    /// How long after entering Backup preemption waits (default "0s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempt_delay: Option<String>,
    /// Send adverts to the sibling instances' private addresses instead of 224.0.0.18.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unicast: bool,
    /// Connection-state sync between the zones' instances (conntrackd), so established flows
    /// survive a zone loss (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_sync: Option<bool>,
    /// The interface the connection-state sync runs on (default: the private interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interface: Option<String>,
}

/// An opening on the public VIPs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressRule {
    /// Stable id, assigned when created (`ingress-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Who may connect: an IPv4 or an IPv6 network; absent: everyone, over both families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default = "default_tcp")]
    pub protocol: String,
    pub ports: String,
    /// New connections per source address, `200/s` or `3000/m`; over it is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// With `rate_limit`: how many new connections a source may open at once above the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Concurrent connections per source address; new ones over it are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `[ingress]`: how the public side holds up under a flood (docs/firewall.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressSettings {
    /// TCP openings, port forwards and router listeners go through the nftables SYN proxy
    /// (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synproxy: Option<bool>,
    /// This zone's connection-tracking table size (`net.netfilter.nf_conntrack_max`); default:
    /// the kernel's, left as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_max: Option<u32>,
    /// The percentage of the table that flows opened from the public side may hold (default
    /// 75); past it new public flows are dropped while private egress keeps the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_conntrack_percent: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where to: an IPv4 or an IPv6 network; absent: everywhere, over both families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default = "default_tcp")]
    pub protocol: String,
    pub ports: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Port forwarding from the public VIP to a private host (DNAT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NatRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The private host's address: IPv4 (DNAT from the public VIP) or IPv6 in
    /// `private_subnet6` (routed: the host's own address is opened, no DNAT).
    pub destination: String,
    #[serde(default = "default_tcp")]
    pub protocol: String,
    pub ports: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A rule inside a peering or an IPsec connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default = "default_tcp")]
    pub protocol: String,
    pub ports: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcPeering {
    pub name: String,
    /// The other project's subnet.
    pub subnet: String,
    /// The other project's gateway on the shared backbone.
    pub via: String,
    /// Dual stack: the other project's IPv6 subnet, routed as it is (no NAT66). With `via6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// Dual stack: the other project's gateway on the IPv6 backbone (the hellos go there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via6: Option<String>,
    /// `accept` or `drop` (default); the rules are the exceptions.
    #[serde(default = "default_drop")]
    pub policy: String,
    /// `mutual` (default: the other side is a kawaii gateway that must declare the mirror) or `none`.
    #[serde(default = "default_mutual")]
    pub consent: String,
    /// With `mutual`: the secret both gateways share to authenticate their consent hellos
    /// (16+ characters; agreeing on it out of band is the consent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_rules: Vec<PeerRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_rules: Vec<PeerRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Overlapping subnets: how our private subnet appears to this peer (same length; our hosts
    /// are mapped 1:1 into it). `subnet` is then the other side's alias as we see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ipsec {
    /// Any UTF-8 name, spaces included.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "desc")]
    pub description: Option<String>,
    /// The office's gateway, IPv4 or IPv6 (then the tunnel ends on the zone's `public_vip6`).
    pub remote_peer: String,
    /// The office's subnets, one per family: `172.16.1.0/24`, `2001:db8:a1::/64`, or both
    /// separated by a comma (one tunnel carrying both).
    pub remote_subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_shared_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_shared_key_file: Option<String>,
    pub phase1_dh_group_number: u32,
    pub phase1_integrity_algorithm: String,
    pub phase1_encryption_algorithm: String,
    pub phase2_dh_group_number: u32,
    pub phase2_integrity_algorithm: String,
    pub phase2_encryption_algorithm: String,
    #[serde(default = "default_dpd_timeout")]
    pub dpd_timeout: String,
    #[serde(default = "default_dpd_action")]
    pub dpd_action: String,
    #[serde(default = "default_start_action")]
    pub start_action: String,
    /// CHILD SA rekey interval; shorter than `phase2_lifetime`.
    #[serde(default = "default_rekey")]
    pub rekey: String,
    #[serde(default = "default_phase1_lifetime")]
    pub phase1_lifetime: String,
    #[serde(default = "default_phase2_lifetime")]
    pub phase2_lifetime: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_rules: Vec<PeerRule>,
    /// The zone whose public VIP terminates the tunnel (default: the first zone); with HA the
    /// instance holding that zone's VIPs runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Overlapping subnets: how our private subnet appears to the office (the traffic
    /// selector; same length as the private subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_alias: Option<String>,
    /// Overlapping subnets: how `remote_subnet` appears to our hosts (same length); translated
    /// 1:1 to the office's real addresses inside the tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WireGuard {
    #[serde(default = "default_wg_interface")]
    pub interface: String,
    #[serde(default = "default_wg_port")]
    pub listen_port: u32,
    /// The VPN subnet with the gateway's address in it, e.g. `10.8.0.1/24`.
    pub address: String,
    /// The VPN's IPv6 subnet with the gateway's address in it, e.g. `fd00:8::1/64` (optional;
    /// routed, no NAT66).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<WgPeer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WgPeer {
    pub name: String,
    pub public_key: String,
    /// Addresses routed to this peer; empty: one is allocated from the VPN subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<String>,
    /// The peer's VPN address when `allowed_ips` is empty: allocated by kawaii from the VPN
    /// subnet when the peer is first committed and kept for the peer's life (a value given
    /// here is honoured if it is free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The same for IPv6, from `wireguard.address6`'s subnet (when it is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preshared_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Full tunnel: the peer's Internet traffic is masqueraded like the private subnet's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_internet: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_rules: Vec<PeerRule>,
}

/// A named TCP forward through the tunnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipe {
    pub name: String,
    pub port: u32,
    /// `host:port` to dial where the pipe ends.
    pub remote: String,
    /// The node where `remote` resolves; absent: this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Narrows the listener to one address (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// L4 domain route (TLS passthrough by SNI, plain HTTP by Host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `example.com`, `*.example.com`, or `*` for the default route.
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub https: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<String>,
    /// `round_robin` (default) or `least_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// `v1` or `v2`: send a PROXY header to the backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<String>,
    /// Active health checks: `tcp` (connect) or `http` (GET /). Default: none (passive only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
}

fn default_name() -> String {
    "kawaii".into()
}
fn default_accept() -> String {
    "accept".into()
}
fn default_drop() -> String {
    "drop".into()
}
fn default_mutual() -> String {
    "mutual".into()
}
fn default_listen() -> String {
    "127.0.0.1:7780".into()
}
fn default_tcp() -> String {
    "tcp".into()
}
fn default_dpd_timeout() -> String {
    "240s".into()
}
fn default_dpd_action() -> String {
    "restart".into()
}
fn default_start_action() -> String {
    "start".into()
}
fn default_rekey() -> String {
    "1h".into()
}
fn default_phase1_lifetime() -> String {
    "4h".into()
}
fn default_phase2_lifetime() -> String {
    "1h30m".into()
}
fn default_wg_interface() -> String {
    "kawaii-wg0".into()
}
fn default_wg_port() -> u32 {
    51820
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// Formats the document can arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Gateway {
    /// Parses a native document. Type errors name their path; value errors are left to
    /// [`crate::validate`], which reports all of them at once.
    pub fn parse(text: &str, format: Format) -> Result<Gateway, crate::ModelError> {
        use crate::{Invalid, ModelError};
        let parsed = crate::parse::parse(text, format).map_err(ModelError::Syntax)?;
        match Self::mended(parsed) {
            (Some(g), errors) if errors.is_empty() => Ok(g),
            (_, errors) => Err(ModelError::Invalid(Invalid(errors))),
        }
    }

    /// Like [`Gateway::parse`], but also hands back the document as far as it could be read
    /// (the broken parts left out) beside every error, so that `check` can look at the files
    /// and the machine it names even when it has mistakes. None: nothing could be read.
    pub fn parse_partial(text: &str, format: Format) -> (Option<Gateway>, Vec<FieldError>) {
        match crate::parse::parse(text, format) {
            Ok(parsed) => Self::mended(parsed),
            Err(e) => (None, vec![e]),
        }
    }

    fn mended(parsed: crate::parse::Parsed) -> (Option<Gateway>, Vec<FieldError>) {
        use crate::Invalid;
        if parsed.errors.is_empty() {
            return (Some(parsed.gateway), Vec::new());
        }
        // Every mistake at once: the value errors of the rest of the document too, except
        // under a field that was already reported as broken (it was left out or stood in for).
        let mut all = parsed.errors;
        if parsed.complete
            && let Err(Invalid(more)) = crate::validate(&parsed.gateway)
        {
            let broken: Vec<String> = all.iter().map(|e| e.path.clone()).collect();
            let under = |p: &str, b: &str| {
                p == b || p.strip_prefix(b).is_some_and(|r| r.starts_with(['.', '[']))
            };
            all.extend(
                more.into_iter()
                    .filter(|e| !broken.iter().any(|b| under(&e.path, b))),
            );
        }
        (parsed.complete.then_some(parsed.gateway), all)
    }

    /// The document as TOML, secrets redacted (a valid config file: sending it back keeps them).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render as TOML: {e}\n"))
    }

    /// Keeps stored secrets where `self` carries the redaction marker (a GET sent back).
    pub fn carry_secrets_from(&mut self, old: &Gateway) {
        fn keep(new: &mut Option<Secret>, old: Option<&Secret>) {
            if new.as_ref().is_some_and(Secret::is_placeholder) {
                *new = old.cloned();
            }
        }
        for v in &mut self.vpc_peerings {
            let prev = old.vpc_peerings.iter().find(|o| o.name == v.name);
            keep(
                &mut v.consent_key,
                prev.and_then(|o| o.consent_key.as_ref()),
            );
        }
        for c in &mut self.ipsec {
            let prev = old.ipsec.iter().find(|o| o.name == c.name);
            keep(
                &mut c.pre_shared_key,
                prev.and_then(|o| o.pre_shared_key.as_ref()),
            );
        }
        if let Some(wg) = &mut self.wireguard {
            let old_wg = old.wireguard.as_ref();
            keep(
                &mut wg.private_key,
                old_wg.and_then(|o| o.private_key.as_ref()),
            );
            for p in &mut wg.peers {
                let prev = old_wg.and_then(|o| o.peers.iter().find(|op| op.name == p.name));
                keep(
                    &mut p.preshared_key,
                    prev.and_then(|o| o.preshared_key.as_ref()),
                );
            }
        }
        for t in &mut self.api.tokens {
            if t.sha256.is_placeholder()
                && let Some(o) = old.api.tokens.iter().find(|o| o.name == t.name)
            {
                t.sha256 = o.sha256.clone();
            }
        }
    }

    /// Everything the server fills in before a commit, given the stored document `old`:
    /// secrets kept where redacted, rule ids, VPN addresses.
    pub fn prepare_commit(&mut self, old: &Gateway) {
        self.carry_secrets_from(old);
        self.assign_rule_ids(old);
        self.assign_vpn_addresses(old);
    }

    /// Gives every WireGuard peer without `allowed_ips` an address from the VPN subnet: the
    /// one it asked for or had before if still free, else the lowest free one. Peers with
    /// `allowed_ips` carry none. Unparsable values are left for validation to report.
    pub fn assign_vpn_addresses(&mut self, old: &Gateway) {
        use ipnet::Ipv4Net;
        use std::net::Ipv4Addr;
        let Some(wg) = &mut self.wireguard else {
            return;
        };
        let Ok(gw) = wg.address.trim().parse::<Ipv4Net>() else {
            return;
        };
        let subnet = gw.trunc();
        let parse = |s: &str| -> Option<Ipv4Addr> {
            let s = s.trim();
            s.strip_suffix("/32").unwrap_or(s).parse().ok()
        };
        // Explicit allowed IPs of every peer are taken first.
        let mut taken: Vec<Ipv4Net> = wg
            .peers
            .iter()
            .flat_map(|p| p.allowed_ips.iter())
            .filter_map(|s| crate::valid::cidr(s).ok())
            .collect();
        taken.push(Ipv4Net::from(gw.addr()));
        let free = |ip: Ipv4Addr, taken: &[Ipv4Net]| {
            subnet.contains(&ip)
                && ip != subnet.network()
                && ip != subnet.broadcast()
                && !taken.iter().any(|n| n.contains(&ip))
        };
        let old_peers = old.wireguard.as_ref().map(|w| w.peers.as_slice());
        let mut pending = Vec::new();
        for (i, p) in wg.peers.iter_mut().enumerate() {
            if !p.allowed_ips.is_empty() {
                p.address = None;
                continue;
            }
            let before = old_peers
                .and_then(|o| o.iter().find(|o| o.name == p.name))
                .and_then(|o| o.address.as_deref())
                .and_then(parse);
            let want = p.address.as_deref().and_then(parse).or(before);
            match want.filter(|ip| free(*ip, &taken)) {
                Some(ip) => {
                    taken.push(Ipv4Net::from(ip));
                    p.address = Some(ip.to_string());
                }
                None if p.address.as_deref().is_some_and(|a| parse(a).is_none()) => {}
                None => pending.push(i),
            }
        }
        for i in pending {
            let next = crate::valid::free_addresses4(subnet, &taken).next();
            if let Some(ip) = next {
                taken.push(Ipv4Net::from(ip));
            }
            wg.peers[i].address = next.map(|ip| ip.to_string());
        }
        crate::vpn6::assign(wg, old.wireguard.as_ref());
    }

    /// Gives every rule without an id one: the id of an identical rule in `old` if there is one,
    /// else the next free `<kind>-N`. Ids are what metrics and the API use to name rules.
    pub fn assign_rule_ids(&mut self, old: &Gateway) {
        for (kind, n) in &old.rule_ids {
            let mine = self.rule_ids.entry(kind.clone()).or_default();
            *mine = (*mine).max(*n);
        }
        let ids = &mut self.rule_ids;
        assign(&mut self.ingress_rules, &old.ingress_rules, "ingress", ids);
        assign(&mut self.egress_rules, &old.egress_rules, "egress", ids);
        assign(&mut self.nat_rules, &old.nat_rules, "nat", ids);
    }
}

/// Rules that carry an optional stable id.
pub trait HasId: Clone + PartialEq {
    fn id(&self) -> Option<&str>;
    fn set_id(&mut self, id: Option<String>);
}

macro_rules! has_id {
    ($($t:ty),*) => {$(
        impl HasId for $t {
            fn id(&self) -> Option<&str> { self.id.as_deref() }
            fn set_id(&mut self, id: Option<String>) { self.id = id; }
        }
    )*};
}
has_id!(IngressRule, EgressRule, NatRule);

/// Gives every rule without an id the id of an identical old rule, or the next number never
/// given for `kind` (`high` keeps the highest per kind).
fn assign<T: HasId>(
    rules: &mut [T],
    old: &[T],
    kind: &str,
    high: &mut std::collections::BTreeMap<String, u64>,
) {
    let prefix = format!("{kind}-");
    let number = |id: &str| id.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok());
    let given = high.get(kind).copied().unwrap_or(0);
    let mut next = rules
        .iter()
        .chain(old)
        .filter_map(|r| r.id().and_then(number))
        .chain([given])
        .max()
        .unwrap_or(0)
        + 1;
    let mut taken: Vec<String> = rules
        .iter()
        .filter_map(|r| r.id().map(String::from))
        .collect();
    for r in rules.iter_mut().filter(|r| r.id().is_none()) {
        let same = old.iter().find(|o| {
            let mut anon = (*o).clone();
            anon.set_id(None);
            anon == *r && o.id().is_some_and(|id| !taken.iter().any(|t| t == id))
        });
        let id = match same.and_then(|o| o.id()) {
            Some(id) => id.to_string(),
            None => {
                let id = format!("{prefix}{next}");
                next += 1;
                id
            }
        };
        taken.push(id.clone());
        r.set_id(Some(id));
    }
    let highest = rules
        .iter()
        .filter_map(|r| r.id().and_then(number))
        .chain([given])
        .max()
        .unwrap_or(0);
    if highest > 0 {
        high.insert(kind.to_string(), highest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ports: &str) -> EgressRule {
        EgressRule {
            id: None,
            destination: None,
            protocol: "tcp".into(),
            ports: ports.into(),
            description: None,
        }
    }

    #[test]
    fn rule_ids_are_stable_across_reapply() {
        let mut first = Gateway {
            egress_rules: vec![rule("25"), rule("80")],
            ..Default::default()
        };
        first.assign_rule_ids(&Gateway::default());
        let ids: Vec<_> = first.egress_rules.iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            ids,
            [Some("egress-1".to_string()), Some("egress-2".to_string())]
        );
        // The file is applied again with a rule inserted in front: the old ones keep their ids.
        let mut second = Gateway {
            egress_rules: vec![rule("443"), rule("25"), rule("80")],
            ..Default::default()
        };
        second.assign_rule_ids(&first);
        let ids: Vec<_> = second
            .egress_rules
            .iter()
            .map(|r| r.id.clone().unwrap_or_default())
            .collect();
        assert_eq!(ids, ["egress-3", "egress-1", "egress-2"]);
    }

    #[test]
    fn a_deleted_rules_id_is_never_given_again() {
        let mut first = Gateway {
            ingress_rules: vec![ingress("22"), ingress("80"), ingress("443")],
            ..Default::default()
        };
        first.prepare_commit(&Gateway::default());
        // ingress-3 (443) is deleted: a file without it, and without the server's counters.
        let mut second = Gateway {
            ingress_rules: vec![ingress("22"), ingress("80")],
            ..Default::default()
        };
        second.prepare_commit(&first);
        assert_eq!(second.rule_ids.get("ingress"), Some(&3));
        // A new rule gets ingress-4, not the deleted rule's ingress-3.
        let mut third = Gateway {
            ingress_rules: vec![ingress("22"), ingress("80"), ingress("8080")],
            ..Default::default()
        };
        third.prepare_commit(&second);
        let ids: Vec<_> = third
            .ingress_rules
            .iter()
            .filter_map(|r| r.id.clone())
            .collect();
        assert_eq!(ids, ["ingress-1", "ingress-2", "ingress-4"]);
        // Re-applying the same file changes nothing (the stored counters are carried).
        let mut again = third.clone();
        again.rule_ids.clear();
        again.prepare_commit(&third);
        assert_eq!(again, third);
    }

    fn ingress(ports: &str) -> IngressRule {
        IngressRule {
            id: None,
            source: None,
            protocol: "tcp".into(),
            ports: ports.into(),
            description: None,
            rate_limit: None,
            burst: None,
            conn_limit: None,
        }
    }

    #[test]
    fn type_errors_name_their_path() {
        let err = Gateway::parse(
            "[wireguard]\naddress = \"10.8.0.1/24\"\nlisten_port = \"x\"\n",
            Format::Toml,
        )
        .expect_err("type error");
        assert_eq!(err.details()[0].path, "wireguard.listen_port");
        let err = Gateway::parse("[[zones]]\nnam = 1\n", Format::Toml).expect_err("unknown field");
        assert!(err.to_string().contains("nam"), "{err}");
    }

    #[test]
    fn placeholders_keep_stored_secrets() {
        let toml = r#"
[[ipsec]]
name = "ACME Office"
remote_peer = "198.51.100.8"
remote_subnet = "172.16.1.0/24"
pre_shared_key = "s3cret"
phase1_dh_group_number = 14
phase1_integrity_algorithm = "SHA512"
phase1_encryption_algorithm = "AES256"
phase2_dh_group_number = 14
phase2_integrity_algorithm = "SHA512"
phase2_encryption_algorithm = "AES256"
"#;
        let old = Gateway::parse(toml, Format::Toml).expect("valid");
        let exported = old.to_toml();
        assert!(!exported.contains("s3cret"), "{exported}");
        let mut back = Gateway::parse(&exported, Format::Toml).expect("round trip");
        back.carry_secrets_from(&old);
        assert_eq!(back, old);
    }

    fn vpn(peers: &[(&str, &[&str])]) -> Gateway {
        let mut text = String::from(
            "[wireguard]\naddress = \"10.8.0.1/29\"\nprivate_key = \"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\"\n",
        );
        for (i, (name, ips)) in peers.iter().enumerate() {
            let ips: Vec<String> = ips.iter().map(|s| format!("{s:?}")).collect();
            text.push_str(&format!(
                "[[wireguard.peers]]\nname = \"{name}\"\npublic_key = \"{}\"\nallowed_ips = [{}]\n",
                [
                    "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
                    "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=",
                    "gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=",
                    "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
                    "LtF2ym4PoGq4IZWV4RFAM9hbLWq+e5bn8AIxhWvyAkw=",
                    "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
                ][i],
                ips.join(", ")
            ));
        }
        Gateway::parse(&text, Format::Toml).expect("parses")
    }

    #[test]
    fn vpn_addresses_are_allocated_once_and_kept() {
        // 10.8.0.0/29: hosts .1-.6, .1 is the gateway.
        let mut first = vpn(&[("a", &[]), ("b", &["10.8.0.2/32"]), ("c", &[])]);
        first.prepare_commit(&Gateway::default());
        let addr = |g: &Gateway, n: usize| g.wireguard.as_ref().unwrap().peers[n].address.clone();
        assert_eq!(addr(&first, 0).as_deref(), Some("10.8.0.3"));
        assert_eq!(addr(&first, 1), None, "a peer with allowed_ips gets none");
        assert_eq!(addr(&first, 2).as_deref(), Some("10.8.0.4"));
        crate::validate(&first).expect("valid");
        // The file is applied again with a new peer in front: the old ones keep theirs.
        let mut second = vpn(&[("d", &[]), ("a", &[]), ("b", &["10.8.0.2/32"]), ("c", &[])]);
        second.prepare_commit(&first);
        assert_eq!(addr(&second, 0).as_deref(), Some("10.8.0.5"));
        assert_eq!(addr(&second, 1).as_deref(), Some("10.8.0.3"));
        assert_eq!(addr(&second, 3).as_deref(), Some("10.8.0.4"));
        // A peer that now declares allowed_ips overlapping an allocation moves the other away.
        let mut third = vpn(&[("d", &["10.8.0.5/32"]), ("a", &[]), ("e", &[])]);
        third.prepare_commit(&second);
        assert_eq!(addr(&third, 1).as_deref(), Some("10.8.0.3"));
        assert_eq!(addr(&third, 2).as_deref(), Some("10.8.0.2"));
        crate::validate(&third).expect("valid");
    }

    #[test]
    fn a_full_vpn_subnet_is_an_error_naming_the_peer() {
        let mut g = vpn(&[
            ("a", &[]),
            ("b", &[]),
            ("c", &[]),
            ("d", &[]),
            ("e", &[]),
            ("f", &[]),
        ]);
        let before = crate::validate(&g).expect_err("six peers, five free addresses");
        assert_eq!(before.0.len(), 1, "{before}");
        assert_eq!(before.0[0].path, "wireguard.peers[5]");
        g.prepare_commit(&Gateway::default());
        let after = crate::validate(&g).expect_err("still full");
        assert_eq!(after.0[0].path, "wireguard.peers[5]");
    }
}
