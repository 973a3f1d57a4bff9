//! `[wireguard]`: the VPN device (interface, listen port, the gateway's own address and key) and
//! its peers: unique names and keys, allowed IPs or an allocated address inside the VPN subnet,
//! no two peers routing one address, and a free address left for each peer still waiting for one.

use super::firewall::{PeerRuleSpec, peer_rules};
use super::primitives::{cidr, cidr_host, ifname, name, unique};
use crate::error::Errors;
use crate::secret::Secret;
use crate::spec::{WgPeer, WireGuard};
use base64::Engine;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

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
pub(super) fn check_wireguard(w: &WireGuard, edge: bool, e: &mut Errors) -> Option<WireGuardSpec> {
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
        if let Some(spec) = check_peer(peer, i, address, &mut keys, e) {
            peers.push(spec);
        }
    }
    check_routing(w, &peers, address, e);
    Some(WireGuardSpec {
        interface: w.interface.clone(),
        listen_port: listen_port?,
        address: address?,
        private_key,
        peers,
    })
}

/// Peer `i`; `keys` holds the public keys of the peers before it; `address` is the gateway's.
fn check_peer<'a>(
    peer: &'a WgPeer,
    i: usize,
    address: Option<Ipv4Net>,
    keys: &mut BTreeMap<[u8; 32], &'a str>,
    e: &mut Errors,
) -> Option<WgPeerSpec> {
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
    Some(WgPeerSpec {
        name: peer.name.clone(),
        public_key: key?,
        allowed_ips: ips,
        address: vpn_address,
        preshared_key: peer.preshared_key.clone(),
        persistent_keepalive: keepalive,
        endpoint: peer.endpoint.clone(),
        allow_internet: peer.allow_internet,
        ingress_rules,
    })
}

/// What the peers route: no overlaps between peers, never the gateway's own address, and a free
/// address for each peer still waiting for one.
fn check_routing(w: &WireGuard, peers: &[WgPeerSpec], address: Option<Ipv4Net>, e: &mut Errors) {
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
    let Some(addr) = address else {
        return;
    };
    for peer in peers {
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
                format!("has no allowed_ips and the VPN subnet {subnet} has no free address left"),
            );
        }
        free = free.saturating_sub(1);
    }
}
