//! The `inet kawaii` nftables table. Semantics (fixing the anchors' defects):
//! - input and forward drop by default; established/related first; invalid dropped;
//! - egress rules filter *forwarded* traffic from the private subnet (not the gateway's own);
//! - nothing from the public side reaches the gateway or the private subnet unless an ingress
//!   rule opens it; a forwarded port (tcp or udp, each as declared) is reachable only where an
//!   ingress rule opens it, from outside and through the hairpin from inside;
//! - SNAT to the zone's public VIP, explicitly.
//!
//! Every rule that decides carries a counter and a comment naming it (`ingress-1`, `egress-3`,
//! `nat-2/ingress-1`, `drop`), which the metrics read back.

use kawaii_model::valid::{Consent, Policy, Protocol, ZoneSpec};
use kawaii_model::{Desired, PortSet};
use std::fmt::Write;

pub const TABLE: &str = "kawaii";

fn ports(p: &PortSet) -> String {
    let items: Vec<String> =
        p.0.iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn l4(proto: Protocol, p: &PortSet) -> String {
    format!("{} dport {}", proto.as_str(), ports(p))
}

fn net_match(dir: &str, net: &ipnet::Ipv4Net) -> String {
    if net.prefix_len() == 0 {
        String::new()
    } else {
        format!("ip {dir} {net} ")
    }
}

/// One network, or an anonymous set of several.
fn set(nets: &[ipnet::Ipv4Net]) -> String {
    match nets {
        [one] => one.to_string(),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn quote(s: &str) -> String {
    // Interface names are validated (no quotes, no spaces); comments are our own ids.
    format!("\"{}\"", s.replace('"', ""))
}

/// The table as chains of rule lines, so the driver can replace it whole or patch only the
/// chains that changed (one transaction either way).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    pub chains: Vec<Chain>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chain {
    pub name: String,
    /// `type filter hook input priority filter; policy drop;` for base chains.
    pub hook: Option<String>,
    pub rules: Vec<String>,
}

impl Chain {
    fn new(name: &str, hook: Option<&str>) -> Chain {
        Chain {
            name: name.into(),
            hook: hook.map(String::from),
            rules: Vec::new(),
        }
    }
    fn rule(&mut self, r: String) {
        self.rules.push(r);
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "\tchain {} {{", self.name);
        if let Some(h) = &self.hook {
            let _ = writeln!(out, "\t\t{h}");
        }
        for r in &self.rules {
            let _ = writeln!(out, "\t\t{r}");
        }
        let _ = writeln!(out, "\t}}");
    }
}

impl Table {
    /// The `nft -f` script that replaces the whole table in one transaction, whatever existed.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "table inet {TABLE} {{}}");
        let _ = writeln!(s, "delete table inet {TABLE}");
        let _ = writeln!(s, "table inet {TABLE} {{");
        for c in &self.chains {
            c.render(&mut s);
        }
        let _ = writeln!(s, "}}");
        s
    }

    /// A script that turns `prev` (applied) into `self` by flushing and refilling only the
    /// chains whose rules changed; None when the chain layout differs (replace the table).
    /// Rule counters of untouched chains survive.
    pub fn patch_from(&self, prev: &Table) -> Option<String> {
        let layout = |t: &Table| {
            t.chains
                .iter()
                .map(|c| (c.name.clone(), c.hook.clone()))
                .collect::<Vec<_>>()
        };
        if layout(self) != layout(prev) {
            return None;
        }
        let mut s = String::new();
        for (c, p) in self.chains.iter().zip(&prev.chains) {
            if c.rules != p.rules {
                let _ = writeln!(s, "flush chain inet {TABLE} {}", c.name);
                let _ = writeln!(s, "table inet {TABLE} {{");
                let _ = writeln!(s, "\tchain {} {{", c.name);
                for r in &c.rules {
                    let _ = writeln!(s, "\t\t{r}");
                }
                let _ = writeln!(s, "\t}}\n}}");
            }
        }
        Some(s)
    }
}

/// Renders the table for zone `z`.
pub fn render(d: &Desired, z: &ZoneSpec, observed: &crate::Observed) -> Table {
    let wan = quote(&z.public_interface);
    let lan = quote(&z.private_interface);
    let vip = z.public_vip.addr();
    // HA: every public VIP this node holds (its own zone's only, without HA).
    let owned = crate::vrrp::owned(d, z, observed);
    let vips = match owned.as_slice() {
        [] => vip.to_string(),
        [one] => one.public_vip.addr().to_string(),
        many => {
            let v: Vec<String> = many
                .iter()
                .map(|o| o.public_vip.addr().to_string())
                .collect();
            format!("{{ {} }}", v.join(", "))
        }
    };
    let private_vip = z.private_vip.addr();
    let private = d.private_subnet.unwrap_or(z.private_vip.trunc());

    // --- input: the gateway itself; openings live in `ingress`.
    let mut input = Chain::new(
        "input",
        Some("type filter hook input priority filter; policy drop;"),
    );
    input.rule("ct state established,related accept".into());
    input.rule("ct state invalid counter drop comment \"invalid\"".into());
    input.rule("iif \"lo\" accept".into());
    input.rule(
        "meta l4proto icmp icmp type echo-request limit rate 20/second burst 50 packets accept"
            .into(),
    );
    input
        .rule("meta l4proto icmp icmp type echo-request counter drop comment \"icmp-rate\"".into());
    input.rule(format!("iifname {wan} ip daddr {vips} jump ingress"));
    input.rule("jump services".into());
    input.rule("counter drop comment \"drop\"".into());

    // Services kawaii itself declares open only what they need, from whom they need it.
    let mut services = Chain::new("services", None);
    if let Some(router) = crate::router::plan(d, Some(z)) {
        let ports: Vec<String> = router.ports().iter().map(u16::to_string).collect();
        services.rule(format!(
            "ip daddr {vips} tcp dport {{ {} }} counter accept comment \"router\"",
            ports.join(", ")
        ));
    }
    // VRRP (RFC 5798, IP protocol 112) from the sibling instances only.
    let siblings = crate::vrrp::siblings(d, z);
    if d.ha.is_some() && !siblings.is_empty() {
        let s: Vec<String> = siblings.iter().map(ToString::to_string).collect();
        services.rule(format!(
            "iifname {lan} ip saddr {{ {} }} ip protocol vrrp counter accept comment \"vrrp\"",
            s.join(", ")
        ));
    }
    for p in d
        .vpc_peerings
        .iter()
        .filter(|p| p.consent == Consent::Mutual)
    {
        let id = crate::ipsec_id(&p.name);
        services.rule(format!(
            "ip saddr {} udp dport {} counter accept comment \"peering-{id}-hello\"",
            p.via,
            crate::CONSENT_PORT
        ));
    }
    for c in &d.ipsec {
        let id = crate::ipsec_id(&c.name);
        services.rule(format!(
            "ip saddr {} udp dport {{ 500, 4500 }} counter accept comment \"ipsec-{id}-ike\"",
            c.remote_peer
        ));
        services.rule(format!(
            "ip saddr {} meta l4proto esp counter accept comment \"ipsec-{id}-esp\"",
            c.remote_peer
        ));
    }

    // WireGuard: the tunnel's UDP port, from anywhere (peers roam); on the VPN side only the
    // pipes' ports.
    if let Some(w) = &d.wireguard {
        services.rule(format!(
            "udp dport {} counter accept comment \"wireguard\"",
            w.listen_port
        ));
    }
    // HA: where the peers are, from the sibling instances only.
    if d.wireguard.is_some() && d.ha.is_some() && !siblings.is_empty() {
        let s: Vec<String> = siblings.iter().map(ToString::to_string).collect();
        services.rule(format!(
            "iifname {lan} ip saddr {{ {} }} udp dport {} counter accept comment \"wireguard-sync\"",
            s.join(", "),
            crate::WG_SYNC_PORT
        ));
    }
    for p in &d.pipes {
        let id = format!("pipe-{}", crate::ipsec_id(&p.name));
        match (p.listen, &d.wireguard) {
            // A pipe bound to one address is reachable where that address is.
            (Some(addr), _) => services.rule(format!(
                "{} daddr {addr} tcp dport {} counter accept comment \"{id}\"",
                if addr.is_ipv4() { "ip" } else { "ip6" },
                p.port
            )),
            (None, Some(w)) => services.rule(format!(
                "iifname {} tcp dport {} counter accept comment \"{id}\"",
                quote(&w.interface),
                p.port
            )),
            (None, None) => {}
        }
    }

    let mut ingress = Chain::new("ingress", None);
    for r in &d.ingress_rules {
        ingress.rule(format!(
            "{}{} counter accept comment \"{}\"",
            net_match("saddr", &r.net),
            l4(r.protocol, &r.ports),
            r.id
        ));
    }

    // --- forward: everything that crosses the gateway.
    let mut forward = Chain::new(
        "forward",
        Some("type filter hook forward priority filter; policy drop;"),
    );
    forward.rule("ct state established,related accept".into());
    forward.rule("ct state invalid counter drop comment \"invalid\"".into());
    // Port forwards: reachable only where an ingress rule opens the port, from outside and
    // (hairpin) from inside.
    for n in &d.nat_rules {
        for r in d
            .ingress_rules
            .iter()
            .filter(|r| r.protocol == n.protocol && r.ports.intersects(&n.ports))
        {
            forward.rule(format!(
                "ct status dnat {}ip daddr {} {} {} counter accept comment \"{}/{}\"",
                net_match("saddr", &r.net),
                n.destination,
                l4(n.protocol, &n.ports),
                l4(r.protocol, &r.ports),
                n.id,
                r.id
            ));
        }
    }
    // VPC peerings forward only once consented (or with consent "none"); their policy and
    // rules live in a chain per direction.
    let mut peer_chains = Vec::new();
    for p in &d.vpc_peerings {
        let id = crate::ipsec_id(&p.name);
        if p.consent == Consent::Mutual && !observed.consented_peerings.contains(&p.name) {
            // No consent (yet): nothing crosses in either direction, not even as egress.
            forward.rule(format!(
                "ip daddr {} counter drop comment \"peering-{id}-pending\"",
                p.subnet
            ));
            forward.rule(format!(
                "ip saddr {} counter drop comment \"peering-{id}-pending\"",
                p.subnet
            ));
            continue;
        }
        forward.rule(format!(
            "ip saddr {private} ip daddr {} jump peering-{id}-out",
            p.subnet
        ));
        forward.rule(format!(
            "ip saddr {} ip daddr {private} jump peering-{id}-in",
            p.subnet
        ));
        let (verdict, fallback) = match p.policy {
            Policy::Accept => ("drop", "accept"),
            Policy::Drop => ("accept", "drop"),
        };
        for (dir, rules) in [("in", &p.ingress_rules), ("out", &p.egress_rules)] {
            let mut c = Chain::new(&format!("peering-{id}-{dir}"), None);
            for (i, r) in rules.iter().enumerate() {
                let src = r
                    .source
                    .map(|n| format!("ip saddr {n} "))
                    .unwrap_or_default();
                let dst = r
                    .destination
                    .map(|n| format!("ip daddr {n} "))
                    .unwrap_or_default();
                c.rule(format!(
                    "{src}{dst}{} counter {verdict} comment \"peering-{id}-{dir}-{}\"",
                    l4(r.protocol, &r.ports),
                    i + 1
                ));
            }
            c.rule(format!(
                "counter {fallback} comment \"peering-{id}-{dir}-policy\""
            ));
            peer_chains.push(c);
        }
    }
    // Site-to-site: the private subnet reaches each remote subnet; the remote subnet reaches
    // what the connection's ingress rules allow (default: the whole private subnet). No NAT.
    for c in &d.ipsec {
        let id = crate::ipsec_id(&c.name);
        // Never in clear: without an SA (tunnel down, or a failover not yet re-established)
        // the remote subnet is not reached through the default route. kernel-libipsec sends
        // tunnelled traffic through its own interface; with XFRM the route carries the SA.
        forward.rule(format!(
            "ip saddr {private} ip daddr {} oifname {wan} rt ipsec missing counter drop comment \"ipsec-{id}-no-sa\"",
            c.remote_subnet
        ));
        forward.rule(format!(
            "ip saddr {private} ip daddr {} counter accept comment \"ipsec-{id}-out\"",
            c.remote_subnet
        ));
        if c.ingress_rules.is_empty() {
            forward.rule(format!(
                "ip saddr {} ip daddr {private} counter accept comment \"ipsec-{id}-in\"",
                c.remote_subnet
            ));
        }
        for (i, r) in c.ingress_rules.iter().enumerate() {
            let src = r.source.unwrap_or(c.remote_subnet);
            let dst = r.destination.unwrap_or(private);
            forward.rule(format!(
                "ip saddr {src} ip daddr {dst} {} counter accept comment \"ipsec-{id}-in-{}\"",
                l4(r.protocol, &r.ports),
                i + 1
            ));
        }
    }
    // VPN peers: from their own addresses only, to the private subnet (or what their ingress
    // rules allow); with allow_internet also out to the public side, filtered like egress.
    let mut vpn_snat = Vec::new();
    if let Some(w) = &d.wireguard {
        let wg = quote(&w.interface);
        for p in &w.peers {
            let routed = p.routed();
            if routed.is_empty() {
                continue;
            }
            let id = format!("vpn-{}", crate::ipsec_id(&p.name));
            let src = set(&routed);
            if p.ingress_rules.is_empty() {
                forward.rule(format!(
                    "iifname {wg} ip saddr {src} ip daddr {private} counter accept comment \"{id}\""
                ));
            }
            for (i, r) in p.ingress_rules.iter().enumerate() {
                let from = r.source.map_or(src.clone(), |n| n.to_string());
                let to = r.destination.unwrap_or(private);
                forward.rule(format!(
                    "iifname {wg} ip saddr {from} ip daddr {to} {} counter accept comment \"{id}-{}\"",
                    l4(r.protocol, &r.ports),
                    i + 1
                ));
            }
            if p.allow_internet {
                forward.rule(format!(
                    "iifname {wg} ip saddr {src} oifname {wan} jump egress"
                ));
                vpn_snat.push((src, id));
            }
        }
    }
    forward.rule(format!(
        "iifname {lan} ip saddr {private} oifname {wan} jump egress"
    ));
    forward.rule("counter drop comment \"drop\"".into());

    // --- egress: forwarded traffic from the private subnet to the public side.
    let mut egress = Chain::new("egress", None);
    let (verdict, fallback) = match d.egress_policy {
        Policy::Accept => ("drop", "accept"),
        Policy::Drop => ("accept", "drop"),
    };
    for r in &d.egress_rules {
        egress.rule(format!(
            "{}{} counter {verdict} comment \"{}\"",
            net_match("daddr", &r.net),
            l4(r.protocol, &r.ports),
            r.id
        ));
    }
    egress.rule(format!("counter {fallback} comment \"egress-policy\""));

    // --- NAT.
    let mut pre = Chain::new(
        "prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
    );
    for n in &d.nat_rules {
        pre.rule(format!(
            "ip daddr {vips} {} dnat ip to {} comment \"{}\"",
            l4(n.protocol, &n.ports),
            n.destination,
            n.id
        ));
    }
    let mut post = Chain::new(
        "postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
    );
    // Hairpin: a private host reaching a forward through the public VIP gets its reply back
    // through the gateway because the gateway becomes the source.
    post.rule(format!("oifname {lan} ip saddr {private} ip daddr {private} ct status dnat snat ip to {private_vip} comment \"hairpin\""));
    for p in &d.vpc_peerings {
        post.rule(format!("ip saddr {private} ip daddr {} return", p.subnet));
    }
    // No NAT between the private subnet and the subnets reached through tunnels.
    for c in &d.ipsec {
        post.rule(format!(
            "ip saddr {private} ip daddr {} return",
            c.remote_subnet
        ));
    }
    // HA: a held zone's own private instances leave with that zone's public VIP.
    for o in &owned {
        if let Some(hosts) = o.private_hosts {
            post.rule(format!(
                "oifname {wan} ip saddr {hosts} snat ip to {} comment \"egress-snat-{}\"",
                o.public_vip.addr(),
                o.name
            ));
        }
    }
    let snat = if owned.iter().any(|o| o.name == z.name) {
        vip
    } else {
        owned.first().map_or(vip, |o| o.public_vip.addr())
    };
    post.rule(format!(
        "oifname {wan} ip saddr {private} snat ip to {snat} comment \"egress-snat\""
    ));
    // Full-tunnel VPN peers leave like the private subnet.
    for (src, id) in vpn_snat {
        post.rule(format!(
            "oifname {wan} ip saddr {src} snat ip to {snat} comment \"{id}-snat\""
        ));
    }

    Table {
        chains: [
            vec![input, ingress, services, forward, egress],
            peer_chains,
            vec![pre, post],
        ]
        .concat(),
    }
}
