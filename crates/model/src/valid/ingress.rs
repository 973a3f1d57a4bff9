//! Flood protections of the public side: `[ingress]` (SYN proxy, the conntrack table's size and
//! the public side's share of it) and the per-source limits of `[[ingress_rules]]`
//! (`rate_limit` with `burst`, `conn_limit`), keyed by the rule's id.

use crate::error::Errors;
use crate::spec::Gateway;
use std::collections::BTreeMap;

/// Default share of the conntrack table that flows opened from the public side may hold.
pub const DEFAULT_PUBLIC_CONNTRACK_PERCENT: u8 = 75;
/// Largest rate, burst or concurrent-connection limit accepted.
const MAX_LIMIT: u32 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressSpec {
    pub synproxy: bool,
    /// `net.netfilter.nf_conntrack_max` to set; None: the kernel's value stands.
    pub conntrack_max: Option<u32>,
    pub public_conntrack_percent: u8,
    /// Per-source limits by ingress rule id (only rules that have some).
    pub limits: BTreeMap<String, Limits>,
}

impl Default for IngressSpec {
    fn default() -> Self {
        IngressSpec {
            synproxy: true,
            conntrack_max: None,
            public_conntrack_percent: DEFAULT_PUBLIC_CONNTRACK_PERCENT,
            limits: BTreeMap::new(),
        }
    }
}

impl IngressSpec {
    /// How many public-side flows the table may hold, given its size.
    pub fn public_conntrack_cap(&self, table_max: u32) -> u32 {
        let max = u64::from(self.conntrack_max.unwrap_or(table_max));
        let cap = max * u64::from(self.public_conntrack_percent) / 100;
        u32::try_from(cap.max(1)).unwrap_or(u32::MAX)
    }
}

/// One ingress rule's per-source limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub rate: Option<Rate>,
    pub conn: Option<u32>,
}

/// New connections per source: `count` per `unit`, `burst` above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub unit: RateUnit,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
}

impl RateUnit {
    /// nftables' word.
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
        }
    }
}

/// `200/s`, `200/second`, `3000/m`, `3000/minute`.
fn rate(s: &str) -> Result<(u32, RateUnit), String> {
    let (n, unit) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a rate like \"200/s\""))?;
    let unit = match unit.trim() {
        "s" | "second" => RateUnit::Second,
        "m" | "min" | "minute" => RateUnit::Minute,
        other => return Err(format!("unit {other:?} is not s or m")),
    };
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a whole number", n.trim()))?;
    if n == 0 || n > MAX_LIMIT {
        return Err(format!("{n} is not in 1..={MAX_LIMIT}"));
    }
    Ok((n, unit))
}

fn bounded(n: u32) -> Result<u32, String> {
    if n == 0 || n > MAX_LIMIT {
        Err(format!("{n} is not in 1..={MAX_LIMIT}"))
    } else {
        Ok(n)
    }
}

pub(super) fn check_ingress(g: &Gateway, e: &mut Errors) -> IngressSpec {
    let mut spec = IngressSpec::default();
    if let Some(s) = &g.ingress {
        spec.synproxy = s.synproxy.unwrap_or(true);
        spec.conntrack_max = s.conntrack_max.and_then(|n| {
            let ok = if n < 1024 {
                Err(format!(
                    "{n} is below 1024 (the table would be full at once)"
                ))
            } else {
                Ok(n)
            };
            e.check("ingress.conntrack_max", ok)
        });
        if let Some(p) = s.public_conntrack_percent {
            let ok = u8::try_from(p)
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| format!("{p} is not a percentage in 1..=100"));
            if let Some(p) = e.check("ingress.public_conntrack_percent", ok) {
                spec.public_conntrack_percent = p;
            }
        }
    }
    for (i, r) in g.ingress_rules.iter().enumerate() {
        let p = format!("ingress_rules[{i}]");
        let id = r.id.clone().unwrap_or_else(|| format!("ingress-{}", i + 1));
        let rate = r
            .rate_limit
            .as_deref()
            .and_then(|s| e.check(format!("{p}.rate_limit"), rate(s)));
        let burst = r
            .burst
            .and_then(|b| e.check(format!("{p}.burst"), bounded(b)));
        if r.burst.is_some() && r.rate_limit.is_none() {
            e.push(format!("{p}.burst"), "is only meaningful with rate_limit");
        }
        let conn = r
            .conn_limit
            .and_then(|c| e.check(format!("{p}.conn_limit"), bounded(c)));
        let limits = Limits {
            // Without an explicit burst a source may open a second's (or minute's) worth at once.
            rate: rate.map(|(count, unit)| Rate {
                count,
                unit,
                burst: burst.unwrap_or(count),
            }),
            conn,
        };
        if limits != Limits::default() {
            spec.limits.insert(id, limits);
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(rate("200/s"), Ok((200, RateUnit::Second)));
        assert_eq!(rate(" 30 / minute"), Ok((30, RateUnit::Minute)));
        assert!(rate("200").is_err());
        assert!(rate("0/s").is_err());
        assert!(rate("5/h").is_err());
        assert!(rate("x/s").is_err());
    }

    #[test]
    fn public_cap_is_a_share_of_the_table() {
        let mut s = IngressSpec::default();
        assert_eq!(s.public_conntrack_cap(262_144), 196_608);
        s.conntrack_max = Some(10_000);
        s.public_conntrack_percent = 50;
        assert_eq!(s.public_conntrack_cap(262_144), 5_000);
    }
}
