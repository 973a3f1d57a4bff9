//! `[[ipsec]]`: site-to-site IKEv2 connections. Unique names (spaces allowed), a declared zone,
//! exactly one PSK source, supported DH groups and algorithms per phase, durations with
//! `rekey` shorter than the phase-2 lifetime, and the DPD and start actions. The addresses of
//! either family (outer and inner) are checked in [`super::ipsec_net`].

use super::firewall::{PeerRule6, PeerRuleSpec};
use super::gateway::ZoneSpec;
use super::ipsec_net;
use super::primitives::{alias, cidr, map_net, name, unique};
use crate::duration;
use crate::error::Errors;
use crate::secret::Secret;
use crate::spec::{Gateway, Ipsec, PeerRule};
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    Aes128,
    Aes256,
    Camellia128,
    Camellia256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdAction {
    Clear,
    Trap,
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    None,
    Trap,
    Start,
}

/// Accepted DH groups (IANA numbers).
pub const DH_GROUPS: &[u32] = &[2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub dh_group: u32,
    pub integrity: Integrity,
    pub encryption: Encryption,
    pub lifetime: Duration,
}

/// Where an IPsec PSK comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PskSource {
    Inline(Secret),
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecSpec {
    pub name: String,
    /// IPv4: the tunnel ends on the zone's `public_vip`; IPv6: on its `public_vip6`.
    pub remote_peer: IpAddr,
    /// The office's IPv4 subnet (local selector: the private subnet or `local_alias`).
    pub remote_subnet: Option<Ipv4Net>,
    /// The office's IPv6 subnet (local selector: `private_subnet6`); routed, never translated.
    /// At least one of the two is present.
    pub remote_subnet6: Option<Ipv6Net>,
    pub psk: PskSource,
    pub phase1: Phase,
    pub phase2: Phase,
    pub dpd_timeout: Duration,
    pub dpd_action: DpdAction,
    pub start_action: StartAction,
    pub rekey: Duration,
    /// The ingress rules that apply to IPv4 (those naming IPv4 addresses or none).
    pub ingress_rules: Vec<PeerRuleSpec>,
    /// The ingress rules that apply to IPv6 (those naming IPv6 addresses or none).
    pub ingress_rules6: Vec<PeerRule6>,
    /// The zone whose public VIP terminates the tunnel; None: the first zone.
    pub zone: Option<String>,
    /// How our private subnet appears to the office (the local traffic selector); None: as it is.
    pub local_alias: Option<Ipv4Net>,
    /// How `remote_subnet` appears to our hosts; None: as it is.
    pub remote_alias: Option<Ipv4Net>,
}

impl IpsecSpec {
    /// The office's IPv4 subnet as our hosts address it: its alias, or the subnet itself.
    pub fn remote_seen(&self) -> Option<Ipv4Net> {
        self.remote_alias.or(self.remote_subnet)
    }

    /// No ingress rules at all: the office's subnets reach the whole private side. Otherwise
    /// each family gets only what its rules allow (a family without rules: nothing).
    pub fn ingress_open(&self) -> bool {
        self.ingress_rules.is_empty() && self.ingress_rules6.is_empty()
    }

    /// Whether either side of the tunnel is translated.
    pub fn aliased(&self) -> bool {
        self.local_alias.is_some() || self.remote_alias.is_some()
    }
}

/// `private_subnet6`: the parsed `gateway.private_subnet6` (the IPv6 selectors' local side).
pub(super) fn check_ipsecs(
    g: &Gateway,
    zones: &[ZoneSpec],
    private_subnet6: Option<Ipv6Net>,
    e: &mut Errors,
) -> Vec<IpsecSpec> {
    let mut ipsec = Vec::new();
    let mut nets6 = Vec::new();
    unique(e, "ipsec", g.ipsec.iter().map(|c| c.name.as_str()), "name");
    for (i, c) in g.ipsec.iter().enumerate() {
        let p = format!("ipsec[{i}]");
        let home = match &c.zone {
            Some(z) => {
                let home = zones.iter().find(|s| &s.name == z);
                if home.is_none() {
                    e.push(format!("{p}.zone"), format!("{z:?} is not a declared zone"));
                }
                home
            }
            None => zones.first(),
        };
        let six = (private_subnet6, g.gateway.private_subnet6.is_some());
        if let Some(c) = check_ipsec(c, &p, home, six, e) {
            nets6.push((i, c.remote_subnet6));
            ipsec.push(c);
        }
    }
    ipsec_net::check_overlaps6(&nets6, e);
    ipsec
}

fn integrity(s: &str) -> Result<Integrity, String> {
    match s.to_ascii_uppercase().as_str() {
        "SHA1" => Ok(Integrity::Sha1),
        "SHA256" | "SHA2-256" | "SHA2_256" => Ok(Integrity::Sha256),
        "SHA384" | "SHA2-384" | "SHA2_384" => Ok(Integrity::Sha384),
        "SHA512" | "SHA2-512" | "SHA2_512" => Ok(Integrity::Sha512),
        _ => Err(format!(
            "{s:?} is not supported; use SHA1, SHA256, SHA384 or SHA512"
        )),
    }
}

fn encryption(s: &str) -> Result<Encryption, String> {
    match s.to_ascii_uppercase().as_str() {
        "AES128" => Ok(Encryption::Aes128),
        "AES256" => Ok(Encryption::Aes256),
        "CAMELLIA128" => Ok(Encryption::Camellia128),
        "CAMELLIA256" => Ok(Encryption::Camellia256),
        _ => Err(format!(
            "{s:?} is not supported; use AES128, AES256, CAMELLIA128 or CAMELLIA256"
        )),
    }
}

fn dh_group(n: u32) -> Result<u32, String> {
    if DH_GROUPS.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "DH group {n} is not supported; use one of 2, 5, 14-24"
        ))
    }
}

fn check_psk(c: &Ipsec, p: &str, e: &mut Errors) -> Option<PskSource> {
    match (&c.pre_shared_key, &c.pre_shared_key_file) {
        (Some(_), Some(_)) => {
            e.push(
                format!("{p}.pre_shared_key"),
                "give pre_shared_key or pre_shared_key_file, not both",
            );
            None
        }
        (Some(k), None) if k.expose().len() < 8 || k.is_placeholder() => {
            e.push(
                format!("{p}.pre_shared_key"),
                "must be at least 8 characters",
            );
            None
        }
        (Some(k), None) => Some(PskSource::Inline(k.clone())),
        (None, Some(f)) if f.trim().is_empty() => {
            e.push(format!("{p}.pre_shared_key_file"), "must not be empty");
            None
        }
        (None, Some(f)) => Some(PskSource::File(f.clone())),
        (None, None) => {
            e.push(
                format!("{p}.pre_shared_key"),
                "is required (or pre_shared_key_file)",
            );
            None
        }
    }
}

/// With a remote alias, rules name the office's hosts as our hosts see them: inside the alias.
/// (IPv6 sources are never translated; bad sources were reported already.)
fn alias_rules(rules: &[PeerRule], alias: Ipv4Net, real: Ipv4Net, p: &str, e: &mut Errors) {
    for (i, r) in rules.iter().enumerate() {
        let Some(Ok(src)) = r.source.as_deref().map(cidr) else {
            continue;
        };
        if alias.contains(&src) {
            continue;
        }
        let hint = if real.contains(&src) {
            format!(" (did you mean {}?)", map_net(src, real, alias))
        } else {
            String::new()
        };
        e.push(
            format!("{p}[{i}].source"),
            format!(
                "{src} is outside remote_alias {alias}: with an alias, rules name the office's hosts as our hosts see them{hint}"
            ),
        );
    }
}

/// `six`: the parsed `private_subnet6` and whether the document declares one.
fn check_ipsec(
    c: &Ipsec,
    p: &str,
    home: Option<&ZoneSpec>,
    six: (Option<Ipv6Net>, bool),
    e: &mut Errors,
) -> Option<IpsecSpec> {
    name(&c.name, &format!("{p}.name"), e);
    let remote_peer = ipsec_net::remote_peer(c, p, home, e);
    let remote = ipsec_net::remote_subnets(c, p, six.0, six.1, e);
    let psk = check_psk(c, p, e);
    let dur =
        |e: &mut Errors, field: &str, v: &str| e.check(format!("{p}.{field}"), duration::parse(v));
    let l1 = dur(e, "phase1_lifetime", &c.phase1_lifetime);
    let l2 = dur(e, "phase2_lifetime", &c.phase2_lifetime);
    let rekey = dur(e, "rekey", &c.rekey);
    let dpd_timeout = dur(e, "dpd_timeout", &c.dpd_timeout);
    if let (Some(r), Some(l)) = (rekey, l2)
        && r >= l
    {
        e.push(
            format!("{p}.rekey"),
            format!(
                "{} must be shorter than phase2_lifetime ({})",
                c.rekey, c.phase2_lifetime
            ),
        );
    }
    let phase = |e: &mut Errors, n: u8, dh: u32, i: &str, enc: &str, lifetime: Option<Duration>| {
        let dh = e.check(format!("{p}.phase{n}_dh_group_number"), dh_group(dh));
        let i = e.check(format!("{p}.phase{n}_integrity_algorithm"), integrity(i));
        let enc = e.check(
            format!("{p}.phase{n}_encryption_algorithm"),
            encryption(enc),
        );
        Some(Phase {
            dh_group: dh?,
            integrity: i?,
            encryption: enc?,
            lifetime: lifetime?,
        })
    };
    let phase1 = phase(
        e,
        1,
        c.phase1_dh_group_number,
        &c.phase1_integrity_algorithm,
        &c.phase1_encryption_algorithm,
        l1,
    );
    let phase2 = phase(
        e,
        2,
        c.phase2_dh_group_number,
        &c.phase2_integrity_algorithm,
        &c.phase2_encryption_algorithm,
        l2,
    );
    let dpd_action = e.check(
        format!("{p}.dpd_action"),
        match c.dpd_action.as_str() {
            "clear" => Ok(DpdAction::Clear),
            "trap" => Ok(DpdAction::Trap),
            "restart" => Ok(DpdAction::Restart),
            o => Err(format!(
                "{o:?} is not a DPD action; use clear, trap or restart"
            )),
        },
    );
    let start_action = e.check(
        format!("{p}.start_action"),
        match c.start_action.as_str() {
            "none" => Ok(StartAction::None),
            "trap" => Ok(StartAction::Trap),
            "start" => Ok(StartAction::Start),
            o => Err(format!(
                "{o:?} is not a start action; use none, trap or start"
            )),
        },
    );
    let (ingress_rules, ingress_rules6) = ipsec_net::ingress_rules(
        &c.ingress_rules,
        &format!("{p}.ingress_rules"),
        ipsec_net::carried_by_ipsec(remote),
        e,
    );
    let remote_subnet = remote.and_then(|r| r.0);
    let has_v4 = remote.is_none_or(|r| r.0.is_some());
    if !ipsec_net::aliases_fit(c, p, has_v4, e) {
        return None;
    }
    let local_alias = alias(c.local_alias.as_deref(), &format!("{p}.local_alias"), e)?;
    let remote_alias = alias(c.remote_alias.as_deref(), &format!("{p}.remote_alias"), e)?;
    if let (Some(a), Some(r)) = (remote_alias, remote_subnet)
        && a.prefix_len() != r.prefix_len()
    {
        e.push(
            format!("{p}.remote_alias"),
            format!(
                "{a} must be as long as remote_subnet ({r}): the translation is 1:1, address by address"
            ),
        );
    }
    if let (Some(a), Some(r)) = (remote_alias, remote_subnet) {
        alias_rules(&c.ingress_rules, a, r, &format!("{p}.ingress_rules"), e);
    }
    Some(IpsecSpec {
        zone: c.zone.clone(),
        name: c.name.clone(),
        remote_peer: remote_peer?,
        remote_subnet,
        remote_subnet6: remote?.1,
        psk: psk?,
        phase1: phase1?,
        phase2: phase2?,
        dpd_timeout: dpd_timeout?,
        dpd_action: dpd_action?,
        start_action: start_action?,
        rekey: rekey?,
        ingress_rules,
        ingress_rules6,
        local_alias,
        remote_alias,
    })
}
