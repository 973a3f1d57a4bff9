//! The `inet kawaii` nftables table. Semantics (fixing the anchors' defects):
//! - input and forward drop by default; established/related first; invalid dropped;
//! - egress rules filter *forwarded* traffic from the private subnet (not the gateway's own);
//! - nothing from the public side reaches the gateway or the private subnet unless an ingress
//!   rule opens it; a forwarded port (tcp or udp, each as declared) is reachable only where an
//!   ingress rule opens it, from outside and through the hairpin from inside;
//! - SNAT to the zone's public VIP, explicitly;
//! - IPv6 is routed, never translated (no NAT66): its openings and egress rules live in the
//!   `ingress6` and `egress6` chains, and the ICMPv6 that IPv6 needs passes (RFC 4890: neighbour
//!   discovery on the link, errors always, echo rate-limited). Rendered only where the zone or
//!   the gateway has IPv6, so an IPv4-only table is unchanged.
//!
//! Every rule that decides carries a counter and a comment naming it (`ingress-1`, `egress-3`,
//! `nat-2/ingress-1`, `drop`), which the metrics read back. Ingress and egress rules that overlap
//! no other rule are elements of an interval set instead (one lookup, per-element counter and
//! comment): the kernel's cost is per rule, not per element. The rest stay ordinary rules.

use crate::opening::Site;
use ipnet::IpNet;
use kawaii_model::valid::{IpsecSpec, Policy, Protocol, Rule, ZoneSpec};
use kawaii_model::{Desired, PortSet};
use std::collections::HashMap;

pub use crate::table::{Carried, Chain, Change, Element, Meter, Set, Table};
use std::net::IpAddr;

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

pub(crate) fn l4(proto: Protocol, p: &PortSet) -> String {
    format!("{} dport {}", proto.as_str(), ports(p))
}

/// `ip saddr 198.51.100.0/24 ` or `ip6 saddr 2001:db8::/32 `; nothing for a whole family (the
/// chain it is in is of one family).
fn net_match(dir: &str, net: &IpNet) -> String {
    match net {
        _ if net.prefix_len() == 0 => String::new(),
        IpNet::V4(n) => format!("ip {dir} {n} "),
        IpNet::V6(n) => format!("ip6 {dir} {n} "),
    }
}

/// The rules that apply to one family, each with its network in that family.
fn project(rules: &[Rule], v6: bool) -> Vec<(IpNet, &Rule)> {
    rules
        .iter()
        .filter_map(|r| {
            let net = if v6 {
                r.net.v6().map(IpNet::V6)
            } else {
                r.net.v4().map(IpNet::V4)
            };
            net.map(|n| (n, r))
        })
        .collect()
}

/// The ICMPv6 errors every IPv6 path needs (RFC 4890 §4.3.1, §4.4.1): never dropped.
const ICMPV6_ERRORS: &str =
    "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem }";
/// Neighbour discovery and MLD, on the link only (hop limit 255 / link-local source).
const ICMPV6_LINK: &str =
    "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255";
const ICMPV6_MLD: &str = "ip6 saddr fe80::/10 icmpv6 type { mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report }";

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

pub(crate) fn quote(s: &str) -> String {
    // Interface names are validated (no quotes, no spaces); comments are our own ids.
    format!("\"{}\"", s.replace('"', ""))
}

/// A rule's set keys (`network . protocol . ports`) in one family, one per port range.
fn elements(net: IpNet, r: &Rule) -> impl Iterator<Item = String> + '_ {
    r.ports.0.iter().map(move |&(lo, hi)| {
        let ports = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        };
        format!("{} . {} . {ports}", net.trunc(), r.protocol.as_str())
    })
}

/// A network's address left-aligned in 128 bits (IPv4 in the top 32), so that one prefix
/// arithmetic serves both families.
fn aligned(net: &IpNet) -> u128 {
    match net.trunc() {
        IpNet::V4(n) => u128::from(u32::from(n.network())) << 96,
        IpNet::V6(n) => u128::from(n.network()),
    }
}

/// For each rule, true when none of its (network, protocol, port range) boxes intersects any
/// other box, of another rule or its own: exactly these can be set elements (the kernel refuses
/// or shadows overlapping intervals), and a packet that matches one matches no other rule, so
/// order and counters stay as with one rule each. The others stay ordinary rules.
fn disjoint(rules: &[(IpNet, &Rule)]) -> Vec<bool> {
    // Networks are prefixes: two intersect only when one contains the other. Boxes are grouped
    // by (protocol, network); a group is compared with itself and with each of its ancestors.
    // All rules are of one family.
    type Key = (Protocol, u128, u8);
    struct Group {
        /// (lo, hi, rule) sorted by lo, and the running maximum of hi.
        spans: Vec<(u16, u16, usize)>,
        max_hi: Vec<u16>,
    }
    impl Group {
        fn new(mut spans: Vec<(u16, u16, usize)>) -> Group {
            spans.sort_unstable();
            let max_hi = spans
                .iter()
                .scan(0u16, |m, s| {
                    *m = (*m).max(s.1);
                    Some(*m)
                })
                .collect();
            Group { spans, max_hi }
        }
        /// Whether some span of the group intersects lo..=hi.
        fn hits(&self, lo: u16, hi: u16) -> bool {
            let k = self.spans.partition_point(|s| s.0 <= hi);
            k > 0 && self.max_hi[k - 1] >= lo
        }
    }
    let mut ok = vec![true; rules.len()];
    let mut spans: HashMap<Key, Vec<(u16, u16, usize)>> = HashMap::new();
    for (i, (net, r)) in rules.iter().enumerate() {
        let key = (r.protocol, aligned(net), net.prefix_len());
        let g = spans.entry(key).or_default();
        g.extend(r.ports.0.iter().map(|&(lo, hi)| (lo, hi, i)));
    }
    let groups: HashMap<Key, Group> = spans.into_iter().map(|(k, v)| (k, Group::new(v))).collect();
    // Within a group (sorted by lo): a span meets a later one iff it meets the next, and an
    // earlier one iff the running maximum before it reaches it.
    for g in groups.values() {
        for (j, &(lo, hi, i)) in g.spans.iter().enumerate() {
            let next = g.spans.get(j + 1).is_some_and(|n| n.0 <= hi);
            let prev = j > 0 && g.max_hi[j - 1] >= lo;
            if next || prev {
                ok[i] = false;
            }
        }
    }
    // Against the groups of the networks that contain this one: the span is marked here, and
    // the ancestor's spans it meets are marked from the queries collected per ancestor.
    let mut queries: HashMap<Key, Vec<(u16, u16, usize)>> = HashMap::new();
    for (&(proto, addr, len), g) in &groups {
        for l in 0..len {
            let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            let up = (proto, addr & mask, l);
            let Some(a) = groups.get(&up) else {
                continue;
            };
            for &(lo, hi, i) in &g.spans {
                if a.hits(lo, hi) {
                    ok[i] = false;
                    queries.entry(up).or_default().push((lo, hi, i));
                }
            }
        }
    }
    for (up, q) in queries {
        let q = Group::new(q);
        for &(lo, hi, i) in &groups[&up].spans {
            if q.hits(lo, hi) {
                ok[i] = false;
            }
        }
    }
    ok
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
    // IPv6: the public VIPs held (those of the held zones that have one), and the routed prefix.
    let v6 = d.private_subnet6.is_some()
        || z.public_vip6.is_some()
        || d.wireguard.as_ref().is_some_and(|w| w.address6.is_some());
    let owned6 = crate::vrrp::owned6(d, z, observed);
    let vips6: Vec<String> = if owned6.is_empty() { vec![z] } else { owned6 }
        .iter()
        .filter_map(|o| o.public_vip6.map(|v| v.addr().to_string()))
        .collect();
    let vips6 = match vips6.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("{{ {} }}", many.join(", "))),
    };
    let private6 = d.private_subnet6.or(z.private_vip6.map(|v| v.trunc()));

    // --- input: the gateway itself; openings live in `ingress`.
    let mut input = Chain::new(
        "input",
        Some("type filter hook input priority filter; policy drop;"),
    );
    input.rule("ct state established,related accept".into());
    if v6 {
        input.rule(format!("{ICMPV6_LINK} accept"));
        input.rule(format!("{ICMPV6_MLD} accept"));
        input.rule(format!("{ICMPV6_ERRORS} accept"));
    }
    input.rule("ct state invalid counter drop comment \"invalid\"".into());
    input.rule("iif \"lo\" accept".into());
    input.rule(
        "meta l4proto icmp icmp type echo-request limit rate 20/second burst 50 packets accept"
            .into(),
    );
    input
        .rule("meta l4proto icmp icmp type echo-request counter drop comment \"icmp-rate\"".into());
    if v6 {
        input.rule("icmpv6 type echo-request limit rate 20/second burst 50 packets accept".into());
        input.rule("icmpv6 type echo-request counter drop comment \"icmpv6-rate\"".into());
    }
    input.rule(format!("iifname {wan} ip daddr {vips} jump ingress"));
    if let Some(vips6) = &vips6 {
        input.rule(format!("iifname {wan} ip6 daddr {vips6} jump ingress6"));
    }
    input.rule("jump services".into());
    input.rule("counter drop comment \"drop\"".into());

    // Services kawaii itself declares open only what they need, from whom they need it.
    let mut services = Chain::new("services", None);
    let router_ports = crate::router::plan(d, Some(z))
        .map(|r| r.ports())
        .unwrap_or_default();
    if !router_ports.is_empty() {
        let ports: Vec<String> = router_ports.iter().map(u16::to_string).collect();
        services.rule(format!(
            "ip daddr {vips} tcp dport {{ {} }} counter accept comment \"router\"",
            ports.join(", ")
        ));
        if let Some(vips6) = &vips6 {
            services.rule(format!(
                "ip6 daddr {vips6} tcp dport {{ {} }} counter accept comment \"router6\"",
                ports.join(", ")
            ));
        }
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
    // VRRP over IPv6, for the zones' IPv6 virtual routers: the siblings advertise from their
    // link-local addresses with hop limit 255 (RFC 5798 §5.1.2, §7.1: never routed), or, with
    // unicast, from their private_address6.
    if d.ha.is_some() && !siblings.is_empty() && d.zones.iter().any(|o| o.private_vip6.is_some()) {
        let peers6: Vec<String> = crate::vrrp::sibling_zones(d, z)
            .filter_map(|(s, _)| s.private_address6.map(|a| a.to_string()))
            .collect();
        let from = match (d.ha.as_ref().is_some_and(|h| h.unicast), peers6.as_slice()) {
            (true, [_, ..]) => format!("{{ {} }}", peers6.join(", ")),
            _ => "fe80::/10".to_string(),
        };
        services.rule(format!(
            "iifname {lan} ip6 saddr {from} ip6 hoplimit 255 meta l4proto vrrp counter accept comment \"vrrp6\""
        ));
    }
    // Connection-state sync (conntrackd) from the sibling instances only.
    if let Some(sync) = crate::conntrackd::plan(d, z, observed) {
        services.rule(crate::conntrackd::nft_rule(&sync));
    }
    for c in d.ipsec.iter().filter(|c| c.remote_peer.is_ipv4()) {
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
    crate::ipsec6::services(d, &mut services);

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

    // Every ingress rule accepts: the disjoint ones are one set lookup. One chain per family.
    let (ingress, ingress_set) = rule_chain(&d.ingress_rules, "ingress", false, "accept");
    let ingress6 = v6.then(|| rule_chain(&d.ingress_rules, "ingress6", true, "accept"));

    // --- forward: everything that crosses the gateway.
    let mut forward = Chain::new(
        "forward",
        Some("type filter hook forward priority filter; policy drop;"),
    );
    forward.rule("ct state established,related accept".into());
    if let Some(private6) = private6 {
        forward.rule(format!("{ICMPV6_ERRORS} accept"));
        // RFC 4890 §4.3.1: echo requests to the routed prefix pass, rate-limited.
        forward.rule(format!(
            "iifname {wan} ip6 daddr {private6} {}icmpv6 type echo-request limit rate 20/second burst 50 packets counter accept comment \"icmpv6-echo\"",
            crate::peering::not_from6(d)
        ));
    }
    // HA: answers of private hosts to VPN peers whose session is on a sibling are routed to
    // it, back out of the private interface. This node saw only that half of the flow, so
    // conntrack may call it invalid: it is let through before that check.
    if let (Some(w), Some(_)) = (&d.wireguard, &d.ha) {
        let mut vpn: Vec<ipnet::Ipv4Net> = vec![w.address.trunc()];
        vpn.extend(w.peers.iter().flat_map(|p| p.routed()));
        // An anonymous interval set refuses overlapping elements.
        let vpn = ipnet::Ipv4Net::aggregate(&vpn);
        forward.rule(format!(
            "iifname {lan} oifname {lan} ip daddr {} counter accept comment \"vpn-via-sibling\"",
            set(&vpn)
        ));
        forward
            .rules
            .extend(crate::wireguard::firewall::via_sibling6(w, &lan));
    }
    // HA: likewise for the offices whose tunnel another instance holds: private hosts behind
    // this zone reach them through that instance, whose answers reach the hosts directly. Not
    // tracked here either (`sibling-raw`): the sync brings this node that instance's entries
    // for the same flows, translations included, which it would apply.
    let mut untracked = Vec::new();
    if d.ha.is_some() {
        for c in d
            .ipsec
            .iter()
            .filter(|c| !crate::ipsec::terminated_here(d, z, observed, c))
        {
            let id = crate::ipsec_id(&c.name);
            let to = c.remote_seen().map(|n| ("ip", n.to_string(), ""));
            let to6 = c.remote_subnet6.map(|n| ("ip6", n.to_string(), "6"));
            for (family, net, sfx) in to.into_iter().chain(to6) {
                forward.rule(format!(
                    "iifname {lan} oifname {lan} {family} daddr {net} counter accept comment \"ipsec-{id}-via-sibling{sfx}\""
                ));
                untracked.push(format!(
                    "iifname {lan} {family} daddr {net} notrack comment \"ipsec-{id}-via-sibling{sfx}\""
                ));
            }
        }
    }
    forward.rule("ct state invalid counter drop comment \"invalid\"".into());
    // Port forwards: reachable only where an ingress rule opens the port, from outside and
    // (hairpin) from inside.
    // IPv6 openings are the hosts' own addresses, routed (no DNAT), from the public side.
    for n in &d.nat_rules {
        let lead = |source: String| match n.destination {
            IpAddr::V4(d) => format!("ct status dnat {source}ip daddr {d}"),
            IpAddr::V6(d) => format!("iifname {wan} {source}ip6 daddr {d}"),
        };
        for (net, r) in project(&d.ingress_rules, n.destination.is_ipv6())
            .into_iter()
            .filter(|(_, r)| r.protocol == n.protocol && r.ports.intersects(&n.ports))
        {
            forward.rule(format!(
                "{} {} {} counter accept comment \"{}/{}\"",
                lead(net_match("saddr", &net)),
                l4(n.protocol, &n.ports),
                l4(r.protocol, &r.ports),
                n.id,
                r.id
            ));
        }
    }
    // Aliases: a flow that should reach one was translated in prerouting; what is still
    // addressed to an alias here matched no peering's or office's translation.
    let aliases = crate::netmap::aliases(d, |c| crate::ipsec::terminated_here(d, z, observed, c));
    if !aliases.is_empty() {
        forward.rule(format!(
            "ip daddr {} counter drop comment \"alias-unowned\"",
            set(&aliases)
        ));
    }
    // VPC peerings forward only once consented (or with consent "none"); their policy and
    // rules live in a chain per direction (`peering.rs`).
    let (peer_rules, peer_chains) = crate::peering::forward(d, private, observed);
    for r in peer_rules {
        forward.rule(r);
    }
    // Site-to-site: the private subnet reaches each remote subnet; the remote subnet reaches
    // what the connection's ingress rules allow (default: the whole private subnet). No NAT.
    for c in &d.ipsec {
        let id = crate::ipsec_id(&c.name);
        if let Some(t) = crate::netmap::Tunnel::of(d, c, private) {
            // A twin (an office on our own subnet) without its SA would be routed onto our
            // LAN (plan/twin.rs): where it is translated, that is dropped too.
            let twin = (crate::twin::twins(d).any(|o| o.name == c.name)
                && crate::ipsec::terminated_here(d, z, observed, c))
            .then_some(lan.as_str());
            ipsec_translated(&mut forward, c, &t, (&wan, twin), &id);
            continue;
        }
        let Some(remote) = c.remote_subnet else {
            continue;
        };
        let site = Site {
            family: "ip",
            sfx: "",
            id: &id,
            wan: &wan,
            private,
            remote,
        };
        forward
            .rules
            .extend(site.rules(c.ingress_open(), &c.ingress_rules));
    }
    crate::ipsec6::forward(d, private6, &wan, &mut forward);
    // VPN peers: from their own addresses only, to the private subnet (or what their ingress
    // rules allow); with allow_internet also out to the public side, filtered like egress.
    let vpn = crate::wireguard::firewall::forward(d, &wan, private, private6);
    forward.rules.extend(vpn.rules);
    forward.rule(format!(
        "iifname {lan} ip saddr {private} oifname {wan} jump egress"
    ));
    if let Some(private6) = private6 {
        forward.rule(format!(
            "iifname {lan} ip6 saddr {private6} oifname {wan} jump egress6"
        ));
    }
    forward.rule("counter drop comment \"drop\"".into());

    // --- egress: forwarded traffic from the private subnet to the public side, per family.
    let (verdict, fallback) = match d.egress_policy {
        Policy::Accept => ("drop", "accept"),
        Policy::Drop => ("accept", "drop"),
    };
    let (mut egress, egress_set) = rule_chain(&d.egress_rules, "egress", false, verdict);
    egress.rule(format!("counter {fallback} comment \"egress-policy\""));
    let egress6 = (private6.is_some() || vpn.egress6).then(|| {
        let (mut c, set) = rule_chain(&d.egress_rules, "egress6", true, verdict);
        c.rule(format!("counter {fallback} comment \"egress-policy\""));
        (c, set)
    });

    // Flood protections: their rules go right after `established` in input and forward.
    let flood = crate::flood::plan(d, &wan, &vips, vips6.as_deref(), &router_ports, observed);
    input.rules.splice(1..1, flood.input_head);
    forward.rules.splice(1..1, flood.forward_head);
    // Consent hellos ahead of everything, `established` included, so each one is counted.
    let hellos = crate::peering::hellos(d);
    if hellos.is_some() {
        let jump = format!(
            "udp dport {} jump {}",
            crate::CONSENT_PORT,
            crate::peering::HELLOS
        );
        input.rules.insert(0, jump);
    }

    // --- NAT.
    let mut pre = Chain::new(
        "prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
    );
    for n in d.nat_rules.iter().filter(|n| n.destination.is_ipv4()) {
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
    // Peerings: no NAT, or the 1:1 map into our alias (and back in prerouting).
    for p in &d.vpc_peerings {
        let id = crate::ipsec_id(&p.name);
        match p.local_alias {
            Some(alias) => {
                pre.rule(format!(
                    "ip saddr {} ip daddr {alias} dnat ip prefix to {private} comment \"peering-{id}-in-map\"",
                    p.subnet
                ));
                post.rule(format!(
                    "ip saddr {private} ip daddr {} snat ip prefix to {alias} comment \"peering-{id}-out-map\"",
                    p.subnet
                ));
            }
            None => post.rule(format!("ip saddr {private} ip daddr {} return", p.subnet)),
        }
    }
    // No NAT between the private subnet and the subnets reached through tunnels, but for the
    // aliases, translated by the node that holds the tunnel.
    let mut tunnels = Vec::new();
    for c in &d.ipsec {
        let id = crate::ipsec_id(&c.name);
        match crate::netmap::Tunnel::of(d, c, private) {
            Some(t) if crate::ipsec::terminated_here(d, z, observed, c) => {
                for r in t.dnat(&id) {
                    pre.rule(r);
                }
                tunnels.extend(t.snat(&id));
            }
            Some(_) => {}
            None => {
                if let Some(remote) = c.remote_subnet {
                    tunnels.push(format!("ip saddr {private} ip daddr {remote} return"));
                }
            }
        }
    }
    // Ahead of the hairpin: an office on our own subnet (plan/twin.rs) opens flows from
    // addresses inside it to our hosts, which the hairpin would take for its own. A hairpin
    // flow was opened to the public VIP, so no tunnel's rule takes it.
    post.rules.splice(0..0, tunnels);
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
    // Full-tunnel VPN peers leave like the private subnet (IPv4; IPv6 is routed).
    for (src, id) in vpn.snat {
        post.rule(format!(
            "oifname {wan} ip saddr {src} snat ip to {snat} comment \"{id}-snat\""
        ));
    }

    let mut chains = vec![input, ingress];
    let mut pre_chains = Vec::new();
    let mut sets = vec![ingress_set];
    if let Some((c, set)) = ingress6 {
        chains.push(c);
        sets.push(set);
    }
    chains.extend(hellos);
    chains.extend([services, forward, egress]);
    sets.push(egress_set);
    if let Some((c, set)) = egress6 {
        chains.push(c);
        sets.push(set);
    }
    // Before routing: flows to offices held by a sibling go untracked; the mark that steers
    // an office on our own subnet.
    let steer = crate::twin::steer(d, &lan).unwrap_or_default();
    for (name, priority, rules) in [
        ("sibling-raw", "raw", untracked),
        ("steer", "mangle", steer),
    ] {
        if !rules.is_empty() {
            let hook = format!("type filter hook prerouting priority {priority}; policy accept;");
            let mut chain = Chain::new(name, Some(&hook));
            chain.rules = rules;
            pre_chains.push(chain);
        }
    }
    Table {
        chains: [
            chains,
            peer_chains,
            pre_chains,
            vec![pre, post],
            flood.chains,
        ]
        .concat(),
        sets,
        meters: flood.meters,
    }
}

/// The forward rules of a translated IPsec connection: matched by the addresses the flow was
/// opened with (the aliases), so offices that share a real subnet stay apart.
/// `twin_lan`: the private interface where `c` is a twin translated here (its flows must not
/// leave there).
fn ipsec_translated(
    forward: &mut Chain,
    c: &IpsecSpec,
    t: &crate::netmap::Tunnel,
    (wan, twin_lan): (&str, Option<&str>),
    id: &str,
) {
    let out = t.out_match();
    forward.rule(format!(
        "{out} oifname {wan} rt ipsec missing counter drop comment \"ipsec-{id}-no-sa\""
    ));
    if let Some(lan) = twin_lan {
        forward.rule(format!(
            "{out} oifname {lan} counter drop comment \"ipsec-{id}-no-sa-lan\""
        ));
    }
    forward.rule(format!("{out} counter accept comment \"ipsec-{id}-out\""));
    if c.ingress_open() {
        forward.rule(format!(
            "{} counter accept comment \"ipsec-{id}-in\"",
            t.in_match(None)
        ));
    }
    for r in c.ingress_rules.iter() {
        forward.rule(format!(
            "{} {} counter accept comment \"ipsec-{id}-in-{}\"",
            t.in_match(Some(r)),
            l4(r.protocol, &r.ports),
            r.index + 1
        ));
    }
}

/// The chain `name` (and its set, named alike) for one family's share of `rules`, each with
/// `verdict`: the disjoint rules are one set lookup, the rest ordinary rules after it.
fn rule_chain(rules: &[Rule], name: &str, v6: bool, verdict: &str) -> (Chain, Set) {
    let (addr, dir) = match (v6, name.starts_with("ingress")) {
        (false, true) => ("ip saddr", "saddr"),
        (false, false) => ("ip daddr", "daddr"),
        (true, true) => ("ip6 saddr", "saddr"),
        (true, false) => ("ip6 daddr", "daddr"),
    };
    let key_type = if v6 { "ipv6_addr" } else { "ipv4_addr" };
    let mut chain = Chain::new(name, None);
    let mut set = Set::new(name, &format!("{key_type} . inet_proto . inet_service"));
    chain.rule(format!(
        "{addr} . meta l4proto . th dport @{name} {verdict}"
    ));
    let rules = project(rules, v6);
    for (&(net, r), fits) in rules.iter().zip(disjoint(&rules)) {
        if fits {
            set.elements.extend(elements(net, r).map(|key| Element {
                key,
                rule: r.id.clone(),
            }));
            continue;
        }
        chain.rule(format!(
            "{}{} counter {verdict} comment \"{}\"",
            net_match(dir, &net),
            l4(r.protocol, &r.ports),
            r.id
        ));
    }
    (chain, set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kawaii_model::valid::RuleNet;

    fn rule(net: &str, protocol: Protocol, ports: &[(u16, u16)]) -> Rule {
        let net = match net {
            "any" => RuleNet::Any,
            n => match n.parse::<IpNet>().expect("net") {
                IpNet::V4(n) => RuleNet::V4(n),
                IpNet::V6(n) => RuleNet::V6(n),
            },
        };
        Rule {
            id: String::new(),
            net,
            protocol,
            ports: PortSet(ports.to_vec()),
        }
    }

    /// Each family's verdicts, in rule order (the rules of the other family left out).
    fn both(rules: &[Rule]) -> (Vec<bool>, Vec<bool>) {
        (
            disjoint(&project(rules, false)),
            disjoint(&project(rules, true)),
        )
    }

    /// Every pair of boxes of one family compared directly.
    fn brute(rules: &[Rule], v6: bool) -> Vec<bool> {
        let rules = project(rules, v6);
        let boxes: Vec<(usize, IpNet, &Rule, u16, u16)> = rules
            .iter()
            .enumerate()
            .flat_map(|(i, &(n, r))| r.ports.0.iter().map(move |&(lo, hi)| (i, n, r, lo, hi)))
            .collect();
        let mut ok = vec![true; rules.len()];
        for (a, x) in boxes.iter().enumerate() {
            for y in &boxes[a + 1..] {
                let nets = x.1.contains(&y.1) || y.1.contains(&x.1);
                if x.2.protocol == y.2.protocol && nets && x.3 <= y.4 && y.3 <= x.4 {
                    ok[x.0] = false;
                    ok[y.0] = false;
                }
            }
        }
        ok
    }

    #[test]
    fn overlapping_rules_are_found() {
        use Protocol::{Tcp, Udp};
        let rules = [
            rule("0.0.0.0/0", Tcp, &[(1, 1024)]),
            rule("198.51.100.0/24", Tcp, &[(22, 22), (8000, 8080)]),
            rule("198.51.100.0/24", Udp, &[(22, 22)]),
            rule("198.51.100.0/25", Tcp, &[(9000, 9001)]),
            rule("192.0.2.0/24", Tcp, &[(5000, 5010), (5005, 5005)]),
            rule("192.0.2.0/24", Tcp, &[(5011, 5011)]),
        ];
        assert_eq!(both(&rules).0, [false, false, true, true, false, true]);
    }

    #[test]
    fn a_rule_of_both_families_overlaps_in_each() {
        use Protocol::Tcp;
        let rules = [
            rule("any", Tcp, &[(22, 22)]),
            rule("198.51.100.0/24", Tcp, &[(22, 22)]),
            rule("2001:db8:beef::/48", Tcp, &[(80, 80)]),
            rule("2001:db8:beef:1::/64", Tcp, &[(80, 81)]),
            rule("2001:db8::/32", Tcp, &[(443, 443)]),
        ];
        // IPv4: `any` and the /24 meet on 22. IPv6: `any` (::/0) meets nothing on 22; the /48
        // and its /64 meet on 80; the /32 is alone on 443.
        assert_eq!(
            both(&rules),
            (vec![false, false], vec![true, false, false, true])
        );
    }

    #[test]
    fn overlap_detection_agrees_with_pairwise_comparison() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let (mut fits, mut overlaps) = (0, 0);
        for _ in 0..300 {
            let rules: Vec<Rule> = (0..next(40) + 1)
                .map(|_| {
                    let net = match next(3) {
                        0 => RuleNet::Any,
                        1 => {
                            let len = [0, 8, 16, 24, 25, 32][next(6) as usize];
                            let addr =
                                (10u32 << 24) | ((next(4) as u32) << 16) | (next(4) as u32) << 7;
                            RuleNet::V4(ipnet::Ipv4Net::new(addr.into(), len).expect("len").trunc())
                        }
                        _ => {
                            let len = [0, 32, 48, 56, 64, 121, 128][next(7) as usize];
                            let addr = (0x2001_0db8_u128 << 96)
                                | (u128::from(next(4) as u16) << 64)
                                | u128::from(next(4) as u16) << 7;
                            RuleNet::V6(ipnet::Ipv6Net::new(addr.into(), len).expect("len").trunc())
                        }
                    };
                    let ports: Vec<(u16, u16)> = (0..next(3) + 1)
                        .map(|_| {
                            let lo = next(60) as u16 + 1;
                            (lo, lo + next(8) as u16)
                        })
                        .collect();
                    let protocol = if next(3) == 0 {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    };
                    Rule {
                        id: String::new(),
                        net,
                        protocol,
                        ports: PortSet(ports),
                    }
                })
                .collect();
            let (ok4, ok6) = both(&rules);
            assert_eq!(ok4, brute(&rules, false), "{rules:?}");
            assert_eq!(ok6, brute(&rules, true), "{rules:?}");
            for ok in [ok4, ok6] {
                fits += ok.iter().filter(|&&b| b).count();
                overlaps += ok.iter().filter(|&&b| !b).count();
            }
        }
        // The cases exercise both outcomes.
        assert!(fits > 500 && overlaps > 500, "{fits} {overlaps}");
    }
}
