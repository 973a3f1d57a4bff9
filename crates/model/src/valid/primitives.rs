//! The small value checks every capability shares: CIDRs and addresses, protocols and policies,
//! names, interface names, domains, `host:port`, and name uniqueness in a list.
//! Each returns the typed value or a reason without a path; the caller attaches the path.

use crate::error::Errors;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

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

/// A network in CIDR form; a bare address means /32. Host bits must be zero.
pub fn cidr(s: &str) -> Result<Ipv4Net, String> {
    let s = s.trim();
    let net: Ipv4Net = if s.contains('/') {
        s.parse()
            .map_err(|_| format!("{s:?} is not an IPv4 CIDR (like 10.1.0.0/24)"))?
    } else {
        let ip: Ipv4Addr = s
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 CIDR (like 10.1.0.0/24)"))?;
        Ipv4Net::from(ip)
    };
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
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
