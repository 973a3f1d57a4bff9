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

use kawaii_model::valid::{Policy, Protocol, ZoneSpec};
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

fn quote(s: &str) -> String {
    // Interface names are validated (no quotes, no spaces); comments are our own ids.
    format!("\"{}\"", s.replace('"', ""))
}

/// Renders the `nft -f` script that atomically replaces the table.
pub fn render(d: &Desired, z: &ZoneSpec) -> String {
    let wan = quote(&z.public_interface);
    let lan = quote(&z.private_interface);
    let vip = z.public_vip.addr();
    let private_vip = z.private_vip.addr();
    let private = d.private_subnet.unwrap_or(z.private_vip.trunc());
    let mut s = String::new();
    let w = &mut s;
    // Create-if-missing, then delete, then define: one transaction, whatever existed before.
    let _ = writeln!(w, "table inet {TABLE} {{}}");
    let _ = writeln!(w, "delete table inet {TABLE}");
    let _ = writeln!(w, "table inet {TABLE} {{");

    // --- input: the gateway itself.
    let _ = writeln!(w, "\tchain input {{");
    let _ = writeln!(
        w,
        "\t\ttype filter hook input priority filter; policy drop;"
    );
    let _ = writeln!(w, "\t\tct state established,related accept");
    let _ = writeln!(w, "\t\tct state invalid counter drop comment \"invalid\"");
    let _ = writeln!(w, "\t\tiif \"lo\" accept");
    let _ = writeln!(
        w,
        "\t\tmeta l4proto icmp icmp type echo-request limit rate 20/second burst 50 packets accept"
    );
    let _ = writeln!(
        w,
        "\t\tmeta l4proto icmp icmp type echo-request counter drop comment \"icmp-rate\""
    );
    for r in &d.ingress_rules {
        let _ = writeln!(
            w,
            "\t\tiifname {wan} {}ip daddr {vip} {} counter accept comment \"{}\"",
            net_match("saddr", &r.net),
            l4(r.protocol, &r.ports),
            r.id
        );
    }
    let _ = writeln!(w, "\t\tcounter drop comment \"drop\"");
    let _ = writeln!(w, "\t}}");

    // --- forward: everything that crosses the gateway.
    let _ = writeln!(w, "\tchain forward {{");
    let _ = writeln!(
        w,
        "\t\ttype filter hook forward priority filter; policy drop;"
    );
    let _ = writeln!(w, "\t\tct state established,related accept");
    let _ = writeln!(w, "\t\tct state invalid counter drop comment \"invalid\"");
    // Port forwards: reachable only where an ingress rule opens the port, from outside and
    // (hairpin) from inside.
    for n in &d.nat_rules {
        for r in d
            .ingress_rules
            .iter()
            .filter(|r| r.protocol == n.protocol && r.ports.intersects(&n.ports))
        {
            let _ = writeln!(
                w,
                "\t\tct status dnat {}ip daddr {} {} {} counter accept comment \"{}/{}\"",
                net_match("saddr", &r.net),
                n.destination,
                l4(n.protocol, &n.ports),
                l4(r.protocol, &r.ports),
                n.id,
                r.id
            );
        }
    }
    let _ = writeln!(
        w,
        "\t\tiifname {lan} ip saddr {private} oifname {wan} jump egress"
    );
    let _ = writeln!(w, "\t\tcounter drop comment \"drop\"");
    let _ = writeln!(w, "\t}}");

    // --- egress: forwarded traffic from the private subnet to the public side.
    let _ = writeln!(w, "\tchain egress {{");
    let (verdict, fallback) = match d.egress_policy {
        Policy::Accept => ("drop", "accept"),
        Policy::Drop => ("accept", "drop"),
    };
    for r in &d.egress_rules {
        let _ = writeln!(
            w,
            "\t\t{}{} counter {verdict} comment \"{}\"",
            net_match("daddr", &r.net),
            l4(r.protocol, &r.ports),
            r.id
        );
    }
    let _ = writeln!(w, "\t\tcounter {fallback} comment \"egress-policy\"");
    let _ = writeln!(w, "\t}}");

    // --- NAT.
    let _ = writeln!(w, "\tchain prerouting {{");
    let _ = writeln!(
        w,
        "\t\ttype nat hook prerouting priority dstnat; policy accept;"
    );
    for n in &d.nat_rules {
        let _ = writeln!(
            w,
            "\t\tip daddr {vip} {} dnat ip to {} comment \"{}\"",
            l4(n.protocol, &n.ports),
            n.destination,
            n.id
        );
    }
    let _ = writeln!(w, "\t}}");
    let _ = writeln!(w, "\tchain postrouting {{");
    let _ = writeln!(
        w,
        "\t\ttype nat hook postrouting priority srcnat; policy accept;"
    );
    // Hairpin: a private host reaching a forward through the public VIP gets its reply back
    // through the gateway because the gateway becomes the source.
    let _ = writeln!(
        w,
        "\t\toifname {lan} ip saddr {private} ip daddr {private} ct status dnat snat ip to {private_vip} comment \"hairpin\""
    );
    let _ = writeln!(
        w,
        "\t\toifname {wan} ip saddr {private} snat ip to {vip} comment \"egress-snat\""
    );
    let _ = writeln!(w, "\t}}");
    let _ = writeln!(w, "}}");
    s
}
