//! `[[pipes]]`: named TCP forwards. Unique names and ports, a `host:port` remote, a peer that is
//! a declared WireGuard peer (with one VPN address to dial) or this node itself.

use super::primitives::{host_port, name, port, unique};
use super::wireguard::WireGuardSpec;
use crate::error::Errors;
use crate::spec::{Gateway, Pipe};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeSpec {
    pub name: String,
    pub port: u16,
    pub remote_host: String,
    pub remote_port: u16,
    pub peer: Option<String>,
    pub listen: Option<IpAddr>,
}

/// The pipes; `wireguard` is the validated `[wireguard]`, if it is valid.
pub(super) fn check_pipes(
    g: &Gateway,
    wireguard: Option<&WireGuardSpec>,
    e: &mut Errors,
) -> Vec<PipeSpec> {
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
    if let Some(w) = wireguard {
        for (i, pipe) in pipes.iter().enumerate() {
            let Some(peer) = pipe.peer.as_deref().filter(|p| *p != g.gateway.name) else {
                continue;
            };
            if let Some(spec) = w.peers.iter().find(|p| p.name == peer)
                && spec.explicit()
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
    pipes
}

fn check_pipe(
    pipe: &Pipe,
    p: &str,
    node: &str,
    peers: &HashSet<&str>,
    e: &mut Errors,
) -> Option<PipeSpec> {
    name(&pipe.name, &format!("{p}.name"), e);
    let port = e.check(format!("{p}.port"), port(pipe.port));
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
