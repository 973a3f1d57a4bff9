//! The small value checks every capability shares: CIDRs and addresses, protocols and policies,
//! names, interface names, domains, `host:port`, and name uniqueness in a list.
//! Each returns the typed value or a reason without a path; the caller attaches the path.

use crate::error::Errors;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// An optional alias prefix at `path`: Ok(None) when absent, None when invalid (error pushed),
/// so that `alias(..)?` skips the entry only when the alias itself is wrong.
pub(super) fn alias(s: Option<&str>, path: &str, e: &mut Errors) -> Option<Option<Ipv4Net>> {
    match s {
        None => Some(None),
        Some(s) => e.check(path, cidr(s)).map(Some),
    }
}

/// Whether two IPv4 networks share an address (one contains the other).
pub fn nets_overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `net`'s counterpart in `to` when `net` lies inside `from` (same host bits); `to` itself when
/// `net` is wider than `from`; `net` unchanged when it is outside `from`.
pub fn map_net(net: Ipv4Net, from: Ipv4Net, to: Ipv4Net) -> Ipv4Net {
    if net.prefix_len() <= from.prefix_len() && net.contains(&from.network()) {
        return to;
    }
    if !from.contains(&net.network()) {
        return net;
    }
    let host = u32::from(net.network()) & !u32::from(from.netmask());
    let addr = u32::from(to.network()) | host;
    Ipv4Net::new(addr.into(), net.prefix_len()).unwrap_or(to)
}

/// The addresses a filter rule matches: one family's network, or (the network left out)
/// every address of both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleNet {
    Any,
    V4(Ipv4Net),
    V6(Ipv6Net),
}

impl RuleNet {
    /// The IPv4 network the rule matches, if it applies to IPv4 (`Any`: 0.0.0.0/0).
    pub fn v4(self) -> Option<Ipv4Net> {
        match self {
            RuleNet::Any => Some(Ipv4Net::default()),
            RuleNet::V4(n) => Some(n),
            RuleNet::V6(_) => None,
        }
    }
    /// The IPv6 network the rule matches, if it applies to IPv6 (`Any`: ::/0).
    pub fn v6(self) -> Option<Ipv6Net> {
        match self {
            RuleNet::Any => Some(Ipv6Net::default()),
            RuleNet::V6(n) => Some(n),
            RuleNet::V4(_) => None,
        }
    }
    /// Whether some address is matched by both.
    pub fn meets(self, other: RuleNet) -> bool {
        let v4 = match (self.v4(), other.v4()) {
            (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
            _ => false,
        };
        let v6 = match (self.v6(), other.v6()) {
            (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
            _ => false,
        };
        v4 || v6
    }
}

impl fmt::Display for RuleNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleNet::Any => f.write_str("any"),
            RuleNet::V4(n) => write!(f, "{n}"),
            RuleNet::V6(n) => write!(f, "{n}"),
        }
    }
}

/// A rule's network as written: absent is both families; otherwise an IPv4 or an IPv6 CIDR.
pub(super) fn rule_net(s: Option<&str>) -> Result<RuleNet, String> {
    let Some(s) = s else {
        return Ok(RuleNet::Any);
    };
    let t = s.trim();
    if t.contains(':') {
        cidr6(s).map(RuleNet::V6)
    } else if t.parse::<Ipv4Net>().is_ok() || t.parse::<Ipv4Addr>().is_ok() {
        cidr(s).map(RuleNet::V4)
    } else {
        Err(format!(
            "{s:?} is not an IPv4 or IPv6 CIDR (like 10.1.0.0/24 or 2001:db8::/32)"
        ))
    }
}

/// A route domain: lowercase DNS name, `*.` only as the whole first label, or `*` (default).
pub fn domain(s: &str) -> Result<String, String> {
    if s == "*" {
        return Ok(s.into());
    }
    if s != s.to_ascii_lowercase() {
        return Err(format!("{s:?} must be lowercase"));
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    let body = name.strip_prefix("*.").unwrap_or(name);
    if body.is_empty() || name.len() > 253 {
        return Err(format!("{s:?} is not a domain name"));
    }
    for label in body.split('.') {
        if label.contains('*') {
            return Err(format!(
                "{s:?}: a wildcard may only be the whole first label (*.example.com)"
            ));
        }
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{s:?} has an invalid label {label:?}"));
        }
    }
    Ok(name.to_string())
}

/// `host:port` or `ip:port` (`[v6]:port`).
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} needs a port (host:port)"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{s:?}: {port:?} is not a port (1-65535)"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?} has no host"));
    }
    Ok((host.to_string(), port))
}

/// Reports every name of `names` that an earlier item of `kind` already used, at
/// `kind[i].field`.
pub(super) fn unique<'a>(
    e: &mut Errors,
    kind: &str,
    names: impl Iterator<Item = &'a str>,
    field: &str,
) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, n) in names.enumerate() {
        if let Some(first) = seen.insert(n, i) {
            e.push(
                format!("{kind}[{i}].{field}"),
                format!("{n:?} is already used by {kind}[{first}]"),
            );
        }
    }
}

/// A display name (peering, IPsec connection, peer, pipe): not blank, no control characters,
/// at most 128 bytes.
pub(super) fn name(n: &str, path: &str, e: &mut Errors) {
    if n.trim().is_empty() {
        e.push(path, "must not be empty");
    } else if n.chars().any(char::is_control) {
        e.push(path, "must not contain control characters");
    } else if n.len() > 128 {
        e.push(path, "is longer than 128 bytes");
    }
}

pub(super) fn ifname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', ':']) || s == "." || s == ".." {
        Err(format!(
            "{s:?} is not an interface name (1-15 characters, no '/', ':' or spaces)"
        ))
    } else {
        Ok(())
    }
}

pub(super) fn protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        o => Err(format!("{o:?} is not a protocol; use tcp or udp")),
    }
}

pub(super) fn policy(s: &str) -> Result<Policy, String> {
    match s {
        "accept" => Ok(Policy::Accept),
        "drop" => Ok(Policy::Drop),
        o => Err(format!("{o:?} is not a policy; use accept or drop")),
    }
}

pub(super) fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address"))
}

pub(super) fn ipv6(s: &str) -> Result<Ipv6Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv6 address"))
}

/// An IPv4 or an IPv6 address.
pub(super) fn ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))
}

/// An IPv6 network in CIDR form; a bare address means /128. Host bits must be zero.
pub fn cidr6(s: &str) -> Result<Ipv6Net, String> {
    match network(s, true)? {
        IpNet::V6(n) => Ok(n),
        IpNet::V4(_) => Err(not_a_network(s, true)),
    }
}

fn not_a_network(s: &str, v6: bool) -> String {
    let s = s.trim();
    if v6 {
        format!("{s:?} is not an IPv6 CIDR (like 2001:db8:1::/64)")
    } else {
        format!("{s:?} is not an IPv4 CIDR (like 10.1.0.0/24)")
    }
}

/// A network of the family `v6` names in CIDR form; a bare address is a host network. Host bits
/// must be zero.
fn network(s: &str, v6: bool) -> Result<IpNet, String> {
    let t = s.trim();
    let bad = || not_a_network(s, v6);
    let net: IpNet = if t.contains('/') {
        t.parse().map_err(|_| bad())?
    } else {
        IpNet::from(t.parse::<IpAddr>().map_err(|_| bad())?)
    };
    if net.addr().is_ipv6() != v6 {
        return Err(bad());
    }
    if net.trunc() != net {
        return Err(format!(
            "{t:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An IPv6 address with its prefix (`2001:db8:ff::10/64`): a global host address, not the
/// subnet-router anycast (all-zero host) address.
pub(super) fn cidr6_host(s: &str) -> Result<Ipv6Net, String> {
    let net: Ipv6Net = s.trim().parse().map_err(|_| {
        format!("{s:?} is not an IPv6 address with prefix (like 2001:db8:ff::10/64)")
    })?;
    if net.prefix_len() < 127 && net.addr() == net.network() {
        return Err(format!(
            "{s:?} is the subnet-router anycast address, not a host"
        ));
    }
    if is_link_local(net.addr()) {
        return Err(format!("{s:?} is link-local; a VIP needs a global address"));
    }
    Ok(net)
}

/// Whether `a` is in fe80::/10.
pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// A network in CIDR form; a bare address means /32. Host bits must be zero.
pub fn cidr(s: &str) -> Result<Ipv4Net, String> {
    match network(s, false)? {
        IpNet::V4(n) => Ok(n),
        IpNet::V6(_) => Err(not_a_network(s, false)),
    }
}

/// An address with its prefix (`203.0.113.10/24`): host bits allowed, must not be the network.
pub(super) fn cidr_host(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an address with prefix (like 203.0.113.10/24)"))?;
    if net.prefix_len() < 31 && (net.addr() == net.network() || net.addr() == net.broadcast()) {
        return Err(format!(
            "{s:?} is the network or broadcast address, not a host"
        ));
    }
    Ok(net)
}

/// A positive port number (1-65535).
pub(super) fn port(v: u32) -> Result<u16, String> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{v} is not a port (1-65535)"))
}

/// An optional duration (`"5s"`, `"10m"`) longer than zero, `default` when absent.
pub fn positive_duration(
    e: &mut Errors,
    path: &str,
    v: &Option<String>,
    default: std::time::Duration,
) -> Option<std::time::Duration> {
    match v {
        None => Some(default),
        Some(s) => e.check(
            path,
            crate::duration::parse(s).and_then(|d| {
                if d.is_zero() {
                    Err("must be longer than 0".into())
                } else {
                    Ok(d)
                }
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().expect("net")
    }

    #[test]
    fn nets_map_host_by_host() {
        let (from, to) = (n("10.91.1.0/24"), n("192.168.1.0/24"));
        assert_eq!(map_net(n("10.91.1.10/32"), from, to), n("192.168.1.10/32"));
        assert_eq!(
            map_net(n("10.91.1.128/25"), from, to),
            n("192.168.1.128/25")
        );
        assert_eq!(
            map_net(n("10.91.0.0/16"), from, to),
            to,
            "wider: the whole alias"
        );
        assert_eq!(
            map_net(n("10.7.0.0/24"), from, to),
            n("10.7.0.0/24"),
            "outside"
        );
    }
}
