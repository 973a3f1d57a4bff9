//! The swanctl connections kawaii loads into its charon: one IKEv2 connection with one CHILD
//! SA per `[[ipsec]]` entry, from the zone's public VIP of the remote peer's family
//! (`public_vip` or `public_vip6`) to the remote peer, tunnelling the private subnet (or its
//! local alias) to the office's IPv4 subnet and `private_subnet6` to its IPv6 subnet: one pair
//! of selectors per family the office has, in one CHILD SA. Pure; the PSK itself never appears
//! in what renders.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kawaii_model::Desired;
use kawaii_model::Secret;
use kawaii_model::valid::{DpdAction, Encryption, Integrity, IpsecSpec, StartAction, ZoneSpec};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

/// One connection as charon gets it over VICI (`load-conn` + `load-shared`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// Safe identifier ([`crate::ipsec_id`]): the IKE and CHILD config name in charon.
    pub id: String,
    /// The operator's name, any UTF-8.
    pub name: String,
    pub local_addrs: Vec<IpAddr>,
    pub remote_addrs: Vec<IpAddr>,
    /// IKE identities: the addresses themselves.
    pub local_id: String,
    pub remote_id: String,
    /// Per family the office has, in the same order: IPv4 first, then IPv6.
    pub local_ts: Vec<IpNet>,
    pub remote_ts: Vec<IpNet>,
    /// Overlapping subnets: how the office sees our private subnet (then `local_ts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_alias: Option<Ipv4Net>,
    /// Overlapping subnets: how our hosts see the office's subnet (`remote_ts` is the real one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_alias: Option<Ipv4Net>,
    /// IKE (phase 1) proposals, strongSwan syntax: `aes256-sha512-modp2048`.
    pub proposals: Vec<String>,
    /// ESP (phase 2) proposals with the PFS group: `aes256-sha512-modp2048`.
    pub esp_proposals: Vec<String>,
    /// IKE SA: rekey after `rekey_time` seconds; hard end `over_time` seconds later.
    pub rekey_time: u64,
    pub over_time: u64,
    /// CHILD SA: rekey after `child_rekey_time` seconds; expires at `child_life_time`.
    pub child_rekey_time: u64,
    pub child_life_time: u64,
    /// Dead peer detection interval in seconds and what to do with a dead peer's CHILD SA.
    pub dpd_delay: u64,
    pub dpd_action: &'static str,
    /// What the operator asked for: `none`, `trap` or `start`. The driver says in its status
    /// how it honours it (kernel-libipsec cannot trap; it initiates instead).
    pub start_action: &'static str,
    pub psk: PskSource,
}

/// Where the PSK comes from. Renders as its kind only (`{"kind": "inline"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PskSource {
    Inline {
        #[serde(skip)]
        secret: Secret,
    },
    File {
        path: String,
    },
}

/// strongSwan's keyword for an IANA DH group number (RFC 3526, RFC 5114, RFC 5903), or None
/// for a group kawaii does not accept.
pub fn dh_name(group: u32) -> Option<&'static str> {
    Some(match group {
        2 => "modp1024",
        5 => "modp1536",
        14 => "modp2048",
        15 => "modp3072",
        16 => "modp4096",
        17 => "modp6144",
        18 => "modp8192",
        19 => "ecp256",
        20 => "ecp384",
        21 => "ecp521",
        22 => "modp1024s160",
        23 => "modp2048s224",
        24 => "modp2048s256",
        _ => return None,
    })
}

pub fn integrity_name(i: Integrity) -> &'static str {
    match i {
        Integrity::Sha1 => "sha1",
        Integrity::Sha256 => "sha256",
        Integrity::Sha384 => "sha384",
        Integrity::Sha512 => "sha512",
    }
}

pub fn encryption_name(e: Encryption) -> &'static str {
    match e {
        Encryption::Aes128 => "aes128",
        Encryption::Aes256 => "aes256",
        Encryption::Camellia128 => "camellia128",
        Encryption::Camellia256 => "camellia256",
    }
}

fn proposal(p: &kawaii_model::valid::Phase) -> String {
    // Validation admits only groups in DH_GROUPS, all of which map.
    let dh = dh_name(p.dh_group).unwrap_or("modp2048");
    format!(
        "{}-{}-{dh}",
        encryption_name(p.encryption),
        integrity_name(p.integrity)
    )
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// The local ends of a connection's selectors: our IPv4 private subnet and `private_subnet6`.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    pub private: Option<Ipv4Net>,
    pub private6: Option<Ipv6Net>,
}

/// The selector pairs (local, remote) of `c`, one per family both sides have: IPv4 first.
/// Aliases: the office sees our subnet as the local alias and keeps its real subnet; the gateway
/// translates both (see [`crate::netmap`]). IPv6 is never translated.
pub fn selectors(c: &IpsecSpec, local: Local) -> Vec<(IpNet, IpNet)> {
    let v4 = c
        .remote_subnet
        .zip(local.private)
        .map(|(r, p)| (IpNet::V4(c.local_alias.unwrap_or(p)), IpNet::V4(r)));
    let v6 = c
        .remote_subnet6
        .zip(local.private6)
        .map(|(r, p)| (IpNet::V6(p), IpNet::V6(r)));
    v4.into_iter().chain(v6).collect()
}

/// One connection for one `[[ipsec]]` entry, from `vip` (of the remote peer's family) and the
/// local subnets.
pub fn connection(c: &IpsecSpec, vip: IpAddr, local: Local) -> Connection {
    let ike_life = secs(c.phase1.lifetime);
    // The IKE SA is rekeyed at 90% of its lifetime; the rest is the margin before it ends.
    let over_time = (ike_life / 10).max(1);
    let ts = selectors(c, local);
    Connection {
        id: crate::ipsec_id(&c.name),
        name: c.name.clone(),
        local_addrs: vec![vip],
        remote_addrs: vec![c.remote_peer],
        local_id: vip.to_string(),
        remote_id: c.remote_peer.to_string(),
        local_ts: ts.iter().map(|t| t.0).collect(),
        remote_ts: ts.iter().map(|t| t.1).collect(),
        local_alias: c.local_alias,
        remote_alias: c.remote_alias,
        proposals: vec![proposal(&c.phase1)],
        esp_proposals: vec![proposal(&c.phase2)],
        rekey_time: ike_life.saturating_sub(over_time).max(1),
        over_time,
        child_rekey_time: secs(c.rekey),
        child_life_time: secs(c.phase2.lifetime),
        // IKEv2 has no DPD timeout of its own: a probe every quarter of the timeout, and
        // charon's retransmissions declare the peer dead.
        dpd_delay: (secs(c.dpd_timeout) / 4).max(1),
        dpd_action: match c.dpd_action {
            DpdAction::Clear => "clear",
            DpdAction::Trap => "trap",
            DpdAction::Restart => "restart",
        },
        start_action: match c.start_action {
            StartAction::None => "none",
            StartAction::Trap => "trap",
            StartAction::Start => "start",
        },
        psk: match &c.psk {
            kawaii_model::valid::PskSource::Inline(s) => PskSource::Inline { secret: s.clone() },
            kawaii_model::valid::PskSource::File(p) => PskSource::File { path: p.clone() },
        },
    }
}

/// The zone whose public VIP terminates `c`: the one it names, else the first.
pub fn home<'a>(d: &'a Desired, c: &IpsecSpec) -> Option<&'a ZoneSpec> {
    match &c.zone {
        Some(name) => d.zones.iter().find(|z| &z.name == name),
        None => d.zones.first(),
    }
}

/// The public VIP of `home` that talks to `c`'s peer: of the peer's family (validation makes
/// sure an IPv6 peer's zone has `public_vip6`).
pub fn local_vip(c: &IpsecSpec, home: &ZoneSpec) -> Option<IpAddr> {
    match c.remote_peer {
        IpAddr::V4(_) => Some(IpAddr::V4(home.public_vip.addr())),
        IpAddr::V6(_) => home.public_vip6.map(|v| IpAddr::V6(v.addr())),
    }
}

/// Whether this node terminates `c`: it holds the public VIP of `c`'s home zone in the family
/// of `c`'s remote peer (the tunnel's outer family; the IPv4 and IPv6 virtual routers are
/// elected apart, so during a failover, or with a foreign VRRP peer in one family, the two
/// holders can differ). The tunnel, its routes and its alias translation all follow this.
pub fn terminated_here(
    d: &Desired,
    z: &ZoneSpec,
    observed: &crate::Observed,
    c: &IpsecSpec,
) -> bool {
    let Some(home) = home(d, c) else {
        return false;
    };
    let held = match c.remote_peer {
        IpAddr::V4(_) => crate::vrrp::owned(d, z, observed),
        IpAddr::V6(_) => crate::vrrp::owned6(d, z, observed),
    };
    held.iter().any(|o| o.name == home.name)
}

/// Every connection this node must load: those whose home zone's VIPs it holds (with HA the
/// holder changes on failover, and the new one initiates), from that zone's public VIP. A
/// connection with no selector pair (no local subnet of the office's families) is left out.
pub fn plan(d: &Desired, z: &ZoneSpec, observed: &crate::Observed) -> Vec<Connection> {
    let local = Local {
        private: d.private_subnet,
        private6: d.private_subnet6,
    };
    d.ipsec
        .iter()
        .filter_map(|c| {
            let home = home(d, c).filter(|_| terminated_here(d, z, observed, c))?;
            let conn = connection(c, local_vip(c, home)?, local);
            (!conn.local_ts.is_empty()).then_some(conn)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kawaii_model::valid::{DH_GROUPS, Phase};

    #[test]
    fn every_accepted_dh_group_maps() {
        let table = [
            (2, "modp1024"),
            (5, "modp1536"),
            (14, "modp2048"),
            (15, "modp3072"),
            (16, "modp4096"),
            (17, "modp6144"),
            (18, "modp8192"),
            (19, "ecp256"),
            (20, "ecp384"),
            (21, "ecp521"),
            (22, "modp1024s160"),
            (23, "modp2048s224"),
            (24, "modp2048s256"),
        ];
        assert_eq!(
            table.iter().map(|t| t.0).collect::<Vec<_>>(),
            DH_GROUPS,
            "the table covers exactly the accepted groups"
        );
        for (n, name) in table {
            assert_eq!(dh_name(n), Some(name), "group {n}");
        }
        for n in [0, 1, 3, 4, 6, 13, 25, 31] {
            assert_eq!(dh_name(n), None, "group {n}");
        }
    }

    #[test]
    fn every_algorithm_maps() {
        let integ = [
            (Integrity::Sha1, "sha1"),
            (Integrity::Sha256, "sha256"),
            (Integrity::Sha384, "sha384"),
            (Integrity::Sha512, "sha512"),
        ];
        let enc = [
            (Encryption::Aes128, "aes128"),
            (Encryption::Aes256, "aes256"),
            (Encryption::Camellia128, "camellia128"),
            (Encryption::Camellia256, "camellia256"),
        ];
        for (i, iname) in integ {
            for (e, ename) in enc {
                for &g in DH_GROUPS {
                    let p = Phase {
                        dh_group: g,
                        integrity: i,
                        encryption: e,
                        lifetime: Duration::from_secs(3600),
                    };
                    let want = format!("{ename}-{iname}-{}", dh_name(g).expect("mapped"));
                    assert_eq!(proposal(&p), want);
                }
            }
        }
    }

    #[test]
    fn seed_connection_renders_without_the_psk() {
        let ipsec = r#"
[[ipsec]]
name = "ACME Office"
pre_shared_key = "never-shown-anywhere"
remote_peer = "198.51.100.8"
remote_subnet = "172.16.1.0/24"
phase1_dh_group_number = 14
phase1_integrity_algorithm = "SHA512"
phase1_encryption_algorithm = "AES256"
phase2_dh_group_number = 5
phase2_integrity_algorithm = "SHA1"
phase2_encryption_algorithm = "CAMELLIA128"
"#;
        let text = kawaii_testkit::configs::one_zone("acme", "") + ipsec;
        let g = kawaii_model::Gateway::parse(&text, kawaii_model::Format::Toml).expect("parses");
        let d = kawaii_model::validate(&g).expect("valid").desired;
        let p = crate::plan(&d, None).expect("plan");
        assert_eq!(p.ipsec.len(), 1);
        let c = &p.ipsec[0];
        assert_eq!(c.id, crate::ipsec_id("ACME Office"));
        assert_eq!(c.proposals, vec!["aes256-sha512-modp2048"]);
        assert_eq!(c.esp_proposals, vec!["camellia128-sha1-modp1536"]);
        assert_eq!(c.local_addrs, vec![IpAddr::from([203, 0, 113, 10])]);
        assert_eq!(c.local_ts[0].to_string(), "10.1.0.0/24");
        assert_eq!(c.remote_ts[0].to_string(), "172.16.1.0/24");
        assert_eq!((c.child_rekey_time, c.child_life_time), (3600, 5400));
        assert_eq!(c.rekey_time + c.over_time, 4 * 3600);
        let json = serde_json::to_string(&p).expect("json");
        assert!(!json.contains("never-shown"), "{json}");
        assert!(json.contains(r#""psk":{"kind":"inline"}"#), "{json}");
    }
}
