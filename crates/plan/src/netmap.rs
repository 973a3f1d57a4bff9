//! Overlapping subnets through aliases: 1:1 prefix translation (NETMAP) for VPC peerings and
//! IPsec connections. Each address keeps its host part and changes its prefix, so every host is
//! reachable by its alias in both directions; conntrack undoes the mapping for the replies.
//!
//! Filter rules stay in the addresses our hosts see: the forward hook runs after the
//! destination translation (prerouting) and before the source one (postrouting). Offices whose
//! real subnets overlap each other are told apart by the addresses the flow was opened with
//! (`ct original`), which are the aliases.

use ipnet::Ipv4Net;
use kawaii_model::Desired;
use kawaii_model::valid::{IpsecSpec, PeerRuleSpec, map_net};

/// Every alias prefix the gateway translates: our local aliases (how peers and offices see
/// us) and the offices' remote aliases (how our hosts see them). A packet still addressed to
/// one of them in the forward hook matched no translation: no peering owns it. An office's
/// remote alias counts only where `translates` says its tunnel is translated (elsewhere it is
/// routed on to the node that holds the tunnel).
pub fn aliases(d: &Desired, translates: impl Fn(&IpsecSpec) -> bool) -> Vec<Ipv4Net> {
    let mut v: Vec<Ipv4Net> = d
        .vpc_peerings
        .iter()
        .filter_map(|p| p.local_alias)
        .collect();
    for c in &d.ipsec {
        v.extend(c.local_alias);
        if translates(c) {
            v.extend(c.remote_alias);
        }
    }
    v.sort();
    v.dedup();
    v
}

/// An IPsec connection seen with its aliases: `local` is our subnet as the office sees it (the
/// traffic selector), `seen` the office's subnet as our hosts see it, `real` its real subnet.
#[derive(Debug, Clone, Copy)]
pub struct Tunnel {
    pub private: Ipv4Net,
    pub local: Ipv4Net,
    pub seen: Ipv4Net,
    pub real: Ipv4Net,
}

impl Tunnel {
    /// The translated view of `c`, or None when neither side is translated and its real subnet
    /// overlaps no other connection's (the plain rules then tell it apart), or when the office
    /// has no IPv4 subnet (IPv6 is never translated).
    pub fn of(d: &Desired, c: &IpsecSpec, private: Ipv4Net) -> Option<Tunnel> {
        let real = c.remote_subnet?;
        let shares_subnet = d.ipsec.iter().any(|o| {
            o.name != c.name
                && o.remote_subnet
                    .is_some_and(|o| o.contains(&real.network()) || real.contains(&o.network()))
        });
        (c.aliased() || shares_subnet).then(|| Tunnel {
            private,
            local: c.local_alias.unwrap_or(private),
            seen: c.remote_alias.unwrap_or(real),
            real,
        })
    }

    /// Forward rules (prefix, verdict tail): out of the tunnel's subnet selected by the address
    /// the flow was opened with.
    pub fn out_match(&self) -> String {
        format!(
            "ip saddr {} ct original ip daddr {}",
            self.private, self.seen
        )
    }

    /// The office's flows into our subnet, told apart by the address they were opened to.
    pub fn in_match(&self, rule: Option<&PeerRuleSpec>) -> String {
        let src = rule
            .and_then(|r| r.source)
            .map_or(self.real, |s| map_net(s, self.seen, self.real));
        let dst = rule
            .and_then(|r| r.destination)
            .map(|n| format!(" ip daddr {n}"))
            .unwrap_or_default();
        format!("ip saddr {src} ct original ip daddr {}{dst}", self.local)
    }

    /// Prerouting: our hosts' flows to the alias go to the real subnet; the office's flows to
    /// our alias go to our real subnet.
    pub fn dnat(&self, id: &str) -> Vec<String> {
        let mut v = Vec::new();
        if self.seen != self.real {
            v.push(format!(
                "ip saddr {} ip daddr {} dnat ip prefix to {} comment \"ipsec-{id}-out-map\"",
                self.private, self.seen, self.real
            ));
        }
        if self.local != self.private {
            v.push(format!(
                "ip saddr {} ip daddr {} dnat ip prefix to {} comment \"ipsec-{id}-in-map\"",
                self.real, self.local, self.private
            ));
        }
        v
    }

    /// Postrouting: the office sees our hosts in the alias, our hosts see the office in its
    /// alias; no other NAT on the tunnel.
    pub fn snat(&self, id: &str) -> Vec<String> {
        let mut v = vec![if self.local != self.private {
            format!(
                "{} snat ip prefix to {} comment \"ipsec-{id}-out-map\"",
                self.out_match(),
                self.local
            )
        } else {
            format!("{} return", self.out_match())
        }];
        if self.seen != self.real {
            v.push(format!(
                "ip saddr {} ct original ip daddr {} snat ip prefix to {} comment \"ipsec-{id}-in-map\"",
                self.real, self.local, self.seen
            ));
        }
        v
    }
}
