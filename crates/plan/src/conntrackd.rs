//! Connection-state sync between the zones' instances: the conntrackd this node runs, so the
//! flows (NAT bindings included) of a zone live in every sibling's kernel table before a VIP
//! moves. Two zones: FTFW over UDP unicast to the sibling (FTFW keeps one receive sequence per
//! node, so it is a two-node protocol); three or more: NOTRACK over multicast. Peers' flows go
//! straight into the kernel (`DisableExternalCache on`), so a takeover needs no commit.

use kawaii_model::Desired;
use kawaii_model::valid::ZoneSpec;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The version of the sync settings below (transport, port, group, modes): the instances of a
/// gateway must agree on them, so a release that changes them bumps this, and keeps rendering
/// the previous settings while a sibling still speaks them (rolling upgrades; conntrackd's own
/// messages carry conntrackd's protocol version). Rendered at the top of `conntrackd.conf`.
pub const SETTINGS_VERSION: u8 = 1;

/// UDP port of the sync (unicast and multicast alike).
pub const SYNC_PORT: u16 = 3780;
/// Multicast group of the sync with three or more zones (the firewall admits the siblings only).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(225, 0, 0, 50);
/// conntrackd's cache limit: twice the kernel's largest usual `nf_conntrack_max` (524288), well
/// above conntrackd's default of 131072, which would silently stop syncing on a busy gateway.
pub const HASH_LIMIT: u32 = 1_048_576;

/// How the states travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Transport {
    /// FTFW (reliable: sequence numbers, ACK/NACK, resend) over UDP to the one sibling.
    Unicast { peer: Ipv4Addr },
    /// NOTRACK over multicast to every sibling.
    Multicast { group: Ipv4Addr },
}

/// What the conntrackd driver makes true on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncPlan {
    /// Where the sync runs: `[ha] sync_interface`, else the private interface.
    pub interface: String,
    /// This instance's own private address (the sync's source).
    pub source: Ipv4Addr,
    /// The siblings' private addresses: the only sources the firewall admits.
    pub siblings: Vec<Ipv4Addr>,
    pub transport: Transport,
    /// Flows whose original or reply source is one of these are the gateway's own and are not
    /// synced: loopback, every zone's VIPs, every instance's own addresses, the VPN address, in
    /// both families (IPv4 first). Never the private subnet: egress flows are sourced there. The
    /// filter runs in userspace: conntrackd's kernel-side filter also matches the original
    /// destination, so ignoring the VIPs there drops every port-forwarded flow (measured with
    /// conntrack-tools 1.4.7).
    pub ignore: Vec<IpAddr>,
    /// The zones whose IPv4 VIPs this node holds now (a zone gained is a takeover: the driver
    /// puts the flows it injected into its own cache, so a sibling that returns gets them back).
    pub held_zones: BTreeSet<String>,
    /// The zones whose IPv6 VIPs this node holds now: a zone's IPv6 virtual router moves on its
    /// own (it starts after DAD, and may fail over apart), and its takeover is one too.
    pub held_zones6: BTreeSet<String>,
}

/// The sync this node runs, or None (no HA, `conntrack_sync = false`, or no siblings).
pub fn plan(d: &Desired, z: &ZoneSpec, observed: &crate::Observed) -> Option<SyncPlan> {
    let ha = d.ha.as_ref().filter(|h| h.conntrack_sync)?;
    let source = z.private_address?;
    let siblings = crate::vrrp::siblings(d, z);
    let transport = match siblings.as_slice() {
        [] => return None,
        [peer] => Transport::Unicast { peer: *peer },
        _ => Transport::Multicast {
            group: MULTICAST_GROUP,
        },
    };
    let mut ignore: BTreeSet<IpAddr> =
        BTreeSet::from([Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]);
    for s in &d.zones {
        let v4 = [s.public_vip.addr(), s.private_vip.addr()];
        let v4 = v4
            .into_iter()
            .chain(s.public_address)
            .chain(s.private_address);
        ignore.extend(v4.map(IpAddr::V4));
        let vips6 = [s.public_vip6, s.private_vip6].map(|v| v.map(|n| n.addr()));
        // The shared link-local VIP only where the zone routes IPv6.
        let link_local = s.private_vip6.map(|_| s.link_local_vip6);
        let v6 = vips6.into_iter().flatten().chain(link_local);
        let v6 = v6.chain(s.public_address6).chain(s.private_address6);
        ignore.extend(v6.map(IpAddr::V6));
    }
    if let Some(w) = &d.wireguard {
        ignore.insert(w.address.addr().into());
        ignore.extend(w.address6.map(|a| IpAddr::V6(a.addr())));
    }
    Some(SyncPlan {
        interface: ha
            .sync_interface
            .clone()
            .unwrap_or_else(|| z.private_interface.clone()),
        source,
        siblings,
        transport,
        ignore: ignore.into_iter().collect(),
        held_zones: crate::vrrp::owned(d, z, observed)
            .into_iter()
            .map(|s| s.name.clone())
            .collect(),
        held_zones6: crate::vrrp::owned6(d, z, observed)
            .into_iter()
            .filter(|s| s.private_vip6.is_some() || s.public_vip6.is_some())
            .map(|s| s.name.clone())
            .collect(),
    })
}

/// Paths of the daemon's files, under the driver's directory.
pub fn lock_path(dir: &str) -> String {
    format!("{dir}/conntrackd.lock")
}

/// The UNIX socket the conntrackd client commands (`-s`, `-n`, `-R`, `-B`) talk to.
pub fn socket_path(dir: &str) -> String {
    format!("{dir}/conntrackd.ctl")
}

/// `conntrackd.conf` for this plan; `dir` holds its lock file, socket and log.
pub fn render(p: &SyncPlan, dir: &str) -> String {
    let mut out = format!(
        "# Written by kawaii for the conntrackd it runs; rewritten (and conntrackd restarted) when it changes.\n# kawaii conntrack-sync settings v{SETTINGS_VERSION}\nSync {{\n",
    );
    let source = p.source;
    let dev = &p.interface;
    match &p.transport {
        Transport::Unicast { peer } => {
            out.push_str(
                "    Mode FTFW {\n        DisableExternalCache on\n        StartupResync on\n        ResendQueueSize 131072\n        ACKWindowSize 300\n    }\n",
            );
            let _ = write!(
                out,
                "    UDP {{\n        IPv4_address {source}\n        IPv4_Destination_Address {peer}\n        Port {SYNC_PORT}\n        Interface {dev}\n        SndSocketBuffer 24985600\n        RcvSocketBuffer 24985600\n        Checksum on\n    }}\n"
            );
        }
        Transport::Multicast { group } => {
            out.push_str(
                "    Mode NOTRACK {\n        DisableExternalCache on\n        StartupResync on\n    }\n",
            );
            let _ = write!(
                out,
                "    Multicast {{\n        IPv4_address {group}\n        Group {SYNC_PORT}\n        IPv4_interface {source}\n        Interface {dev}\n        SndSocketBuffer 24985600\n        RcvSocketBuffer 24985600\n        Checksum on\n    }}\n"
            );
        }
    }
    out.push_str("    Options {\n        TCPWindowTracking off\n    }\n}\n");
    let _ = write!(
        out,
        "General {{\n    HashSize 65536\n    HashLimit {HASH_LIMIT}\n    LogFile {dir}/conntrackd.log\n    Syslog off\n    LockFile {}\n    UNIX {{\n        Path {}\n    }}\n    NetlinkBufferSize 16777216\n    NetlinkBufferSizeMaxGrowth 134217728\n    NetlinkEventsReliable on\n    NetlinkOverrunResync off\n    Filter From Userspace {{\n        Protocol Accept {{\n            TCP\n            UDP\n        }}\n        Address Ignore {{\n",
        lock_path(dir),
        socket_path(dir)
    );
    for a in &p.ignore {
        let family = if a.is_ipv4() { "IPv4" } else { "IPv6" };
        let _ = writeln!(out, "            {family}_address {a}");
    }
    out.push_str("        }\n    }\n}\n");
    out
}

/// The nftables rule (in the `services` chain) that admits the sync from the siblings only.
pub fn nft_rule(p: &SyncPlan) -> String {
    let s: Vec<String> = p.siblings.iter().map(ToString::to_string).collect();
    format!(
        "iifname \"{}\" ip saddr {{ {} }} udp dport {SYNC_PORT} counter accept comment \"conntrack-sync\"",
        p.interface.replace('"', ""),
        s.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(n: usize, ha: &str) -> Desired {
        let toml = kawaii_testkit::configs::zones(n, ha);
        let g = kawaii_model::Gateway::parse(&toml, kawaii_model::Format::Toml).expect("toml");
        kawaii_model::validate(&g).expect("valid").desired
    }

    #[test]
    fn two_zones_use_ftfw_unicast_to_the_sibling() {
        let d = desired(2, "");
        let p = plan(&d, &d.zones[0], &crate::Observed::default()).expect("sync on by default");
        assert_eq!(
            p.transport,
            Transport::Unicast {
                peer: "10.1.0.101".parse().expect("ip")
            }
        );
        let text = render(&p, "/st");
        assert!(text.contains("Mode FTFW"), "{text}");
        assert!(
            text.contains("IPv4_Destination_Address 10.1.0.101"),
            "{text}"
        );
        assert!(text.contains("LockFile /st/conntrackd.lock"), "{text}");
        assert!(text.contains("Path /st/conntrackd.ctl"), "{text}");
    }

    #[test]
    fn three_zones_use_notrack_multicast() {
        let d = desired(3, "");
        let p = plan(&d, &d.zones[1], &crate::Observed::default()).expect("sync");
        assert!(matches!(p.transport, Transport::Multicast { .. }));
        let text = render(&p, "/st");
        assert!(text.contains("Mode NOTRACK"), "{text}");
        assert!(!text.contains("FTFW"), "{text}");
        assert!(
            nft_rule(&p).contains("ip saddr { 10.1.0.100, 10.1.0.102 } udp dport 3780"),
            "{}",
            nft_rule(&p)
        );
    }

    #[test]
    fn the_private_subnet_is_never_ignored() {
        let d = desired(2, "");
        let p = plan(&d, &d.zones[0], &crate::Observed::default()).expect("sync");
        // Every VIP and instance address, loopback; no network, no private host.
        assert!(p.ignore.contains(&"10.1.0.1".parse().expect("ip")));
        assert!(p.ignore.contains(&"203.0.113.11".parse().expect("ip")));
        assert!(p.ignore.contains(&"10.1.0.100".parse().expect("ip")));
        assert!(!p.ignore.contains(&"10.1.0.0".parse().expect("ip")));
        assert!(!render(&p, "/st").contains("/24"));
    }

    /// A dual-stack gateway's own IPv6 addresses are ignored like its IPv4 ones: the VIPs, the
    /// shared link-local VIP and the instances' fixed addresses; never the routed prefix.
    #[test]
    fn a_dual_stack_gateways_own_ipv6_addresses_are_ignored() {
        let text = include_str!("../testdata/ha/two-zones-dual-stack/config.toml");
        let g = kawaii_model::Gateway::parse(text, kawaii_model::Format::Toml).expect("parses");
        let d = kawaii_model::validate(&g).expect("valid").desired;
        let p = plan(&d, &d.zones[0], &crate::Observed::default()).expect("sync");
        let text = render(&p, "/st");
        for z in &d.zones {
            for vip in [z.public_vip6, z.private_vip6].into_iter().flatten() {
                assert!(
                    text.contains(&format!("IPv6_address {}\n", vip.addr())),
                    "{text}"
                );
            }
        }
        assert!(text.contains("IPv6_address fe80::1\n") && text.contains("IPv6_address ::1\n"));
        let net = d.private_subnet6.expect("dual stack").network();
        assert!(!text.contains(&format!("IPv6_address {net}\n")), "{text}");
    }

    /// A zone is held per family: its IPv6 virtual router moves on its own, and taking it is a
    /// takeover the driver acts on; an IPv4-only gateway holds no zone by IPv6.
    #[test]
    fn zones_are_held_per_family() {
        let text = include_str!("../testdata/ha/two-zones-dual-stack/config.toml");
        let g = kawaii_model::Gateway::parse(text, kawaii_model::Format::Toml).expect("parses");
        let d = kawaii_model::validate(&g).expect("valid").desired;
        let names = |z: &[&str]| z.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let observed = crate::Observed {
            vip_zones: Some(names(&["zone-a", "zone-b"])),
            vip6_zones: Some(names(&["zone-b"])),
            ..crate::Observed::default()
        };
        let p = plan(&d, &d.zones[1], &observed).expect("sync");
        assert_eq!(p.held_zones, names(&["zone-a", "zone-b"]));
        assert_eq!(p.held_zones6, names(&["zone-b"]));
        let d = desired(2, "");
        let p = plan(&d, &d.zones[0], &crate::Observed::default()).expect("sync");
        assert_eq!(p.held_zones, names(&[&d.zones[0].name]));
        assert!(p.held_zones6.is_empty());
    }

    #[test]
    fn off_without_ha_or_when_disabled() {
        let d = desired(1, "");
        assert!(plan(&d, &d.zones[0], &crate::Observed::default()).is_none());
        let d = desired(2, "[ha]\nconntrack_sync = false\n");
        assert!(plan(&d, &d.zones[0], &crate::Observed::default()).is_none());
        let d = desired(2, "[ha]\nsync_interface = \"sync0\"\n");
        let p = plan(&d, &d.zones[0], &crate::Observed::default()).expect("sync");
        assert_eq!(p.interface, "sync0");
        assert!(nft_rule(&p).starts_with("iifname \"sync0\""));
    }
}
