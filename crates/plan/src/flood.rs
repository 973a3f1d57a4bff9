//! Flood protections of the public side, added to the `inet kawaii` table by [`crate::nft`]:
//! - SYN proxy: the SYN of a public TCP opening (ingress rule, port forward, router listener) is
//!   notracked in the raw hook and answered with a cookie by `synproxy` in a second input base
//!   chain; only a completed handshake creates a conntrack entry and reaches the backend. Port
//!   forwards are DNAT'd in the nat output hook, where synproxy's SYN to the backend leaves.
//! - per-source limits of ingress rules: `rate_limit` (dynamic set with a timeout and `limit
//!   rate over`) and `conn_limit` (dynamic set with `ct count over`), each drop counted under
//!   `<rule>/rate` or `<rule>/conn`;
//! - the conntrack guard: while the daemon observes the table past the public side's share, new
//!   public flows are dropped (`conntrack-guard`) and private egress keeps the rest.
//!
//! Each protection holds on the IPv6 VIPs too (their own rules, `ip6` matches, meters keyed by
//! IPv6 source); IPv6 openings of private hosts are routed, not proxied: they pass the guard
//! and the limits in `forward`.

use crate::nft::{Chain, Meter};
use kawaii_model::Desired;
use kawaii_model::valid::{Protocol, Rule};
use std::fmt::Write;

/// What synproxy advertises to clients on the backends' behalf: Ethernet's MSS, Linux's default
/// window scale, timestamps and SACK (all Linux backends accept these).
pub const SYNPROXY_OPTIONS: &str = "mss 1460 wscale 7 timestamp sack-perm";
/// How long a source's rate-limit state outlives its last new connection.
const RATE_TIMEOUT: &str = "1m";
/// Sources tracked per limited rule (the oldest are evicted by timeout).
const METER_SIZE: u32 = 65_535;
/// Only the first packet of a TCP handshake.
const SYN: &str = "tcp flags & (fin | syn | rst | ack) == syn";
/// The handshake's final ACK, which synproxy turns into a connection.
const ACK: &str = "tcp flags & (fin | syn | rst | ack) == ack";

/// The chains, meters, rules and sysctls the protections add; `None` parts add nothing.
#[derive(Debug, Default)]
pub struct Protections {
    /// Rules for the top of `input` (after established) and of `forward`.
    pub input_head: Vec<String>,
    pub forward_head: Vec<String>,
    /// New chains: `prerouting-raw`, `input-synproxy`, `limits`, `guard`, `output-nat`.
    pub chains: Vec<Chain>,
    pub meters: Vec<Meter>,
}

/// Merged TCP port ranges that synproxy answers for: the TCP ingress openings (which include
/// every reachable TCP forward) and the router's listeners. With connection sync (HA) the
/// forwarded ports are left out: conntrackd does not carry a proxied flow's sequence
/// adjustment, so a forward answered by synproxy stalls on failover (measured: 1.9 s, against
/// 0.3 s without the proxy); surviving a zone loss wins over the cookie there.
fn synproxy_ports(d: &Desired, router_ports: &[u16]) -> Vec<(u16, u16)> {
    let merged = openings(d, router_ports, false);
    if !synced(d) {
        return merged;
    }
    let forwarded: Vec<(u16, u16)> = d
        .nat_rules
        .iter()
        .filter(|n| n.protocol == Protocol::Tcp && n.destination.is_ipv4())
        .flat_map(|n| n.ports.0.iter().copied())
        .collect();
    subtract(&merged, &forwarded)
}

/// Whether flows are synced between the zones' instances (conntrackd).
fn synced(d: &Desired) -> bool {
    d.ha.as_ref().is_some_and(|h| h.conntrack_sync)
}

/// `spans` without any port in `remove`.
fn subtract(spans: &[(u16, u16)], remove: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = spans.to_vec();
    for &(rlo, rhi) in remove {
        out = out
            .into_iter()
            .flat_map(|(lo, hi)| {
                if rhi < lo || rlo > hi {
                    return vec![(lo, hi)];
                }
                let mut left = Vec::new();
                if rlo > lo {
                    left.push((lo, rlo - 1));
                }
                if rhi < hi {
                    left.push((rhi + 1, hi));
                }
                left
            })
            .collect();
    }
    out
}

/// The TCP openings and the router's listeners, merged.
fn openings(d: &Desired, router_ports: &[u16], v6: bool) -> Vec<(u16, u16)> {
    let family = |r: &&Rule| {
        if v6 {
            r.net.v6().is_some()
        } else {
            r.net.v4().is_some()
        }
    };
    let mut spans: Vec<(u16, u16)> = d
        .ingress_rules
        .iter()
        .filter(|r| r.protocol == Protocol::Tcp)
        .filter(family)
        .flat_map(|r| r.ports.0.iter().copied())
        .chain(router_ports.iter().map(|&p| (p, p)))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in spans {
        match merged.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn port_set(spans: &[(u16, u16)]) -> String {
    let items: Vec<String> = spans
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    match items.as_slice() {
        [one] => one.clone(),
        _ => format!("{{ {} }}", items.join(", ")),
    }
}

/// A rule's match in one family: source network, protocol, ports (None: the rule is of the
/// other family). `dual`: both families share the chain, so a whole family is named too.
fn rule_match(r: &Rule, v6: bool, dual: bool) -> Option<String> {
    let net = match (v6, r.net.v4(), r.net.v6()) {
        (false, Some(n), _) if n.prefix_len() == 0 && dual => "meta nfproto ipv4 ".into(),
        (false, Some(n), _) if n.prefix_len() == 0 => String::new(),
        (false, Some(n), _) => format!("ip saddr {n} "),
        (true, _, Some(n)) if n.prefix_len() == 0 => "meta nfproto ipv6 ".into(),
        (true, _, Some(n)) => format!("ip6 saddr {n} "),
        _ => return None,
    };
    let spans: Vec<(u16, u16)> = r.ports.0.clone();
    Some(format!(
        "{net}{} dport {}",
        r.protocol.as_str(),
        port_set(&spans)
    ))
}

/// A set name from a rule id (ids are operator-chosen; set names are identifiers).
fn meter_name(id: &str, what: &str) -> String {
    let slug: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{what}_{slug}")
}

/// One family's public side: its match on the VIPs held and the ports its SYN proxy answers.
struct Public {
    v6: bool,
    /// `iifname "wan0" ip daddr 203.0.113.10`
    public: String,
    /// `203.0.113.10` (or an anonymous set)
    vips: String,
    sp_ports: Option<String>,
}

/// Everything the protections add for a zone: `wan` is the quoted public interface, `vips`
/// the public VIPs this node holds (one address or an anonymous set), `vips6` the IPv6 ones.
pub fn plan(
    d: &Desired,
    wan: &str,
    vips: &str,
    vips6: Option<&str>,
    router_ports: &[u16],
    observed: &crate::Observed,
) -> Protections {
    let mut p = Protections::default();
    let proxied = |spans: Vec<(u16, u16)>| {
        (d.ingress.synproxy && !spans.is_empty()).then(|| port_set(&spans))
    };
    let mut families = vec![Public {
        v6: false,
        public: format!("iifname {wan} ip daddr {vips}"),
        vips: vips.to_string(),
        sp_ports: proxied(synproxy_ports(d, router_ports)),
    }];
    if let Some(vips6) = vips6 {
        families.push(Public {
            v6: true,
            public: format!("iifname {wan} ip6 daddr {vips6}"),
            vips: vips6.to_string(),
            sp_ports: proxied(openings(d, router_ports, true)),
        });
    }

    // The guard first: it holds for every new public flow, whatever rule would open it. The
    // chain is always there (engaging it patches one chain, keeping every counter); its drop
    // only while the daemon observes the table past the public share.
    let mut guard = Chain::new("guard", None);
    if observed.conntrack_pressure {
        guard.rule("counter drop comment \"conntrack-guard\"".into());
    }
    p.chains.push(guard);
    for Public {
        public, sp_ports, ..
    } in &families
    {
        p.input_head
            .push(format!("{public} ct state new jump guard"));
        if let Some(ports) = sp_ports {
            p.input_head.push(format!(
                "{public} tcp dport {ports} ct state invalid {ACK} jump guard"
            ));
        }
    }
    p.forward_head
        .push(format!("iifname {wan} ct state new jump guard"));

    // Per-source limits of the ingress rules, on the input path and (forwards without the
    // proxy) the forward path.
    let mut limits = Chain::new("limits", None);
    for (r, f) in d
        .ingress_rules
        .iter()
        .flat_map(|r| families.iter().map(move |f| (r, f)))
    {
        let Some(l) = d.ingress.limits.get(&r.id) else {
            continue;
        };
        let Some(m) = rule_match(r, f.v6, families.len() > 1) else {
            continue;
        };
        let proxied = r.protocol == Protocol::Tcp && f.sp_ports.is_some();
        // Meters and counters per family: `rate_ingress_1` / `ingress-1/rate`, and
        // `rate6_ingress_1` / `ingress-1/rate6`.
        let (saddr, six) = if f.v6 {
            ("ip6 saddr", "6")
        } else {
            ("ip saddr", "")
        };
        let (rate_kind, conn_kind) = (format!("rate{six}"), format!("conn{six}"));
        if let Some(rate) = l.rate {
            let name = meter_name(&r.id, &rate_kind);
            let first = match r.protocol {
                Protocol::Tcp => SYN,
                Protocol::Udp => "ct state new",
            };
            limits.rule(format!(
                "{m} {first} update @{name} {{ {saddr} limit rate over {}/{} burst {} packets }} counter drop comment \"{}/{rate_kind}\"",
                rate.count,
                rate.unit.as_str(),
                rate.burst,
                r.id
            ));
            p.meters.push(Meter {
                name,
                size: METER_SIZE,
                timeout: Some(RATE_TIMEOUT),
                v6: f.v6,
            });
        }
        if let Some(n) = l.conn {
            let name = meter_name(&r.id, &conn_kind);
            // Through the proxy the entry is born when the client's ACK completes the
            // handshake; a connection over the cap is reset there, never reaching the backend.
            let (when, verdict) = if proxied {
                (format!("ct state invalid {ACK}"), "reject with tcp reset")
            } else {
                ("ct state new".to_string(), "drop")
            };
            limits.rule(format!(
                "{m} {when} add @{name} {{ {saddr} ct count over {n} }} counter {verdict} comment \"{}/{conn_kind}\"",
                r.id
            ));
            p.meters.push(Meter {
                name,
                size: METER_SIZE,
                timeout: None,
                v6: f.v6,
            });
        }
    }
    if !limits.rules.is_empty() {
        p.chains.push(limits);
        for f in &families {
            p.input_head.push(format!("{} jump limits", f.public));
        }
        p.forward_head.push(format!("iifname {wan} jump limits"));
    }

    // Counters are named per family (`synproxy`, `synproxy6`).
    let proxied: Vec<(&str, &str, &str)> = families
        .iter()
        .filter_map(|f| {
            let suffix = if f.v6 { "6" } else { "" };
            Some((f.public.as_str(), f.sp_ports.as_deref()?, suffix))
        })
        .collect();
    if !proxied.is_empty() {
        let mut raw = Chain::new(
            "prerouting-raw",
            Some("type filter hook prerouting priority raw; policy accept;"),
        );
        // After `input` accepted the SYN (an opening, a forward, a listener): the cookie.
        let mut proxy = Chain::new(
            "input-synproxy",
            Some("type filter hook input priority 10; policy accept;"),
        );
        for (public, ports, suffix) in &proxied {
            // The handshake's ACK is "invalid" to conntrack (no entry, loose pickup off): it
            // goes on to the synproxy chain, which accepts only a valid cookie.
            p.input_head.push(format!(
                "{public} tcp dport {ports} ct state invalid accept"
            ));
            raw.rule(format!(
                "{public} tcp dport {ports} {SYN} notrack comment \"synproxy-notrack{suffix}\""
            ));
            proxy.rule(format!(
                "{public} tcp dport {ports} ct state invalid,untracked counter synproxy {SYNPROXY_OPTIONS} comment \"synproxy{suffix}\""
            ));
        }
        p.chains.push(raw);
        p.chains.push(proxy);
        // The SYN synproxy sends on to the backend leaves from this host, to the VIP: the
        // forwards' DNAT is repeated in the nat output hook.
        // The packets synproxy forges from this host, kept out of conntrack (see
        // `crate::synproxy`); the forged ACK of a forward is DNAT'd there too.
        let forged: Vec<crate::synproxy::Proxied> = families
            .iter()
            .filter_map(|f| {
                Some(crate::synproxy::Proxied {
                    family: if f.v6 { "ip6" } else { "ip" },
                    vips: &f.vips,
                    ports: f.sp_ports.as_deref()?,
                })
            })
            .collect();
        let mut out = Chain::new(
            "output-nat",
            Some("type nat hook output priority -100; policy accept;"),
        );
        // (With connection sync the forwards are not proxied: nothing to repeat; nor when
        // IPv4 has nothing proxied.)
        let proxied = !synced(d) && families[0].sp_ports.is_some();
        let mut forwards = Vec::new();
        for n in d
            .nat_rules
            .iter()
            .filter(|n| proxied && n.protocol == Protocol::Tcp && n.destination.is_ipv4())
        {
            let spans = n.ports.0.clone();
            let mut rule = String::new();
            let _ = write!(
                rule,
                "ip daddr {vips} tcp dport {} dnat ip to {} comment \"{}\"",
                port_set(&spans),
                n.destination,
                n.id
            );
            out.rule(rule);
            forwards.push((port_set(&spans), n.destination.to_string(), n.id.clone()));
        }
        p.chains
            .push(crate::synproxy::output_raw(&forged, &forwards));
        if !out.rules.is_empty() {
            p.chains.push(out);
        }
    }
    p
}

/// The conntrack sysctls: loose pickup off for synproxy (it must see the handshake), and the
/// table's size when configured. `ipv6`: the zone has an IPv6 VIP (its openings are proxied).
pub fn sysctls(d: &Desired, router_ports: &[u16], ipv6: bool) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let proxied6 = ipv6 && !openings(d, router_ports, true).is_empty();
    if d.ingress.synproxy && (!synproxy_ports(d, router_ports).is_empty() || proxied6) {
        out.push(("net.netfilter.nf_conntrack_tcp_loose", "0".to_string()));
    }
    if let Some(max) = d.ingress.conntrack_max {
        out.push(("net.netfilter.nf_conntrack_max", max.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_openings_merge_into_one_port_set() {
        let d = kawaii_model::validate(
            &kawaii_model::Gateway::parse(
                r#"
                [[ingress_rules]]
                ports = "22,80-90"
                [[ingress_rules]]
                source = "192.0.2.0/24"
                ports = "85-100,101"
                [[ingress_rules]]
                protocol = "udp"
                ports = "53"
                "#,
                kawaii_model::Format::Toml,
            )
            .expect("parse"),
        )
        .expect("valid")
        .desired;
        assert_eq!(
            synproxy_ports(&d, &[443]),
            [(22, 22), (80, 101), (443, 443)]
        );
        assert_eq!(port_set(&synproxy_ports(&d, &[])), "{ 22, 80-101 }");
    }

    #[test]
    fn with_connection_sync_forwarded_ports_are_not_proxied() {
        assert_eq!(
            subtract(&[(22, 22), (80, 101)], &[(85, 90), (22, 22)]),
            [(80, 84), (91, 101)]
        );
        assert_eq!(subtract(&[(80, 90)], &[(70, 95)]), []);
        let text = |sync: &str| {
            format!(
                r#"{}
                [ha]
                conntrack_sync = {sync}
                [[ingress_rules]]
                ports = "22,8080"
                [[nat_rules]]
                destination = "10.1.0.10"
                ports = "8080"
                "#,
                kawaii_testkit::configs::one_zone("acme", r#"private_address = "10.1.0.251""#)
            )
        };
        let ports = |sync: &str| {
            let g = kawaii_model::Gateway::parse(&text(sync), kawaii_model::Format::Toml)
                .expect("parse");
            let d = kawaii_model::validate(&g).expect("valid").desired;
            synproxy_ports(&d, &[])
        };
        assert_eq!(ports("true"), [(22, 22)]);
        assert_eq!(ports("false"), [(22, 22), (8080, 8080)]);
    }
}

/// Whether the conntrack guard is engaged after a reading of `count` public-side-capable
/// entries against `cap`: it engages at the cap and releases once the table drained below 90 %
/// of it, so that it does not flap at the boundary.
pub fn pressure(engaged: bool, count: u64, cap: u64) -> bool {
    if engaged {
        count * 10 >= cap * 9
    } else {
        count >= cap
    }
}

#[cfg(test)]
mod pressure_tests {
    #[test]
    fn hysteresis() {
        use super::pressure;
        assert!(!pressure(false, 99, 100));
        assert!(pressure(false, 100, 100));
        assert!(pressure(true, 90, 100));
        assert!(!pressure(true, 89, 100));
    }
}

#[cfg(test)]
mod guard_tests {
    use crate::Observed;

    #[test]
    fn engaging_the_guard_patches_one_chain() {
        let d = kawaii_model::validate(
            &kawaii_model::Gateway::parse(
                &(kawaii_testkit::configs::one_zone("acme", "")
                    + "[[ingress_rules]]\nports = \"80\"\n"),
                kawaii_model::Format::Toml,
            )
            .expect("parse"),
        )
        .expect("valid")
        .desired;
        let z = &d.zones[0];
        let calm = crate::nft::render(&d, z, &Observed::default());
        let pressed = crate::nft::render(
            &d,
            z,
            &Observed {
                conntrack_pressure: true,
                ..Observed::default()
            },
        );
        let patch = pressed.patch_from(&calm).expect("same layout");
        assert_eq!(
            patch,
            "flush chain inet kawaii guard\ntable inet kawaii {\n\tchain guard {\n\t\tcounter drop comment \"conntrack-guard\"\n\t}\n}\n"
        );
    }
}
