//! Validation: the operator's document in, the typed desired state out, or every error at once,
//! each with its field path (`ipsec[0].phase1_dh_group_number`) and a reason.

use crate::duration;
use crate::error::{Errors, FieldError, Invalid};
use crate::ports::PortSet;
use crate::secret::Secret;
use crate::spec::*;
use base64::Engine;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    Aes128,
    Aes256,
    Camellia128,
    Camellia256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdAction {
    Clear,
    Trap,
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    None,
    Trap,
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Mutual,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

/// Accepted DH groups (IANA numbers).
pub const DH_GROUPS: &[u32] = &[2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24];

/// A filter rule: who, what protocol, which ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// Source (ingress) or destination (egress) network.
    pub net: Ipv4Net,
    pub protocol: Protocol,
    pub ports: PortSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatForward {
    pub id: String,
    pub destination: Ipv4Addr,
    pub protocol: Protocol,
    pub ports: PortSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    pub name: String,
    pub public_interface: String,
    pub private_interface: String,
    pub public_vip: Ipv4Net,
    pub public_gateway: Ipv4Addr,
    pub private_vip: Ipv4Net,
    /// HA: the instance's own fixed addresses (host-configured).
    pub public_address: Option<Ipv4Addr>,
    pub private_address: Option<Ipv4Addr>,
    /// HA: this zone's VRID.
    pub vrid: u8,
    /// HA: the private instances whose gateway is this zone's private VIP.
    pub private_hosts: Option<Ipv4Net>,
}

/// Multi-zone HA, typed. Present when the config has several zones or an `[ha]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSpec {
    pub advert_interval_cs: u16,
    pub preempt: bool,
    pub preempt_delay: std::time::Duration,
    pub unicast: bool,
    /// Connection-state sync (conntrackd) between the zones' instances.
    pub conntrack_sync: bool,
    /// Where the sync runs (None: each instance's private interface).
    pub sync_interface: Option<String>,
}

/// Default VRRP advert interval: 5 cs, so a backup takes over ~0.18 s after the last advert.
pub const DEFAULT_ADVERT_INTERVAL_CS: u16 = 5;
/// Default VRID of zone `i` is `DEFAULT_VRID_BASE + i`.
pub const DEFAULT_VRID_BASE: u32 = 51;

/// A rule inside a peering or an IPsec connection, typed. `net` is the far side's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRuleSpec {
    pub source: Option<Ipv4Net>,
    pub destination: Option<Ipv4Net>,
    pub protocol: Protocol,
    pub ports: PortSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringSpec {
    pub name: String,
    pub subnet: Ipv4Net,
    pub via: Ipv4Addr,
    pub policy: Policy,
    pub consent: Consent,
    /// The hello key (present exactly when consent is mutual).
    pub consent_key: Option<Secret>,
    pub ingress_rules: Vec<PeerRuleSpec>,
    pub egress_rules: Vec<PeerRuleSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub dh_group: u32,
    pub integrity: Integrity,
    pub encryption: Encryption,
    pub lifetime: Duration,
}

/// Where an IPsec PSK comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PskSource {
    Inline(Secret),
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecSpec {
    pub name: String,
    pub remote_peer: Ipv4Addr,
    pub remote_subnet: Ipv4Net,
    pub psk: PskSource,
    pub phase1: Phase,
    pub phase2: Phase,
    pub dpd_timeout: Duration,
    pub dpd_action: DpdAction,
    pub start_action: StartAction,
    pub rekey: Duration,
    pub ingress_rules: Vec<PeerRuleSpec>,
    /// The zone whose public VIP terminates the tunnel; None: the first zone.
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerSpec {
    pub name: String,
    pub public_key: [u8; 32],
    /// As written; empty means "allocate one from the VPN subnet".
    pub allowed_ips: Vec<Ipv4Net>,
    /// The allocated VPN address (only when `allowed_ips` is empty); None: not allocated yet
    /// (a document before its first commit).
    pub address: Option<Ipv4Addr>,
    pub preshared_key: Option<Secret>,
    pub persistent_keepalive: Option<u16>,
    pub endpoint: Option<String>,
    pub allow_internet: bool,
    pub ingress_rules: Vec<PeerRuleSpec>,
}

impl WgPeerSpec {
    /// The one address a pipe dials on this peer: its allocated address, else its first /32
    /// inside the VPN `subnet`, else its first /32.
    pub fn vpn_address(&self, subnet: Ipv4Net) -> Option<Ipv4Addr> {
        let hosts = || self.allowed_ips.iter().filter(|n| n.prefix_len() == 32);
        self.address
            .or_else(|| hosts().find(|n| subnet.contains(*n)).map(Ipv4Net::addr))
            .or_else(|| hosts().next().map(Ipv4Net::addr))
    }

    /// What is routed to this peer: its allowed IPs, or its allocated address as a /32.
    pub fn routed(&self) -> Vec<Ipv4Net> {
        if self.allowed_ips.is_empty() {
            self.address.map(Ipv4Net::from).into_iter().collect()
        } else {
            self.allowed_ips.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Inline(Secret),
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireGuardSpec {
    pub interface: String,
    pub listen_port: u16,
    /// The gateway's own address inside the VPN subnet, with the subnet's prefix.
    pub address: Ipv4Net,
    pub private_key: Option<KeySource>,
    pub peers: Vec<WgPeerSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeSpec {
    pub name: String,
    pub port: u16,
    pub remote_host: String,
    pub remote_port: u16,
    pub peer: Option<String>,
    pub listen: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Lowercase; `*.example.com` for a wildcard, `*` for the default route.
    pub domain: String,
    pub https: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub balance: Balance,
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `tcp` or `http` active checks.
    pub health_check: Option<HealthCheck>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheck {
    Tcp,
    Http,
}

/// The domain router's settings, typed, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSpec {
    pub listen: Option<std::net::IpAddr>,
    pub https_port: u16,
    pub http_port: u16,
    pub max_connections: Option<u32>,
    pub max_connections_per_source: Option<u32>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub header_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub access_log: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSpec {
    pub listen: SocketAddr,
    pub tokens: Vec<TokenSpec>,
    pub token_file: Option<String>,
}

/// The typed desired state: what the planner consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub private_subnet: Option<Ipv4Net>,
    pub egress_policy: Policy,
    pub api: ApiSpec,
    pub zones: Vec<ZoneSpec>,
    pub ingress_rules: Vec<Rule>,
    pub egress_rules: Vec<Rule>,
    pub nat_rules: Vec<NatForward>,
    pub vpc_peerings: Vec<PeeringSpec>,
    pub ipsec: Vec<IpsecSpec>,
    pub wireguard: Option<WireGuardSpec>,
    pub pipes: Vec<PipeSpec>,
    pub routes: Vec<RouteSpec>,
    pub router: RouterSpec,
    /// None: no VRRP (one zone, no `[ha]`): the zone's VIPs are always held.
    pub ha: Option<HaSpec>,
}

/// A valid document's typed form and the warnings it earned.
#[derive(Debug, Clone)]
pub struct Report {
    pub desired: Desired,
    pub warnings: Vec<FieldError>,
}

/// Checks every field of `g`; returns the typed state or all errors at once.
pub fn validate(g: &Gateway) -> Result<Report, Invalid> {
    let mut e = Errors::default();
    let desired = check_gateway(g, &mut e);
    match desired {
        Some(desired) if e.list.is_empty() => Ok(Report {
            desired,
            warnings: e.warnings,
        }),
        _ => {
            if e.list.is_empty() {
                e.push("(document)", "is invalid");
            }
            Err(Invalid(e.list))
        }
    }
}

fn check_gateway(g: &Gateway, e: &mut Errors) -> Option<Desired> {
    if g.gateway.name.trim().is_empty() {
        e.push("gateway.name", "must not be empty");
    }
    let private_subnet = g
        .gateway
        .private_subnet
        .as_deref()
        .and_then(|s| e.check("gateway.private_subnet", cidr(s)));
    let egress_policy = e.check("gateway.egress_policy", policy(&g.gateway.egress_policy));
    let api = check_api(&g.api, e);

    let mut zones = Vec::new();
    unique(e, "zones", g.zones.iter().map(|z| z.name.as_str()), "name");
    for (i, z) in g.zones.iter().enumerate() {
        let p = format!("zones[{i}]");
        if let Some(z) = check_zone(z, i, &p, private_subnet, e) {
            zones.push(z);
        }
    }
    let ha = check_ha(g, &zones, e);
    if private_subnet.is_none() && !g.zones.is_empty() && g.gateway.private_subnet.is_none() {
        e.push(
            "gateway.private_subnet",
            "is required when zones are declared",
        );
    }

    let ingress_rules = rules(
        e,
        "ingress_rules",
        g.ingress_rules.iter().map(|r| {
            (
                r.id.as_deref(),
                r.source.as_str(),
                r.protocol.as_str(),
                r.ports.as_str(),
                "source",
            )
        }),
    );
    let egress_rules = rules(
        e,
        "egress_rules",
        g.egress_rules.iter().map(|r| {
            (
                r.id.as_deref(),
                r.destination.as_str(),
                r.protocol.as_str(),
                r.ports.as_str(),
                "destination",
            )
        }),
    );

    let mut nat_rules = Vec::new();
    for (i, r) in g.nat_rules.iter().enumerate() {
        let p = format!("nat_rules[{i}]");
        let dest = e.check(format!("{p}.destination"), ipv4(&r.destination));
        if let (Some(d), Some(net)) = (dest, private_subnet)
            && !net.contains(&d)
        {
            e.push(
                format!("{p}.destination"),
                format!("{d} is not in the private subnet {net}"),
            );
        }
        let proto = e.check(format!("{p}.protocol"), protocol(&r.protocol));
        let ports = e.check(format!("{p}.ports"), PortSet::parse(&r.ports));
        if let (Some(destination), Some(protocol), Some(ports)) = (dest, proto, ports) {
            nat_rules.push(NatForward {
                id: r.id.clone().unwrap_or_else(|| format!("nat-{}", i + 1)),
                destination,
                protocol,
                ports,
            });
        }
    }
    // A forwarded port nobody may reach is almost always a mistake.
    for (i, n) in nat_rules.iter().enumerate() {
        let opened = ingress_rules
            .iter()
            .any(|r| r.protocol == n.protocol && n.ports.intersects(&r.ports));
        if !opened {
            e.warn(
                format!("nat_rules[{i}]"),
                format!(
                    "{} {} is forwarded but no ingress rule opens it, so it is unreachable",
                    n.protocol.as_str(),
                    n.ports
                ),
            );
        }
    }
    // Two forwards of the same port would race.
    for (i, a) in nat_rules.iter().enumerate() {
        for b in &nat_rules[..i] {
            if a.protocol == b.protocol && a.ports.intersects(&b.ports) {
                e.push(
                    format!("nat_rules[{i}].ports"),
                    format!(
                        "{} {} is already forwarded by rule {}",
                        a.protocol.as_str(),
                        a.ports,
                        b.id
                    ),
                );
            }
        }
    }

    let mut vpc_peerings = Vec::new();
    unique(
        e,
        "vpc_peerings",
        g.vpc_peerings.iter().map(|v| v.name.as_str()),
        "name",
    );
    for (i, v) in g.vpc_peerings.iter().enumerate() {
        let p = format!("vpc_peerings[{i}]");
        if let Some(v) = check_peering(v, &p, e) {
            vpc_peerings.push(v);
        }
    }

    let mut ipsec = Vec::new();
    unique(e, "ipsec", g.ipsec.iter().map(|c| c.name.as_str()), "name");
    for (i, c) in g.ipsec.iter().enumerate() {
        let p = format!("ipsec[{i}]");
        if let Some(z) = &c.zone
            && !zones.iter().any(|s: &ZoneSpec| &s.name == z)
        {
            e.push(format!("{p}.zone"), format!("{z:?} is not a declared zone"));
        }
        if let Some(c) = check_ipsec(c, &p, e) {
            ipsec.push(c);
        }
    }

    let wireguard = g
        .wireguard
        .as_ref()
        .and_then(|w| check_wireguard(w, g.zones.is_empty(), e));

    // Subnets reachable through the gateway must not overlap each other.
    let mut nets: Vec<(String, Ipv4Net)> = Vec::new();
    if let Some(n) = private_subnet {
        nets.push(("gateway.private_subnet".into(), n));
    }
    if let Some(w) = &wireguard {
        nets.push(("wireguard.address".into(), w.address.trunc()));
    }
    for (i, v) in vpc_peerings.iter().enumerate() {
        nets.push((format!("vpc_peerings[{i}].subnet"), v.subnet));
    }
    for (i, c) in ipsec.iter().enumerate() {
        nets.push((format!("ipsec[{i}].remote_subnet"), c.remote_subnet));
    }
    for (i, (pa, a)) in nets.iter().enumerate() {
        for (pb, b) in &nets[..i] {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                e.push(pa.clone(), format!("{a} overlaps {b} ({pb})"));
            }
        }
    }

    let mut pipes = Vec::new();
    let mut peer_names: HashSet<&str> = HashSet::new();
    if let Some(w) = &g.wireguard {
        peer_names.extend(w.peers.iter().map(|p| p.name.as_str()));
    }
    unique(e, "pipes", g.pipes.iter().map(|p| p.name.as_str()), "name");
    let mut pipe_ports: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, pipe) in g.pipes.iter().enumerate() {
        let p = format!("pipes[{i}]");
        if let Some(first) = pipe_ports.insert(pipe.port, i) {
            e.push(
                format!("{p}.port"),
                format!("port {} is already used by pipes[{first}]", pipe.port),
            );
        }
        if let Some(s) = check_pipe(pipe, &p, &g.gateway.name, &peer_names, e) {
            pipes.push(s);
        }
    }
    // A pipe through a peer dials that peer's one VPN address.
    if let Some(w) = &wireguard {
        for (i, pipe) in pipes.iter().enumerate() {
            let Some(peer) = pipe.peer.as_deref().filter(|p| *p != g.gateway.name) else {
                continue;
            };
            if let Some(spec) = w.peers.iter().find(|p| p.name == peer)
                && !spec.allowed_ips.is_empty()
                && spec.vpn_address(w.address.trunc()).is_none()
            {
                e.push(
                    format!("pipes[{i}].peer"),
                    format!(
                        "peer {peer:?} has no single VPN address to dial: give it an allowed IP /32"
                    ),
                );
            }
        }
    }

    let mut routes = Vec::new();
    unique(
        e,
        "routes",
        g.routes.iter().map(|r| r.domain.as_str()),
        "domain",
    );
    for (i, r) in g.routes.iter().enumerate() {
        if let Some(r) = check_route(r, &format!("routes[{i}]"), e) {
            routes.push(r);
        }
    }
    let router = check_router(g.router.as_ref().cloned().unwrap_or_default(), e);
    // The router's ports on the public VIP cannot also be forwarded.
    if let Some(router) = &router
        && !g.routes.is_empty()
    {
        for (i, n) in nat_rules.iter().enumerate() {
            for port in [router.https_port, router.http_port] {
                if n.protocol == Protocol::Tcp && n.ports.contains(port) {
                    e.push(
                        format!("nat_rules[{i}].ports"),
                        format!("tcp {port} is the domain router's listener (routes are declared); forward another port or move the router ([router] https_port/http_port)"),
                    );
                }
            }
        }
    }

    Some(Desired {
        name: g.gateway.name.clone(),
        private_subnet,
        egress_policy: egress_policy?,
        api: api?,
        zones,
        ingress_rules,
        egress_rules,
        nat_rules,
        vpc_peerings,
        ipsec,
        wireguard,
        pipes,
        routes,
        router: router?,
        ha,
    })
}

/// `[ha]` and the per-zone HA fields: VRRP runs when there are several zones or an `[ha]` section.
fn check_ha(g: &Gateway, zones: &[ZoneSpec], e: &mut Errors) -> Option<HaSpec> {
    if g.ha.is_none() && g.zones.len() <= 1 {
        return None;
    }
    let h = g.ha.clone().unwrap_or_default();
    let advert_interval_cs = match h.advert_interval_cs {
        None => DEFAULT_ADVERT_INTERVAL_CS,
        Some(c @ 1..=4095) => c as u16,
        Some(c) => {
            e.push(
                "ha.advert_interval_cs",
                format!("{c} is outside 1..=4095 (centiseconds)"),
            );
            DEFAULT_ADVERT_INTERVAL_CS
        }
    };
    let preempt_delay = match &h.preempt_delay {
        None => std::time::Duration::ZERO,
        Some(s) => e
            .check("ha.preempt_delay", crate::duration::parse(s))
            .unwrap_or_default(),
    };
    for (i, z) in g.zones.iter().enumerate() {
        if z.private_address.is_none() {
            e.push(
                format!("zones[{i}].private_address"),
                "is required with HA (several zones or [ha]): the instance's own address, the VRRP source",
            );
        }
    }
    let mut vrids = std::collections::BTreeMap::new();
    for (i, z) in zones.iter().enumerate() {
        if let Some(other) = vrids.insert(z.vrid, i) {
            e.push(
                format!("zones[{i}].vrid"),
                format!("{} is already zones[{other}]'s VRID", z.vrid),
            );
        }
    }
    for (i, a) in zones.iter().enumerate() {
        for b in &zones[..i] {
            if let (Some(x), Some(y)) = (a.private_hosts, b.private_hosts)
                && (x.contains(&y.network()) || y.contains(&x.network()))
            {
                e.push(
                    format!("zones[{i}].private_hosts"),
                    format!("{x} overlaps zone {}'s {y}", b.name),
                );
            }
        }
    }
    if let Some(i) = &h.sync_interface {
        e.check("ha.sync_interface", ifname(i));
    }
    Some(HaSpec {
        advert_interval_cs,
        preempt: h.preempt.unwrap_or(true),
        preempt_delay,
        unicast: h.unicast,
        conntrack_sync: h.conntrack_sync.unwrap_or(true),
        sync_interface: h.sync_interface.clone(),
    })
}

fn check_router(r: RouterSettings, e: &mut Errors) -> Option<RouterSpec> {
    let listen = match &r.listen {
        Some(l) => e.check(
            "router.listen",
            l.parse().map_err(|_| format!("{l:?} is not an IP address")),
        ),
        None => None,
    };
    let port = |e: &mut Errors, field: &str, v: Option<u32>, default: u16| {
        e.check(
            format!("router.{field}"),
            match v {
                None => Ok(default),
                Some(p) => u16::try_from(p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{p} is not a port (1-65535)")),
            },
        )
    };
    let https_port = port(e, "https_port", r.https_port, 443);
    let http_port = port(e, "http_port", r.http_port, 80);
    if https_port.is_some() && https_port == http_port {
        e.push("router.http_port", "must differ from https_port");
    }
    let mut trusted = Vec::new();
    for (i, t) in r.trusted_proxies.iter().enumerate() {
        let net = if t.contains('/') {
            t.parse::<ipnet::IpNet>().ok()
        } else {
            t.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)
        };
        match net {
            Some(n) => trusted.push(n),
            None => e.push(
                format!("router.trusted_proxies[{i}]"),
                format!("{t:?} is not an address or CIDR"),
            ),
        }
    }
    let dur = |e: &mut Errors, field: &str, v: &Option<String>, default: Duration| match v {
        None => Some(default),
        Some(s) => e.check(
            format!("router.{field}"),
            duration::parse(s).and_then(|d| {
                if d.is_zero() {
                    Err("must be longer than 0".into())
                } else {
                    Ok(d)
                }
            }),
        ),
    };
    let header_timeout = dur(
        e,
        "header_timeout",
        &r.header_timeout,
        Duration::from_secs(5),
    );
    let connect_timeout = dur(
        e,
        "connect_timeout",
        &r.connect_timeout,
        Duration::from_secs(3),
    );
    let idle_timeout = dur(e, "idle_timeout", &r.idle_timeout, Duration::from_secs(600));
    Some(RouterSpec {
        listen,
        https_port: https_port?,
        http_port: http_port?,
        max_connections: r.max_connections,
        max_connections_per_source: r.max_connections_per_source,
        trusted_proxies: trusted,
        header_timeout: header_timeout?,
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        access_log: r.access_log,
    })
}

fn check_api(a: &ApiSettings, e: &mut Errors) -> Option<ApiSpec> {
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

fn check_zone(
    z: &Zone,
    index: usize,
    p: &str,
    private: Option<Ipv4Net>,
    e: &mut Errors,
) -> Option<ZoneSpec> {
    if z.name.trim().is_empty() {
        e.push(format!("{p}.name"), "must not be empty");
    }
    for (field, v) in [
        ("public_interface", &z.public_interface),
        ("private_interface", &z.private_interface),
    ] {
        if let Err(reason) = ifname(v) {
            e.push(format!("{p}.{field}"), reason);
        }
    }
    let public_vip = e.check(format!("{p}.public_vip"), cidr_host(&z.public_vip));
    let public_gateway = e.check(format!("{p}.public_gateway"), ipv4(&z.public_gateway));
    if let (Some(vip), Some(gw)) = (public_vip, public_gateway)
        && !vip.contains(&gw)
    {
        e.warn(
            format!("{p}.public_gateway"),
            format!(
                "{gw} is outside {}; it must be reachable on-link",
                vip.trunc()
            ),
        );
    }
    let private_ip = e.check(format!("{p}.private_vip"), ipv4(&z.private_vip));
    let private_vip = match (private_ip, private) {
        (Some(ip), Some(net)) if net.contains(&ip) => Ipv4Net::new(ip, net.prefix_len()).ok(),
        (Some(ip), Some(net)) => {
            e.push(
                format!("{p}.private_vip"),
                format!("{ip} is not in the private subnet {net}"),
            );
            None
        }
        _ => None,
    };
    let public_address = z
        .public_address
        .as_deref()
        .and_then(|s| e.check(format!("{p}.public_address"), ipv4(s)));
    let private_address = z
        .private_address
        .as_deref()
        .and_then(|s| e.check(format!("{p}.private_address"), ipv4(s)));
    if let (Some(a), Some(net)) = (private_address, private)
        && !net.contains(&a)
    {
        e.push(
            format!("{p}.private_address"),
            format!("{a} is not in the private subnet {net}"),
        );
    }
    if private_address.is_some() && private_address == private_ip {
        e.push(
            format!("{p}.private_address"),
            "must differ from private_vip (the VIP floats)",
        );
    }
    let vrid = match z.vrid {
        None => u8::try_from(DEFAULT_VRID_BASE + index as u32).unwrap_or(255),
        Some(v @ 1..=255) => v as u8,
        Some(v) => {
            e.push(format!("{p}.vrid"), format!("{v} is outside 1..=255"));
            1
        }
    };
    let private_hosts = z
        .private_hosts
        .as_deref()
        .and_then(|s| e.check(format!("{p}.private_hosts"), cidr(s)));
    if let (Some(h), Some(net)) = (private_hosts, private)
        && !(net.contains(&h.network()) && net.prefix_len() <= h.prefix_len())
    {
        e.push(
            format!("{p}.private_hosts"),
            format!("{h} is not inside the private subnet {net}"),
        );
    }
    Some(ZoneSpec {
        name: z.name.clone(),
        public_interface: z.public_interface.clone(),
        private_interface: z.private_interface.clone(),
        public_vip: public_vip?,
        public_gateway: public_gateway?,
        private_vip: private_vip?,
        public_address,
        private_address,
        vrid,
        private_hosts,
    })
}

type RuleIn<'a> = (Option<&'a str>, &'a str, &'a str, &'a str, &'static str);

fn rules<'a>(e: &mut Errors, kind: &str, items: impl Iterator<Item = RuleIn<'a>>) -> Vec<Rule> {
    let mut out = Vec::new();
    let prefix = kind.trim_end_matches("_rules");
    for (i, (id, net, proto, ports, net_field)) in items.enumerate() {
        let p = format!("{kind}[{i}]");
        let net = e.check(format!("{p}.{net_field}"), cidr(net));
        let proto = e.check(format!("{p}.protocol"), protocol(proto));
        let ports = e.check(format!("{p}.ports"), PortSet::parse(ports));
        if let (Some(net), Some(protocol), Some(ports)) = (net, proto, ports) {
            let id = id
                .map(String::from)
                .unwrap_or_else(|| format!("{prefix}-{}", i + 1));
            out.push(Rule {
                id,
                net,
                protocol,
                ports,
            });
        }
    }
    out
}

fn peer_rules(rules: &[PeerRule], p: &str, e: &mut Errors) -> Vec<PeerRuleSpec> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let p = format!("{p}[{i}]");
        let source = r
            .source
            .as_deref()
            .and_then(|s| e.check(format!("{p}.source"), cidr(s)));
        let destination = r
            .destination
            .as_deref()
            .and_then(|s| e.check(format!("{p}.destination"), cidr(s)));
        let proto = e.check(format!("{p}.protocol"), protocol(&r.protocol));
        let ports = e.check(format!("{p}.ports"), PortSet::parse(&r.ports));
        let ok = r.source.is_none() == source.is_none()
            && r.destination.is_none() == destination.is_none();
        if let (true, Some(protocol), Some(ports)) = (ok, proto, ports) {
            out.push(PeerRuleSpec {
                source,
                destination,
                protocol,
                ports,
            });
        }
    }
    out
}

fn check_peering(v: &VpcPeering, p: &str, e: &mut Errors) -> Option<PeeringSpec> {
    name(&v.name, &format!("{p}.name"), e);
    let subnet = e.check(format!("{p}.subnet"), cidr(&v.subnet));
    let via = e.check(format!("{p}.via"), ipv4(&v.via));
    let policy = e.check(format!("{p}.policy"), policy(&v.policy));
    let consent = e.check(
        format!("{p}.consent"),
        match v.consent.as_str() {
            "mutual" => Ok(Consent::Mutual),
            "none" => Ok(Consent::None),
            o => Err(format!("{o:?} is not a consent mode; use mutual or none")),
        },
    );
    let consent_key = match (consent, &v.consent_key) {
        (Some(Consent::Mutual), None) => {
            e.push(format!("{p}.consent_key"), "is required with consent = \"mutual\": both gateways share it to authenticate their hellos");
            None
        }
        (Some(Consent::Mutual), Some(k)) if k.expose().len() < 16 || k.is_placeholder() => {
            e.push(format!("{p}.consent_key"), "must be at least 16 characters");
            None
        }
        (Some(Consent::Mutual), Some(k)) => Some(k.clone()),
        (_, Some(_)) => {
            e.warn(
                format!("{p}.consent_key"),
                "is ignored with consent = \"none\"",
            );
            None
        }
        (_, None) => None,
    };
    let ingress_rules = peer_rules(&v.ingress_rules, &format!("{p}.ingress_rules"), e);
    let egress_rules = peer_rules(&v.egress_rules, &format!("{p}.egress_rules"), e);
    Some(PeeringSpec {
        name: v.name.clone(),
        subnet: subnet?,
        via: via?,
        policy: policy?,
        consent: consent?,
        consent_key,
        ingress_rules,
        egress_rules,
    })
}

fn integrity(s: &str) -> Result<Integrity, String> {
    match s.to_ascii_uppercase().as_str() {
        "SHA1" => Ok(Integrity::Sha1),
        "SHA256" | "SHA2-256" | "SHA2_256" => Ok(Integrity::Sha256),
        "SHA384" | "SHA2-384" | "SHA2_384" => Ok(Integrity::Sha384),
        "SHA512" | "SHA2-512" | "SHA2_512" => Ok(Integrity::Sha512),
        _ => Err(format!(
            "{s:?} is not supported; use SHA1, SHA256, SHA384 or SHA512"
        )),
    }
}

fn encryption(s: &str) -> Result<Encryption, String> {
    match s.to_ascii_uppercase().as_str() {
        "AES128" => Ok(Encryption::Aes128),
        "AES256" => Ok(Encryption::Aes256),
        "CAMELLIA128" => Ok(Encryption::Camellia128),
        "CAMELLIA256" => Ok(Encryption::Camellia256),
        _ => Err(format!(
            "{s:?} is not supported; use AES128, AES256, CAMELLIA128 or CAMELLIA256"
        )),
    }
}

fn dh_group(n: u32) -> Result<u32, String> {
    if DH_GROUPS.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "DH group {n} is not supported; use one of 2, 5, 14-24"
        ))
    }
}

fn check_ipsec(c: &Ipsec, p: &str, e: &mut Errors) -> Option<IpsecSpec> {
    name(&c.name, &format!("{p}.name"), e);
    let remote_peer = e.check(format!("{p}.remote_peer"), ipv4(&c.remote_peer));
    let remote_subnet = e.check(format!("{p}.remote_subnet"), cidr(&c.remote_subnet));
    let psk = match (&c.pre_shared_key, &c.pre_shared_key_file) {
        (Some(_), Some(_)) => {
            e.push(
                format!("{p}.pre_shared_key"),
                "give pre_shared_key or pre_shared_key_file, not both",
            );
            None
        }
        (Some(k), None) if k.expose().len() < 8 || k.is_placeholder() => {
            e.push(
                format!("{p}.pre_shared_key"),
                "must be at least 8 characters",
            );
            None
        }
        (Some(k), None) => Some(PskSource::Inline(k.clone())),
        (None, Some(f)) if f.trim().is_empty() => {
            e.push(format!("{p}.pre_shared_key_file"), "must not be empty");
            None
        }
        (None, Some(f)) => Some(PskSource::File(f.clone())),
        (None, None) => {
            e.push(
                format!("{p}.pre_shared_key"),
                "is required (or pre_shared_key_file)",
            );
            None
        }
    };
    let dur =
        |e: &mut Errors, field: &str, v: &str| e.check(format!("{p}.{field}"), duration::parse(v));
    let l1 = dur(e, "phase1_lifetime", &c.phase1_lifetime);
    let l2 = dur(e, "phase2_lifetime", &c.phase2_lifetime);
    let rekey = dur(e, "rekey", &c.rekey);
    let dpd_timeout = dur(e, "dpd_timeout", &c.dpd_timeout);
    if let (Some(r), Some(l)) = (rekey, l2)
        && r >= l
    {
        e.push(
            format!("{p}.rekey"),
            format!(
                "{} must be shorter than phase2_lifetime ({})",
                c.rekey, c.phase2_lifetime
            ),
        );
    }
    let phase = |e: &mut Errors, n: u8, dh: u32, i: &str, enc: &str, lifetime: Option<Duration>| {
        let dh = e.check(format!("{p}.phase{n}_dh_group_number"), dh_group(dh));
        let i = e.check(format!("{p}.phase{n}_integrity_algorithm"), integrity(i));
        let enc = e.check(
            format!("{p}.phase{n}_encryption_algorithm"),
            encryption(enc),
        );
        Some(Phase {
            dh_group: dh?,
            integrity: i?,
            encryption: enc?,
            lifetime: lifetime?,
        })
    };
    let phase1 = phase(
        e,
        1,
        c.phase1_dh_group_number,
        &c.phase1_integrity_algorithm,
        &c.phase1_encryption_algorithm,
        l1,
    );
    let phase2 = phase(
        e,
        2,
        c.phase2_dh_group_number,
        &c.phase2_integrity_algorithm,
        &c.phase2_encryption_algorithm,
        l2,
    );
    let dpd_action = e.check(
        format!("{p}.dpd_action"),
        match c.dpd_action.as_str() {
            "clear" => Ok(DpdAction::Clear),
            "trap" => Ok(DpdAction::Trap),
            "restart" => Ok(DpdAction::Restart),
            o => Err(format!(
                "{o:?} is not a DPD action; use clear, trap or restart"
            )),
        },
    );
    let start_action = e.check(
        format!("{p}.start_action"),
        match c.start_action.as_str() {
            "none" => Ok(StartAction::None),
            "trap" => Ok(StartAction::Trap),
            "start" => Ok(StartAction::Start),
            o => Err(format!(
                "{o:?} is not a start action; use none, trap or start"
            )),
        },
    );
    let ingress_rules = peer_rules(&c.ingress_rules, &format!("{p}.ingress_rules"), e);
    Some(IpsecSpec {
        zone: c.zone.clone(),
        name: c.name.clone(),
        remote_peer: remote_peer?,
        remote_subnet: remote_subnet?,
        psk: psk?,
        phase1: phase1?,
        phase2: phase2?,
        dpd_timeout: dpd_timeout?,
        dpd_action: dpd_action?,
        start_action: start_action?,
        rekey: rekey?,
        ingress_rules,
    })
}

/// Decodes a WireGuard key: base64 of exactly 32 bytes.
pub fn wg_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| "is not valid base64 (expected a WireGuard key, 44 characters)".to_string())?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("decodes to {} bytes; a WireGuard key has 32", b.len()))
}

/// `edge`: a node without zones, where a listen port of 0 (any free port) is allowed.
fn check_wireguard(w: &WireGuard, edge: bool, e: &mut Errors) -> Option<WireGuardSpec> {
    if let Err(reason) = ifname(&w.interface) {
        e.push("wireguard.interface", reason);
    }
    let listen_port = e.check(
        "wireguard.listen_port",
        u16::try_from(w.listen_port)
            .ok()
            .filter(|p| *p > 0 || edge)
            .ok_or_else(|| match w.listen_port {
                0 => "0 (any free port) is only for nodes without zones: a gateway's peers need a fixed port".to_string(),
                n => format!("{n} is not a port (1-65535)"),
            }),
    );
    let address = e.check("wireguard.address", cidr_host(&w.address));
    let private_key = match (&w.private_key, &w.private_key_file) {
        (Some(_), Some(_)) => {
            e.push(
                "wireguard.private_key",
                "give private_key or private_key_file, not both",
            );
            None
        }
        (Some(k), None) => match wg_key(k.expose()) {
            Ok(_) => Some(KeySource::Inline(k.clone())),
            Err(_) => {
                e.push(
                    "wireguard.private_key",
                    "is not a WireGuard key (base64 of 32 bytes)",
                );
                None
            }
        },
        (None, Some(f)) => Some(KeySource::File(f.clone())),
        (None, None) => None,
    };
    unique(
        e,
        "wireguard.peers",
        w.peers.iter().map(|p| p.name.as_str()),
        "name",
    );
    let mut peers = Vec::new();
    let mut keys: BTreeMap<[u8; 32], &str> = BTreeMap::new();
    for (i, peer) in w.peers.iter().enumerate() {
        let p = format!("wireguard.peers[{i}]");
        name(&peer.name, &format!("{p}.name"), e);
        let key = e.check(format!("{p}.public_key"), wg_key(&peer.public_key));
        if let Some(k) = key
            && let Some(other) = keys.insert(k, &peer.name)
        {
            e.push(
                format!("{p}.public_key"),
                format!("is already the key of peer {other:?}"),
            );
        }
        let mut ips = Vec::new();
        for (j, ip) in peer.allowed_ips.iter().enumerate() {
            if let Some(n) = e.check(format!("{p}.allowed_ips[{j}]"), cidr(ip)) {
                ips.push(n);
            }
        }
        if let Some(k) = &peer.preshared_key
            && !k.is_placeholder()
            && wg_key(k.expose()).is_err()
        {
            e.push(
                format!("{p}.preshared_key"),
                "is not a WireGuard key (base64 of 32 bytes)",
            );
        }
        let keepalive = match peer.persistent_keepalive {
            Some(k) => e.check(
                format!("{p}.persistent_keepalive"),
                u16::try_from(k).map_err(|_| format!("{k} is too large (max 65535 seconds)")),
            ),
            None => None,
        };
        let ingress_rules = peer_rules(&peer.ingress_rules, &format!("{p}.ingress_rules"), e);
        let vpn_address = match &peer.address {
            None => None,
            Some(_) if !peer.allowed_ips.is_empty() => {
                e.push(
                    format!("{p}.address"),
                    "is allocated only for a peer without allowed_ips; remove one of the two",
                );
                None
            }
            Some(a) => {
                let ip = e.check(
                    format!("{p}.address"),
                    a.trim()
                        .strip_suffix("/32")
                        .unwrap_or(a.trim())
                        .parse::<Ipv4Addr>()
                        .map_err(|_| format!("{a:?} is not an IPv4 address")),
                );
                match (ip, address) {
                    (Some(ip), Some(gw)) if !gw.trunc().contains(&ip) => {
                        e.push(
                            format!("{p}.address"),
                            format!("{ip} is outside the VPN subnet {}", gw.trunc()),
                        );
                        None
                    }
                    _ => ip,
                }
            }
        };
        if let Some(public_key) = key {
            peers.push(WgPeerSpec {
                name: peer.name.clone(),
                public_key,
                allowed_ips: ips,
                address: vpn_address,
                preshared_key: peer.preshared_key.clone(),
                persistent_keepalive: keepalive,
                endpoint: peer.endpoint.clone(),
                allow_internet: peer.allow_internet,
                ingress_rules,
            });
        }
    }
    // Allowed IPs route traffic to one peer: two peers claiming one address is ambiguous.
    let index = |name: &str| w.peers.iter().position(|p| p.name == name).unwrap_or(0);
    for (i, a) in peers.iter().enumerate() {
        for b in &peers[..i] {
            let theirs = b.routed();
            for na in &a.routed() {
                if let Some(nb) = theirs
                    .iter()
                    .find(|nb| na.contains(&nb.network()) || nb.contains(&na.network()))
                {
                    let field = if a.allowed_ips.is_empty() {
                        "address"
                    } else {
                        "allowed_ips"
                    };
                    e.push(
                        format!("wireguard.peers[{}].{field}", index(&a.name)),
                        format!(
                            "{na} of peer {:?} overlaps {nb} of peer {:?}",
                            a.name, b.name
                        ),
                    );
                }
            }
        }
    }
    if let Some(addr) = address {
        for peer in &peers {
            if peer.routed().iter().any(|n| n.contains(&addr.addr())) {
                e.push(
                    format!("wireguard.peers[{}].allowed_ips", index(&peer.name)),
                    format!("contains the gateway's own VPN address {}", addr.addr()),
                );
            }
        }
        // Peers still waiting for an address must find one free when committed.
        let subnet = addr.trunc();
        let mut taken: Vec<Ipv4Net> = peers.iter().flat_map(WgPeerSpec::routed).collect();
        taken.push(Ipv4Net::from(addr.addr()));
        let mut free = subnet
            .hosts()
            .filter(|ip| !taken.iter().any(|n| n.contains(ip)))
            .count();
        for peer in peers
            .iter()
            .filter(|p| p.allowed_ips.is_empty() && p.address.is_none())
        {
            if free == 0 {
                e.push(
                    format!("wireguard.peers[{}]", index(&peer.name)),
                    format!(
                        "has no allowed_ips and the VPN subnet {subnet} has no free address left"
                    ),
                );
            }
            free = free.saturating_sub(1);
        }
    }
    Some(WireGuardSpec {
        interface: w.interface.clone(),
        listen_port: listen_port?,
        address: address?,
        private_key,
        peers,
    })
}

fn check_pipe(
    pipe: &Pipe,
    p: &str,
    node: &str,
    peers: &HashSet<&str>,
    e: &mut Errors,
) -> Option<PipeSpec> {
    name(&pipe.name, &format!("{p}.name"), e);
    let port = e.check(
        format!("{p}.port"),
        u16::try_from(pipe.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{} is not a port (1-65535)", pipe.port)),
    );
    let remote = e.check(format!("{p}.remote"), host_port(&pipe.remote));
    if let Some(peer) = &pipe.peer
        && peer != node
        && !peers.contains(peer.as_str())
    {
        e.push(
            format!("{p}.peer"),
            format!("{peer:?} names no WireGuard peer and is not this node ({node:?})"),
        );
    }
    let listen = match &pipe.listen {
        Some(l) => e.check(
            format!("{p}.listen"),
            l.parse().map_err(|_| format!("{l:?} is not an IP address")),
        ),
        None => None,
    };
    let (remote_host, remote_port) = remote?;
    Some(PipeSpec {
        name: pipe.name.clone(),
        port: port?,
        remote_host,
        remote_port,
        peer: pipe.peer.clone(),
        listen,
    })
}

fn check_route(r: &Route, p: &str, e: &mut Errors) -> Option<RouteSpec> {
    let domain = e.check(format!("{p}.domain"), domain(&r.domain));
    if r.https.is_empty() && r.http.is_empty() {
        e.push(p.to_string(), "needs at least one backend in https or http");
    }
    let mut backends: [Vec<SocketAddr>; 2] = [Vec::new(), Vec::new()];
    for (k, (field, list)) in [("https", &r.https), ("http", &r.http)]
        .into_iter()
        .enumerate()
    {
        for (i, b) in list.iter().enumerate() {
            let addr = b.parse::<SocketAddr>().map_err(|_| {
                format!("{b:?} is not an IP:port (backends are addresses; names are not resolved)")
            });
            if let Some(a) = e.check(format!("{p}.{field}[{i}]"), addr) {
                backends[k].push(a);
            }
        }
    }
    let health_check = match r.health_check.as_deref() {
        None => Some(None),
        Some("tcp") => Some(Some(HealthCheck::Tcp)),
        Some("http") => Some(Some(HealthCheck::Http)),
        Some(o) => {
            e.push(
                format!("{p}.health_check"),
                format!("{o:?} is not a health check; use tcp or http"),
            );
            None
        }
    };
    let balance = match r.balance.as_deref() {
        None | Some("round_robin") => Some(Balance::RoundRobin),
        Some("least_connections") => Some(Balance::LeastConnections),
        Some(o) => {
            e.push(
                format!("{p}.balance"),
                format!("{o:?} is not a balance mode; use round_robin or least_connections"),
            );
            None
        }
    };
    let proxy_protocol = match r.proxy_protocol.as_deref() {
        None => Some(None),
        Some("v1") => Some(Some(ProxyProtocol::V1)),
        Some("v2") => Some(Some(ProxyProtocol::V2)),
        Some(o) => {
            e.push(
                format!("{p}.proxy_protocol"),
                format!("{o:?} is not a PROXY protocol version; use v1 or v2"),
            );
            None
        }
    };
    let [https, http] = backends;
    Some(RouteSpec {
        domain: domain?,
        https,
        http,
        balance: balance?,
        proxy_protocol: proxy_protocol?,
        health_check: health_check?,
    })
}

/// A route domain: lowercase DNS name, `*.` only as the whole first label, or `*` (default).
pub fn domain(s: &str) -> Result<String, String> {
    if s == "*" {
        return Ok(s.into());
    }
    if s != s.to_ascii_lowercase() {
        return Err(format!("{s:?} must be lowercase"));
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    let body = name.strip_prefix("*.").unwrap_or(name);
    if body.is_empty() || name.len() > 253 {
        return Err(format!("{s:?} is not a domain name"));
    }
    for label in body.split('.') {
        if label.contains('*') {
            return Err(format!(
                "{s:?}: a wildcard may only be the whole first label (*.example.com)"
            ));
        }
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{s:?} has an invalid label {label:?}"));
        }
    }
    Ok(name.to_string())
}

/// `host:port` or `ip:port` (`[v6]:port`).
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} needs a port (host:port)"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{s:?}: {port:?} is not a port (1-65535)"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?} has no host"));
    }
    Ok((host.to_string(), port))
}

fn unique<'a>(e: &mut Errors, kind: &str, names: impl Iterator<Item = &'a str>, field: &str) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, n) in names.enumerate() {
        if let Some(first) = seen.insert(n, i) {
            e.push(
                format!("{kind}[{i}].{field}"),
                format!("{n:?} is already used by {kind}[{first}]"),
            );
        }
    }
}

fn name(n: &str, path: &str, e: &mut Errors) {
    if n.trim().is_empty() {
        e.push(path, "must not be empty");
    } else if n.chars().any(char::is_control) {
        e.push(path, "must not contain control characters");
    } else if n.len() > 128 {
        e.push(path, "is longer than 128 bytes");
    }
}

fn ifname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', ':']) || s == "." || s == ".." {
        Err(format!(
            "{s:?} is not an interface name (1-15 characters, no '/', ':' or spaces)"
        ))
    } else {
        Ok(())
    }
}

fn protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        o => Err(format!("{o:?} is not a protocol; use tcp or udp")),
    }
}

fn policy(s: &str) -> Result<Policy, String> {
    match s {
        "accept" => Ok(Policy::Accept),
        "drop" => Ok(Policy::Drop),
        o => Err(format!("{o:?} is not a policy; use accept or drop")),
    }
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address"))
}

/// A network in CIDR form; a bare address means /32. Host bits must be zero.
pub fn cidr(s: &str) -> Result<Ipv4Net, String> {
    let s = s.trim();
    let net: Ipv4Net = if s.contains('/') {
        s.parse()
            .map_err(|_| format!("{s:?} is not an IPv4 CIDR (like 10.1.0.0/24)"))?
    } else {
        let ip: Ipv4Addr = s
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 CIDR (like 10.1.0.0/24)"))?;
        Ipv4Net::from(ip)
    };
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An address with its prefix (`203.0.113.10/24`): host bits allowed, must not be the network.
fn cidr_host(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an address with prefix (like 203.0.113.10/24)"))?;
    if net.prefix_len() < 31 && (net.addr() == net.network() || net.addr() == net.broadcast()) {
        return Err(format!(
            "{s:?} is the network or broadcast address, not a host"
        ));
    }
    Ok(net)
}
