//! A tunnel's way into the private subnet in one family, as `forward` rules: a VPN peer's (from
//! its own addresses on the WireGuard device) or an IPsec connection's (from the office's
//! subnet). Without ingress rules the whole private subnet is open; with some, what each rule
//! names (its source within the tunnel's, its destination within the private subnet, by default
//! all of each), numbered by the rule's place as written.

use crate::nft::l4;
use kawaii_model::valid::NetRule;
use std::fmt::Display;

/// Where the rules come from and how they are commented.
pub(crate) struct Opening<'a> {
    /// What every rule starts with: `iifname "kawaii-wg0" ` for a VPN peer, nothing for IPsec.
    pub match_in: &'a str,
    /// `ip` or `ip6`.
    pub family: &'a str,
    /// The tunnel's sources: a network or an nft anonymous set.
    pub src: &'a str,
    /// The comment of the blanket rule; rule `n` is commented `{id}-{n}`.
    pub id: &'a str,
}

impl Opening<'_> {
    /// The rules: the whole `private` subnet when `open`, then one per ingress rule.
    pub fn rules<N: Display + Copy>(
        &self,
        private: N,
        open: bool,
        rules: &[NetRule<N>],
    ) -> Vec<String> {
        let Opening {
            match_in,
            family: f,
            src,
            id,
        } = *self;
        let mut out = Vec::new();
        if open {
            out.push(format!(
                "{match_in}{f} saddr {src} {f} daddr {private} counter accept comment \"{id}\""
            ));
        }
        for r in rules {
            let from = r.source.map_or(src.to_string(), |n| n.to_string());
            let to = r.destination.unwrap_or(private);
            out.push(format!(
                "{match_in}{f} saddr {from} {f} daddr {to} {} counter accept comment \"{id}-{}\"",
                l4(r.protocol, &r.ports),
                r.index + 1
            ));
        }
        out
    }
}

/// An IPsec connection's forwarding in one family, between the private subnet and the office's
/// (`remote`): never in clear, the private subnet's way out through the tunnel, and the office's
/// way in. Comments are `ipsec-{id}-no-sa{sfx}`, `-out{sfx}` and `-in{sfx}`.
pub(crate) struct Site<'a, N> {
    /// `ip` or `ip6`, and the comments' suffix: empty or `6`.
    pub family: &'a str,
    pub sfx: &'a str,
    /// The connection's id (`crate::ipsec_id`) and the public interface.
    pub id: &'a str,
    pub wan: &'a str,
    pub private: N,
    pub remote: N,
}

impl<N: Display + Copy> Site<'_, N> {
    /// The rules; `open` and `rules` are the connection's ingress, as for [`Opening::rules`].
    pub fn rules(&self, open: bool, rules: &[NetRule<N>]) -> Vec<String> {
        let Site {
            family: f,
            sfx,
            id,
            wan,
            private: p,
            remote: r,
        } = *self;
        // Without an SA (tunnel down, or a failover not yet re-established) the office's subnet
        // would follow the default route. kernel-libipsec sends tunnelled traffic through its
        // own interface; with XFRM the route carries the SA.
        let mut out = vec![
            format!(
                "{f} saddr {p} {f} daddr {r} oifname {wan} rt ipsec missing counter drop comment \"ipsec-{id}-no-sa{sfx}\""
            ),
            format!("{f} saddr {p} {f} daddr {r} counter accept comment \"ipsec-{id}-out{sfx}\""),
        ];
        let opening = Opening {
            match_in: "",
            family: f,
            src: &r.to_string(),
            id: &format!("ipsec-{id}-in{sfx}"),
        };
        out.extend(opening.rules(p, open, rules));
        out
    }
}
