//! `[wireguard]`: the VPN device (interface, listen port, the gateway's own address and key) and
//! its peers: unique names and keys, allowed IPs or an allocated address inside the VPN subnet,
//! no two peers routing one address, and a free address left for each peer still waiting for one.
//! Dual-stack: with `address6` the VPN has an IPv6 subnet too (routed, no NAT66): peers without
//! allowed IPs get an address of each family, and allowed IPs may mix families.

use super::firewall::{PeerRule6, PeerRuleSpec};
use super::primitives::{
    RuleNet, cidr_host, cidr6_host, ifname, is_link_local, name, rule_net, unique,
};
use super::wireguard6::{check_address6, check_routing6, warn_internet6};
use crate::error::Errors;
use crate::secret::Secret;
use crate::spec::{WgPeer, WireGuard};
use base64::Engine;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerSpec {
    pub name: String,
    pub public_key: [u8; 32],
    /// The IPv4 allowed IPs as written; with `allowed_ips6` empty too: "allocate addresses
    /// from the VPN subnets".
    pub allowed_ips: Vec<Ipv4Net>,
    /// The IPv6 allowed IPs as written.
    pub allowed_ips6: Vec<Ipv6Net>,
    /// The allocated VPN address (only without allowed IPs); None: not allocated yet
    /// (a document before its first commit).
    pub address: Option<Ipv4Addr>,
    /// The allocated IPv6 VPN address (only without allowed IPs, with `wireguard.address6`).
    pub address6: Option<Ipv6Addr>,
    pub preshared_key: Option<Secret>,
    pub persistent_keepalive: Option<u16>,
    pub endpoint: Option<String>,
    pub allow_internet: bool,
    /// The ingress rules' IPv4 view (rules naming IPv4 networks, and those naming none).
    pub ingress_rules: Vec<PeerRuleSpec>,
    /// Their IPv6 view (rules naming IPv6 networks, and those naming none).
    pub ingress_rules6: Vec<PeerRule6>,
}

impl WgPeerSpec {
    /// A peer without ingress rules reaches the whole private subnet of each family it is
    /// routed; one rule of either family limits both to what the rules open.
    pub fn open_to_private(&self) -> bool {
        self.ingress_rules.is_empty() && self.ingress_rules6.is_empty()
    }

    /// The one address a pipe dials on this peer: its allocated address, else its first /32
    /// inside the VPN `subnet`, else its first /32.
    pub fn vpn_address(&self, subnet: Ipv4Net) -> Option<Ipv4Addr> {
        let hosts = || self.allowed_ips.iter().filter(|n| n.prefix_len() == 32);
        self.address
            .or_else(|| hosts().find(|n| subnet.contains(*n)).map(Ipv4Net::addr))
            .or_else(|| hosts().next().map(Ipv4Net::addr))
    }

    /// Whether the peer has allowed IPs of its own (of either family), i.e. no allocation.
    pub fn explicit(&self) -> bool {
        !self.allowed_ips.is_empty() || !self.allowed_ips6.is_empty()
    }

    /// What IPv4 is routed to this peer: its allowed IPs, or its allocated address as a /32.
    pub fn routed(&self) -> Vec<Ipv4Net> {
        if self.explicit() {
            self.allowed_ips.clone()
        } else {
            self.address.map(Ipv4Net::from).into_iter().collect()
        }
    }

    /// What IPv6 is routed to this peer: its allowed IPs, or its allocated address as a /128.
    pub fn routed6(&self) -> Vec<Ipv6Net> {
        if self.explicit() {
            self.allowed_ips6.clone()
        } else {
            self.address6.map(Ipv6Net::from).into_iter().collect()
        }
    }

    /// Both families of [`WgPeerSpec::routed`], IPv4 first.
    pub fn routed_all(&self) -> Vec<IpNet> {
        let v4 = self.routed().into_iter().map(IpNet::V4);
        v4.chain(self.routed6().into_iter().map(IpNet::V6))
            .collect()
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
    /// The same in the VPN's IPv6 subnet, if it has one.
    pub address6: Option<Ipv6Net>,
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
    let address6 = w
        .address6
        .as_deref()
        .and_then(|a| e.check("wireguard.address6", vpn_address6(a)));
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
        let gw = Gateway {
            address,
            address6,
            declared6: w.address6.is_some(),
        };
        if let Some(spec) = check_peer(peer, i, &gw, &mut keys, e) {
            peers.push(spec);
        }
    }
    check_routing(w, &peers, address, e);
    check_routing6(w, &peers, address6, e);
    warn_internet6(w, address6, e);
    Some(WireGuardSpec {
        interface: w.interface.clone(),
        listen_port: listen_port?,
        address: address?,
        address6,
        private_key,
        peers,
    })
}

/// The gateway's VPN addresses, as far as they are valid (`declared6`: `address6` was written).
pub(super) struct Gateway {
    pub address: Option<Ipv4Net>,
    pub address6: Option<Ipv6Net>,
    pub declared6: bool,
}

/// `wireguard.address6`: an address with its prefix in a unique local or global prefix.
fn vpn_address6(s: &str) -> Result<Ipv6Net, String> {
    if let Ok(n) = s.trim().parse::<Ipv6Net>()
        && (is_link_local(n.addr()) || n.addr().is_multicast())
    {
        return Err(format!(
            "{s:?} is not a unicast prefix for a VPN (like fd00:8::1/64 or a global one)"
        ));
    }
    cidr6_host(s)
}

/// Peer `i`; `keys` holds the public keys of the peers before it; `gw` the gateway's addresses.
fn check_peer<'a>(
    peer: &'a WgPeer,
    i: usize,
    gw: &Gateway,
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
    let (mut ips, mut ips6) = (Vec::new(), Vec::new());
    for (j, ip) in peer.allowed_ips.iter().enumerate() {
        match e.check(format!("{p}.allowed_ips[{j}]"), rule_net(Some(ip))) {
            Some(RuleNet::V4(n)) => ips.push(n),
            Some(RuleNet::V6(n)) => ips6.push(n),
            Some(RuleNet::Any) | None => {}
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
    // The families the peer is routed: its allowed IPs, or the addresses it is allocated.
    let allocated = ips.is_empty() && ips6.is_empty();
    let carried = super::ipsec_net::Carried {
        v4: (!ips.is_empty() || allocated).then(Ipv4Net::default),
        v6: (!ips6.is_empty() || allocated && gw.declared6).then(Ipv6Net::default),
        no_v4: "the peer has no IPv4 address (its allowed_ips are IPv6 only)",
        no_v6: "the peer has no IPv6 address (no IPv6 allowed_ips, and no wireguard.address6 to allocate one from)",
    };
    let (ingress_rules, ingress_rules6) = super::ipsec_net::ingress_rules(
        &peer.ingress_rules,
        &format!("{p}.ingress_rules"),
        Some(carried),
        e,
    );
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
                    .map_err(|_| match a.contains(':') {
                        true => format!("{a:?} is an IPv6 address; it goes in address6"),
                        false => format!("{a:?} is not an IPv4 address"),
                    }),
            );
            match (ip, gw.address) {
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
    let vpn_address6 = peer
        .address6
        .as_deref()
        .and_then(|a| check_address6(peer, a, &p, gw, e));
    Some(WgPeerSpec {
        name: peer.name.clone(),
        public_key: key?,
        allowed_ips: ips,
        allowed_ips6: ips6,
        address: vpn_address,
        address6: vpn_address6,
        preshared_key: peer.preshared_key.clone(),
        persistent_keepalive: keepalive,
        endpoint: peer.endpoint.clone(),
        allow_internet: peer.allow_internet,
        ingress_rules,
        ingress_rules6,
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
                    let field = if a.explicit() {
                        "allowed_ips"
                    } else {
                        "address"
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
    let waiting: Vec<&WgPeerSpec> = peers
        .iter()
        .filter(|p| !p.explicit() && p.address.is_none())
        .collect();
    // Counted only as far as needed: a wide subnet has a billion hosts.
    let free = free_addresses4(subnet, &taken).take(waiting.len()).count();
    for peer in waiting.iter().skip(free) {
        e.push(
            format!("wireguard.peers[{}]", index(&peer.name)),
            format!("has no allowed_ips and the VPN subnet {subnet} has no free address left"),
        );
    }
}

/// The host addresses of `subnet` that no net of `taken` holds, lowest first. A taken net is
/// skipped as a whole, so finding the next free address costs the number of taken nets in its
/// way, not the number of addresses they hold.
pub fn free_addresses4(subnet: Ipv4Net, taken: &[Ipv4Net]) -> impl Iterator<Item = Ipv4Addr> + '_ {
    let (first, last) = match subnet.prefix_len() {
        31 | 32 => (u32::from(subnet.network()), u32::from(subnet.broadcast())),
        _ => (
            u32::from(subnet.network()) + 1,
            u32::from(subnet.broadcast()) - 1,
        ),
    };
    let span = |n: &Ipv4Net| {
        (
            u32::from(n.network()).into(),
            u32::from(n.broadcast()).into(),
        )
    };
    // Every value the walk yields lies in first..=last, so it fits an IPv4 address.
    free_in(Some(first.into()), last.into(), taken, span).map(|c| Ipv4Addr::from(c as u32))
}

/// The integers `first..=last` that no span of `taken` (its lowest and highest value) holds,
/// lowest first (none if `first` is None): the address walk of both families.
pub(super) fn free_in<'a, N>(
    first: Option<u128>,
    last: u128,
    taken: &'a [N],
    span: impl Fn(&N) -> (u128, u128) + 'a,
) -> impl Iterator<Item = u128> + 'a {
    let mut next = first;
    std::iter::from_fn(move || {
        loop {
            let cur = next.filter(|c| *c <= last)?;
            match taken
                .iter()
                .map(&span)
                .find(|(lo, hi)| (*lo..=*hi).contains(&cur))
            {
                Some((_, hi)) => next = hi.checked_add(1),
                None => {
                    next = cur.checked_add(1);
                    return Some(cur);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::valid::free_addresses;
    use crate::{Format, Gateway as Doc, validate};

    /// An address or a network of either family.
    fn p<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        s.parse().expect(s)
    }

    fn net(s: &str) -> Ipv4Net {
        p(s)
    }

    #[test]
    fn free_addresses_skip_taken_nets_whole() {
        let taken = [net("10.0.0.0/9"), net("10.128.0.1/32")];
        let got: Vec<Ipv4Addr> = free_addresses4(net("10.0.0.0/8"), &taken).take(2).collect();
        // 10.128.0.0 is a host of the /8 (only its own network address is not).
        assert_eq!(
            got,
            [Ipv4Addr::new(10, 128, 0, 0), Ipv4Addr::new(10, 128, 0, 2)]
        );
        // Hosts only: neither the network nor the broadcast address of a /30; both of a /31.
        let all: Vec<Ipv4Addr> = free_addresses4(net("10.8.0.0/30"), &[]).collect();
        assert_eq!(
            all,
            [Ipv4Addr::new(10, 8, 0, 1), Ipv4Addr::new(10, 8, 0, 2)]
        );
        assert_eq!(free_addresses4(net("10.8.0.0/31"), &[]).count(), 2);
        assert_eq!(
            free_addresses4(net("10.8.0.0/30"), &[net("10.8.0.0/30")]).count(),
            0
        );
    }

    #[test]
    fn free_addresses_start_after_the_anycast_address_and_skip_taken_nets_whole() {
        let ips = |v: &[&str]| -> Vec<Ipv6Addr> { v.iter().map(|s| p(s)).collect() };
        let taken: [Ipv6Net; 2] = [p("fd00:8::/65"), p("fd00:8::8000:0:0:1/128")];
        let got: Vec<Ipv6Addr> = free_addresses(p("fd00:8::/64"), &taken).take(2).collect();
        assert_eq!(got, ips(&["fd00:8::8000:0:0:0", "fd00:8::8000:0:0:2"]));
        let all: Vec<Ipv6Addr> = free_addresses(p("fd00:8::/126"), &[]).collect();
        assert_eq!(all, ips(&["fd00:8::1", "fd00:8::2", "fd00:8::3"]));
    }

    #[test]
    fn free_addresses_end_at_the_top_of_the_address_space() {
        let top: Ipv6Net = p("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
        let last: Ipv6Net = p("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
        let all: Vec<Ipv6Addr> = free_addresses(top, &[]).collect();
        assert_eq!(all, [last.addr()]);
        assert_eq!(free_addresses(last, &[]).count(), 0);
        assert_eq!(free_addresses(top, &[last]).count(), 0);
    }

    /// Found by the 10M fuzz run of `config_toml`: a VPN subnet of a /2 took 24 s to validate
    /// (every one of its billion hosts was counted to see whether one was free).
    #[test]
    fn a_wide_vpn_subnet_allocates_without_counting_its_hosts() {
        let text = r#"
[gateway]
name = "acme"
private_subnet = "192.168.1.0/24"
[wireguard]
address = "10.8.0.1/2"
[[wireguard.peers]]
name = "laptop"
public_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
"#;
        let mut g = Doc::parse(text, Format::Toml).expect("parses");
        let report = validate(&g).expect("valid before the commit: one free address is enough");
        assert!(report.desired.wireguard.is_some());
        g.prepare_commit(&Doc::default());
        let w = g.wireguard.as_ref().expect("wireguard");
        assert_eq!(w.peers[0].address.as_deref(), Some("0.0.0.1"));
    }
}
