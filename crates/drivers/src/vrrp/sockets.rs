//! The speaker's raw sockets, one send/receive pair per family: IPv4 (protocol 112, 224.0.0.18,
//! TTL 255) and IPv6 (next header 112, ff02::12, hop limit 255, from the interface's link-local
//! address or, with unicast peers, from the instance's own `private_address6`).

use super::io6;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

/// A send socket bound to the advert source and a receive socket bound to the interface.
pub struct Pair {
    /// (interface, source).
    pub key: (String, IpAddr),
    /// Bound to the source address: sends adverts from it.
    pub tx: Socket,
    /// Bound to the interface only: receives multicast and unicast adverts.
    pub rx: Socket,
    /// The interface's index (the scope of link-local and multicast IPv6 destinations).
    pub index: u32,
}

fn protocol() -> Option<Protocol> {
    Some(Protocol::from(i32::from(kawaii_vrrp::packet::IP_PROTOCOL)))
}

fn ifindex(dev: &str) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("{dev}: unreadable ifindex {text:?}")))
}

pub fn open4(dev: &str, source: Ipv4Addr) -> std::io::Result<Pair> {
    let tx = Socket::new(Domain::IPV4, Type::RAW, protocol())?;
    tx.bind_device(Some(dev.as_bytes()))?;
    tx.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
    tx.set_multicast_if_v4(&source)?;
    tx.set_multicast_ttl_v4(u32::from(kawaii_vrrp::packet::TTL))?;
    tx.set_ttl_v4(u32::from(kawaii_vrrp::packet::TTL))?;
    tx.set_multicast_loop_v4(false)?;
    // The send socket never reads: keep what it may queue small (the kernel's minimum).
    tx.set_recv_buffer_size(0)?;
    let rx = Socket::new(Domain::IPV4, Type::RAW, protocol())?;
    rx.bind_device(Some(dev.as_bytes()))?;
    rx.join_multicast_v4(&kawaii_vrrp::packet::MULTICAST_GROUP, &source)?;
    rx.set_multicast_loop_v4(false)?;
    rx.set_nonblocking(true)?;
    Ok(Pair {
        key: (dev.to_string(), source.into()),
        tx,
        rx,
        index: 0,
    })
}

/// The IPv6 pair: no `IPV6_CHECKSUM` (the codec computes the checksum, and checks it on
/// receive with the destination the kernel reports).
pub fn open6(dev: &str, source: Ipv6Addr) -> std::io::Result<Pair> {
    let index = ifindex(dev)?;
    let hops = u32::from(kawaii_vrrp::HOP_LIMIT);
    let tx = Socket::new(Domain::IPV6, Type::RAW, protocol())?;
    tx.bind_device(Some(dev.as_bytes()))?;
    // The unicast source (private_address6) may still be in DAD; it is the interface's own.
    tx.set_freebind_v6(true)?;
    let scope = if io6::is_link_local(&source) {
        index
    } else {
        0
    };
    tx.bind(&SockAddr::from(SocketAddrV6::new(source, 0, 0, scope)))?;
    tx.set_multicast_if_v6(index)?;
    tx.set_multicast_hops_v6(hops)?;
    tx.set_unicast_hops_v6(hops)?;
    tx.set_multicast_loop_v6(false)?;
    tx.set_recv_buffer_size(0)?;
    let rx = Socket::new(Domain::IPV6, Type::RAW, protocol())?;
    rx.bind_device(Some(dev.as_bytes()))?;
    rx.join_multicast_v6(&kawaii_vrrp::MULTICAST_GROUP6, index)?;
    io6::want_pktinfo(&rx)?;
    rx.set_nonblocking(true)?;
    Ok(Pair {
        key: (dev.to_string(), source.into()),
        tx,
        rx,
        index,
    })
}

/// The source of IPv6 adverts on `dev`: its own link-local address (RFC 5798 §5.1.2.1), never
/// one of `vips` (the link-local VIPs, which move between instances), and not while duplicate
/// address detection still runs on it (a tentative address sends nothing: siblings would not
/// hear this router, and both would be master). Right after the link comes up that takes about
/// a second.
pub fn link_local_source(dev: &str, vips: &[Ipv6Addr]) -> std::io::Result<Ipv6Addr> {
    io6::link_locals(dev)?
        .into_iter()
        .filter(|(_, tentative)| !tentative)
        .map(|(a, _)| a)
        .find(|a| !vips.contains(a))
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "{dev} has no link-local address yet (or it is still tentative)"
            ))
        })
}

/// Sends `bytes` from the pair's source to `dst`.
pub fn send(pair: &Pair, bytes: &[u8], dst: IpAddr) -> std::io::Result<usize> {
    let to = match dst {
        IpAddr::V4(d) => SockAddr::from(SocketAddrV4::new(d, 0)),
        IpAddr::V6(d) => {
            let scope = if d.is_multicast() || io6::is_link_local(&d) {
                pair.index
            } else {
                0
            };
            SockAddr::from(SocketAddrV6::new(d, 0, 0, scope))
        }
    };
    pair.tx.send_to(bytes, &to)
}
