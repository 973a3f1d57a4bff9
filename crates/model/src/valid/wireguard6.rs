//! `[wireguard]` over IPv6: a peer's allocated `address6`, what the peers route in the VPN's
//! IPv6 subnet (no overlaps, never the gateway's own address, a free address for each peer
//! still waiting for one), and the full tunnel's warning. The subnet against the other routed
//! prefixes is `overlap6.rs`'s.

use super::wireguard::{Gateway, WgPeerSpec, free_in};
use crate::error::Errors;
use crate::spec::{WgPeer, WireGuard};
use ipnet::Ipv6Net;
use std::net::Ipv6Addr;

/// Peer `peer`'s `address6` (at `p`), given the gateway's addresses.
pub(super) fn check_address6(
    peer: &WgPeer,
    a: &str,
    p: &str,
    gw: &Gateway,
    e: &mut Errors,
) -> Option<Ipv6Addr> {
    let path = format!("{p}.address6");
    if !peer.allowed_ips.is_empty() {
        e.push(
            path,
            "is allocated only for a peer without allowed_ips; remove one of the two",
        );
        return None;
    }
    let t = a.trim();
    let ip = match t.strip_suffix("/128").unwrap_or(t).parse::<Ipv6Addr>() {
        Ok(ip) => ip,
        Err(_) if !t.contains(':') => {
            e.push(
                path,
                format!("{a:?} is an IPv4 address; it goes in address (address6 is IPv6)"),
            );
            return None;
        }
        Err(_) => {
            e.push(path, format!("{a:?} is not an IPv6 address"));
            return None;
        }
    };
    match gw.address6 {
        Some(net) if !net.trunc().contains(&ip) => {
            e.push(
                path,
                format!("{ip} is outside the VPN's IPv6 subnet {}", net.trunc()),
            );
            None
        }
        Some(_) => Some(ip),
        None if !gw.declared6 => {
            e.push(
                path,
                "needs wireguard.address6 (the VPN's IPv6 subnet it is allocated from)",
            );
            None
        }
        None => None,
    }
}

/// What the peers route over IPv6: no overlaps between peers, never the gateway's own address,
/// and with `address6` a free IPv6 address for each peer still waiting for one.
pub(super) fn check_routing6(
    w: &WireGuard,
    peers: &[WgPeerSpec],
    address6: Option<Ipv6Net>,
    e: &mut Errors,
) {
    let index = |name: &str| w.peers.iter().position(|p| p.name == name).unwrap_or(0);
    let meets = |a: &Ipv6Net, b: &Ipv6Net| a.contains(&b.network()) || b.contains(&a.network());
    for (i, a) in peers.iter().enumerate() {
        for b in &peers[..i] {
            let theirs = b.routed6();
            for na in &a.routed6() {
                if let Some(nb) = theirs.iter().find(|nb| meets(na, nb)) {
                    let field = if a.explicit() {
                        "allowed_ips"
                    } else {
                        "address6"
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
    let Some(addr) = address6 else {
        return;
    };
    for peer in peers {
        if peer.routed6().iter().any(|n| n.contains(&addr.addr())) {
            e.push(
                format!("wireguard.peers[{}].allowed_ips", index(&peer.name)),
                format!(
                    "contains the gateway's own IPv6 VPN address {}",
                    addr.addr()
                ),
            );
        }
    }
    // Peers still waiting for an address must find one free when committed.
    let subnet = addr.trunc();
    let mut taken: Vec<Ipv6Net> = peers.iter().flat_map(WgPeerSpec::routed6).collect();
    taken.push(Ipv6Net::from(addr.addr()));
    let waiting: Vec<&WgPeerSpec> = peers
        .iter()
        .filter(|p| !p.explicit() && p.address6.is_none())
        .collect();
    let free = free_addresses(subnet, &taken).take(waiting.len()).count();
    for peer in waiting.iter().skip(free) {
        e.push(
            format!("wireguard.peers[{}]", index(&peer.name)),
            format!(
                "has no allowed_ips and the VPN's IPv6 subnet {subnet} has no free address left"
            ),
        );
    }
}

/// The addresses of `subnet` after its subnet-router anycast address that no net of `taken`
/// holds, lowest first.
pub fn free_addresses(subnet: Ipv6Net, taken: &[Ipv6Net]) -> impl Iterator<Item = Ipv6Addr> + '_ {
    // After the subnet-router anycast address; none after the last address there is.
    let first = u128::from(subnet.network()).checked_add(1);
    let span = |n: &Ipv6Net| (n.network().into(), n.broadcast().into());
    free_in(first, subnet.broadcast().into(), taken, span).map(Ipv6Addr::from)
}

/// Full tunnel over IPv6 is routed (no NAT66): from a unique local prefix it cannot work, so the
/// peer keeps its own IPv6 Internet (showconf leaves `::/0` out) and the operator is told why.
pub(super) fn warn_internet6(w: &WireGuard, address6: Option<Ipv6Net>, e: &mut Errors) {
    let Some(net) = address6
        .map(|a| a.trunc())
        .filter(|n| is_unique_local(n.network()))
    else {
        return;
    };
    for (i, p) in w.peers.iter().enumerate().filter(|(_, p)| p.allow_internet) {
        e.warn(
            format!("wireguard.peers[{i}].allow_internet"),
            format!(
                "applies to IPv4 only: wireguard.address6 {net} is a unique local prefix the \
                 Internet does not route back (no NAT66), so {:?} keeps its own IPv6 Internet; \
                 use a global prefix routed to the gateway to tunnel IPv6 too",
                p.name
            ),
        );
    }
}

/// Whether `a` is a unique local address (fc00::/7, RFC 4193).
pub fn is_unique_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xfe00 == 0xfc00
}
