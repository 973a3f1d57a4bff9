//! Pipes: where each listens and what it dials. A pipe whose `peer` is another node dials that
//! node's VPN address on the same port (its pipe of the same name continues the journey);
//! otherwise it dials `remote` itself.

use kawaii_model::Desired;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long a pipe waits for its target to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pipe connection may stay silent both ways (not a lifetime cap).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipePlan {
    pub name: String,
    pub listen: SocketAddr,
    /// `host:port` to dial.
    pub target: String,
    /// The peer the connection goes through, if any.
    pub via: Option<String>,
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Every pipe of this node. Pipes through a peer that has no address yet (a document not
/// committed) are left out. A pipe without `listen` binds every address: of both families
/// (one dual-stack socket) when the VPN has an IPv6 side, IPv4 only otherwise.
pub fn plan(d: &Desired) -> Vec<PipePlan> {
    let any = match d.wireguard.as_ref().and_then(|w| w.address6) {
        Some(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    d.pipes
        .iter()
        .filter_map(|p| {
            let listen = SocketAddr::new(p.listen.unwrap_or(any), p.port);
            let via = p.peer.as_deref().filter(|peer| *peer != d.name);
            let target = match via {
                None => host_port(&p.remote_host, p.remote_port),
                Some(peer) => {
                    let w = d.wireguard.as_ref()?;
                    let spec = w.peers.iter().find(|s| s.name == peer)?;
                    format!("{}:{}", spec.vpn_address(w.address.trunc())?, p.port)
                }
            };
            Some(PipePlan {
                name: p.name.clone(),
                listen,
                target,
                via: via.map(String::from),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::fixture::desired;

    const PIPE: &str = "[[pipes]]\nname = \"db\"\nport = 5432\nremote = \"10.1.0.20:5432\"\n";

    #[test]
    fn a_pipe_without_listen_binds_both_families_when_the_vpn_has_ipv6() {
        let listen = |v6| plan(&desired(PIPE, v6))[0].listen.to_string();
        assert_eq!(listen(None), "0.0.0.0:5432");
        assert_eq!(listen(Some("fd00:8::1/64")), "[::]:5432");
        let bound = format!("{PIPE}listen = \"10.1.0.1\"\n");
        assert_eq!(
            plan(&desired(&bound, Some("fd00:8::1/64")))[0]
                .listen
                .to_string(),
            "10.1.0.1:5432"
        );
    }
}
