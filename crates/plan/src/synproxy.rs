//! The two packets the kernel's SYN proxy forges from this host, kept out of conntrack
//! (`output-raw`, a `route` chain at the raw priority of the output hook). Without this, a
//! sustained connection rate through the proxy stalls: clients sit in ESTABLISHED with their
//! request unacknowledged (issue 17, measured in `bench/soak` and by the test
//! `sustained_connection_rate_with_port_reuse_completes_every_connection`).
//!
//! 1. **The ACK that completes the handshake with the backend** (source: the client, so not a
//!    local address; to the VIP). The proxy sets the conntrack entry's timestamp offset just
//!    before sending it, and the entry's own hook then adds that offset to the ACK's TSecr a
//!    second time: the backend (or the router's listener) gets a TSecr it never sent. Recent
//!    kernels' listeners (6.18 here) reject it (`TcpExtTSEcrRejected`) and answers with a duplicate
//!    ACK; when its millisecond clock ticked between its SYN-ACK and that answer, the client
//!    echoes the newer value in its request, which is rejected too, and the connection hangs
//!    until the listener retransmits its SYN-ACK (1 s, 3 s, ...). Untracked, the ACK leaves
//!    with the TSecr the backend sent; a forward's DNAT is then repeated statelessly
//!    (`ip daddr set`, rerouted by the `route` chain), as conntrack's NAT would have done.
//! 2. **The cookie SYN-ACK to the client** (the only SYN-ACK with a zero window). The proxy
//!    sends it without the SYN's "untracked" mark, so the output hook looks its tuple up: when
//!    the client reused a port whose previous connection to a local listener (the router) is
//!    still in conntrack (TIME_WAIT, 120 s by default), the SYN-ACK is attached to that old
//!    entry and its timestamp shifted by the old connection's offset; the client echoes a
//!    cookie the proxy no longer recognises and its ACK is dropped.

use crate::nft::Chain;

/// One family's proxied side, as rendered by [`crate::flood`].
#[derive(Debug)]
pub struct Proxied<'a> {
    /// `ip` or `ip6`.
    pub family: &'static str,
    /// The VIPs (one address or an anonymous set).
    pub vips: &'a str,
    /// The port set synproxy answers for.
    pub ports: &'a str,
}

/// The handshake's final ACK, as in [`crate::flood`].
const ACK: &str = "tcp flags & (fin | syn | rst | ack) == ack";
const SYNACK: &str = "tcp flags & (fin | syn | rst | ack) == syn | ack";

/// The `output-raw` chain: both forged packets untracked per proxied family, and the
/// forwards' DNAT of the forged ACK (`forwards`: IPv4 port set and destination, with the nat
/// rule's id).
pub fn output_raw(families: &[Proxied], forwards: &[(String, String, String)]) -> Chain {
    let mut raw = Chain::new(
        "output-raw",
        Some("type route hook output priority raw; policy accept;"),
    );
    for f in families {
        let six = if f.family == "ip6" { "6" } else { "" };
        raw.rule(format!(
            "{fam} saddr {vips} tcp sport {ports} {SYNACK} tcp window 0 counter notrack comment \"synproxy-synack{six}\"",
            fam = f.family,
            vips = f.vips,
            ports = f.ports,
        ));
        raw.rule(format!(
            "{fam} daddr {vips} tcp dport {ports} {ACK} fib saddr type != local counter notrack comment \"synproxy-ack{six}\"",
            fam = f.family,
            vips = f.vips,
            ports = f.ports,
        ));
    }
    if let Some(v4) = families.iter().find(|f| f.family == "ip") {
        for (ports, destination, id) in forwards {
            raw.rule(format!(
                "ip daddr {vips} tcp dport {ports} {ACK} fib saddr type != local ip daddr set {destination} comment \"{id}\"",
                vips = v4.vips,
            ));
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_packets_are_untracked_and_forwards_redirected() {
        let fams = [
            Proxied {
                family: "ip",
                vips: "203.0.113.10",
                ports: "{ 80, 443 }",
            },
            Proxied {
                family: "ip6",
                vips: "2001:db8::10",
                ports: "443",
            },
        ];
        let c = output_raw(&fams, &[("80".into(), "10.1.0.10".into(), "nat-1".into())]);
        assert_eq!(c.rules.len(), 5);
        assert!(c.rules[0].starts_with("ip saddr 203.0.113.10 tcp sport { 80, 443 }"));
        assert!(c.rules[0].contains("tcp window 0 counter notrack"));
        assert!(
            c.rules[3]
                .contains("fib saddr type != local counter notrack comment \"synproxy-ack6\"")
        );
        assert_eq!(
            c.rules[4],
            "ip daddr 203.0.113.10 tcp dport 80 tcp flags & (fin | syn | rst | ack) == ack fib saddr type != local ip daddr set 10.1.0.10 comment \"nat-1\""
        );
    }
}
