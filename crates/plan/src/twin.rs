//! An office on our own private subnet (a "twin": both sides on 10.1.0.0/24), reached through
//! aliases on both sides: our hosts address the office at `remote_alias`, the office sees us at
//! `local_alias`, and the gateway translates both ways (`netmap`).
//!
//! The translation alone does not route: kernel-libipsec has charon install the office's real
//! subnet, which is ours, into its TUN device in table 220, consulted before the main table.
//! So the gateway steers by a mark instead of by destination:
//! - a packet from the private side addressed to a twin's `remote_alias` (a flow of ours to the
//!   office, or our host's answer to one of the office's flows) is marked before routing
//!   (`prerouting`, priority mangle: before the alias is translated to the office's address);
//! - [`MARK_PRIORITY`]: marked packets look up charon's table ([`CHARON_TABLE`]), whose route
//!   for the office's real subnet leads into the tunnel;
//! - [`OWN_PRIORITY`]: every other packet to our private subnet looks up the main table before
//!   charon's rule is reached: the LAN stays the LAN.

use crate::net::RuleEntry;
use ipnet::{IpNet, Ipv4Net};
use kawaii_model::Desired;
use kawaii_model::valid::{IpsecSpec, nets_overlap};
use std::fmt::Write;

/// The routing table charon (kernel-netlink, kernel-libipsec) installs its routes in, and the
/// priority of its own rule; kawaii's charon config names both.
pub const CHARON_TABLE: u32 = 220;
pub const CHARON_PRIORITY: u32 = 220;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;
/// The packet mark of traffic to a twin office (`0x6b61`: "ka").
pub const MARK: u32 = 0x6b61;
/// Marked packets: charon's table.
pub const MARK_PRIORITY: u32 = 218;
/// Our own private subnet: the main table, ahead of charon's rule.
pub const OWN_PRIORITY: u32 = 219;

/// The connections whose office is on (or overlaps) our private subnet. Validation lets one
/// through only with both aliases.
pub fn twins(d: &Desired) -> impl Iterator<Item = &IpsecSpec> {
    let private = d.private_subnet;
    d.ipsec.iter().filter(
        move |c| matches!((c.remote_subnet, private), (Some(r), Some(p)) if nets_overlap(&r, &p)),
    )
}

/// The policy rules: none without a twin office.
pub fn rules(d: &Desired) -> Vec<RuleEntry> {
    let Some(private) = d.private_subnet.filter(|_| twins(d).next().is_some()) else {
        return Vec::new();
    };
    vec![
        RuleEntry {
            priority: MARK_PRIORITY,
            fwmark: Some(MARK),
            to: None,
            table: CHARON_TABLE,
        },
        RuleEntry {
            priority: OWN_PRIORITY,
            fwmark: None,
            to: Some(IpNet::V4(private)),
            table: MAIN_TABLE,
        },
    ]
}

/// The `steer` base chain's rules (prerouting, priority mangle): the mark on what the private
/// side sends to a twin's alias. None without a twin office.
pub fn steer(d: &Desired, lan: &str) -> Option<Vec<String>> {
    let aliases: Vec<Ipv4Net> = twins(d).filter_map(|c| c.remote_alias).collect();
    if aliases.is_empty() {
        return None;
    }
    let mut set = String::new();
    for (i, a) in aliases.iter().enumerate() {
        let _ = write!(set, "{}{a}", if i > 0 { ", " } else { "" });
    }
    Some(vec![format!(
        "iifname {lan} ip daddr {{ {set} }} meta mark set {MARK:#x} comment \"twin-steer\""
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kawaii_testkit::office::DEFAULT_PHASE;

    fn desired(remote_subnet: &str) -> Desired {
        let office = kawaii_testkit::office::ipsec_conn_toml(
            "Twin",
            "198.51.100.8",
            remote_subnet,
            "twin-psk-from-your-vault",
            (DEFAULT_PHASE, DEFAULT_PHASE),
            "remote_alias = \"10.93.0.0/24\"\nlocal_alias = \"10.73.0.0/24\"",
        );
        let toml = format!("{}{office}", kawaii_testkit::configs::zones(1, ""));
        let g = kawaii_model::Gateway::parse(&toml, kawaii_model::Format::Toml).expect("toml");
        kawaii_model::validate(&g).expect("valid").desired
    }

    #[test]
    fn a_twin_office_is_steered_by_mark_and_our_subnet_stays_on_the_main_table() {
        let d = desired("10.1.0.0/24");
        let text: Vec<String> = rules(&d).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "priority 218 fwmark 0x6b61 lookup 220",
                "priority 219 to 10.1.0.0/24 lookup 254"
            ]
        );
        assert_eq!(
            steer(&d, "\"lan0\"").expect("a twin"),
            [
                "iifname \"lan0\" ip daddr { 10.93.0.0/24 } meta mark set 0x6b61 comment \"twin-steer\""
            ]
        );
        // An office elsewhere needs neither.
        let d = desired("192.168.1.0/24");
        assert!(rules(&d).is_empty() && steer(&d, "\"lan0\"").is_none());
    }
}
