//! Addresses, routes, policy rules and sysctls. Kawaii owns only what it adds: the VIPs it added
//! during this run, and routes and rules with protocol number [`RT_PROTO`]; it never removes
//! addresses, routes or rules it did not add. Talks to the kernel through iproute2 (`ip -j`,
//! `ip -batch`), which speaks rtnetlink; see docs/architecture.md for why not the rtnetlink
//! crate yet.

use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName, Effect, tool};
use ipnet::IpNet;
use kawaii_plan::{Address, Destination, Plan, RouteEntry, RuleEntry};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

/// Route protocol number marking kawaii's routes (`ip route show proto 177`).
pub const RT_PROTO: &str = "177";

#[derive(Debug, Default)]
pub struct Netlink {
    /// Addresses this driver added, so it can remove them later.
    owned: Mutex<BTreeSet<Address>>,
    /// The plan last applied and when: an unchanged plan is re-checked against the kernel at
    /// most every [`RESYNC`] (drift repair), not on every reconcile.
    last: Mutex<Option<(kawaii_plan::NetPlan, std::time::Instant)>>,
    /// The kernel holds no policy rule of ours (checked since this run started), so a plan
    /// without rules (nearly every gateway's) costs no `ip rule` run.
    rules_clean: std::sync::atomic::AtomicBool,
}

/// How often an unchanged plan is checked against the kernel again.
pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

impl Netlink {
    pub fn new() -> Netlink {
        Netlink::default()
    }

    /// Forgets the last applied plan, so the next apply checks the kernel again (an interface
    /// it manages was recreated and lost its addresses and routes).
    fn invalidate(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = None;
        }
    }
}

async fn addresses_of(dev: &str) -> Result<BTreeSet<IpNet>, DriverError> {
    let text = tool::run("ip", &["-j", "addr", "show", "dev", dev], None).await?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| DriverError::transient_from("ip -j", e))?;
    let mut out = BTreeSet::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if (a["family"] == "inet" || a["family"] == "inet6")
                && let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64())
                && let (Ok(ip), Ok(len)) = (ip.parse::<IpAddr>(), u8::try_from(len))
                && let Ok(net) = IpNet::new(ip, len)
            {
                out.insert(net);
            }
        }
    }
    Ok(out)
}

/// A route the kernel holds with kawaii's protocol number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KernelRoute {
    /// `dst` as `ip -j` wrote it: what `route del` is given.
    dst: String,
    /// The route, typed; None if a field does not parse (it is then never one of ours).
    route: Option<RouteEntry>,
}

/// One route of `ip -j route show` output, typed.
fn kernel_route(r: &serde_json::Value) -> Option<KernelRoute> {
    let dst = r["dst"].as_str()?;
    let ip = |field: &str| -> Result<Option<IpAddr>, ()> {
        r[field]
            .as_str()
            .map(str::parse)
            .transpose()
            .map_err(|_| ())
    };
    let route = (|| {
        Some(RouteEntry {
            // `ip -j` shows a host route without its prefix; the plan writes it with.
            destination: match dst {
                "default" => Destination::Default,
                d if d.contains('/') => Destination::Net(d.parse().ok()?),
                d => Destination::Net(IpNet::from(d.parse::<IpAddr>().ok()?)),
            },
            via: ip("gateway").ok()?,
            interface: r["dev"].as_str().map(String::from),
            source: ip("prefsrc").ok()?,
        })
    })();
    Some(KernelRoute {
        dst: dst.to_string(),
        route,
    })
}

/// kawaii's routes of both families.
async fn our_routes() -> Result<Vec<KernelRoute>, DriverError> {
    let mut out = Vec::new();
    for (family, v6) in [("-4", false), ("-6", true)] {
        let text = tool::run(
            "ip",
            &["-j", family, "route", "show", "proto", RT_PROTO],
            None,
        )
        .await?;
        out.extend(kernel_routes(&text, v6)?);
    }
    Ok(out)
}

/// The routes of one family's `ip -j route show` output. An IPv6 default route is named `::/0`
/// for `route del` (a bare `default` would be the IPv4 one).
fn kernel_routes(json: &str, v6: bool) -> Result<Vec<KernelRoute>, DriverError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| DriverError::transient_from("ip -j", e))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(kernel_route)
        .map(|mut k| {
            if v6 && k.dst == "default" {
                k.dst = "::/0".into();
            }
            k
        })
        .collect())
}

/// kawaii's policy rules (IPv4, protocol [`RT_PROTO`]), typed; a rule whose fields do not all
/// parse is never one of ours (None), and is deleted by its priority.
async fn our_rules() -> Result<Vec<(u32, Option<RuleEntry>)>, DriverError> {
    let text = tool::run("ip", &["-j", "-4", "rule", "show"], None).await?;
    kernel_rules(&text)
}

fn kernel_rules(json: &str) -> Result<Vec<(u32, Option<RuleEntry>)>, DriverError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| DriverError::transient_from("ip -j rule", e))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["protocol"].as_str() == Some(RT_PROTO))
        .filter_map(|r| {
            let priority = u32::try_from(r["priority"].as_u64()?).ok()?;
            let rule = (|| {
                let fwmark = match r["fwmark"].as_str() {
                    Some(m) => Some(u32::from_str_radix(m.trim_start_matches("0x"), 16).ok()?),
                    None => None,
                };
                let to = match (r["dst"].as_str(), r["dstlen"].as_u64()) {
                    (Some(d), Some(len)) => {
                        Some(IpNet::new(d.parse().ok()?, u8::try_from(len).ok()?).ok()?)
                    }
                    _ => None,
                };
                let table = match r["table"].as_str()? {
                    "main" => 254,
                    "default" => 253,
                    "local" => 255,
                    t => t.parse().ok()?,
                };
                Some(RuleEntry {
                    priority,
                    fwmark,
                    to,
                    table,
                })
            })();
            Some((priority, rule))
        })
        .collect())
}

/// Runs an `ip -batch` input; a failure names the command that failed (`route replace
/// 10.3.0.0/24 via 198.51.100.77 ...: Error: Nexthop has invalid gateway.`), so that the
/// reconcile loop can tell which resource it came from.
async fn run_batch(batch: &str) -> Result<(), DriverError> {
    if batch.is_empty() {
        return Ok(());
    }
    match tool::run("ip", &["-batch", "-"], Some(batch)).await {
        Ok(_) => Ok(()),
        Err(DriverError::Rejected { what, .. }) => {
            Err(DriverError::rejected(failed_command(batch, &what)))
        }
        Err(e) => Err(e),
    }
}

/// `ip -batch`'s error with the batch line it names (`Command failed -:N`) in front.
fn failed_command(batch: &str, error: &str) -> String {
    let line = error
        .split("Command failed -:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| batch.lines().nth(n.checked_sub(1)?));
    let reason = error
        .lines()
        .filter(|l| !l.contains("Command failed"))
        .collect::<Vec<_>>()
        .join(" ");
    let reason = reason.trim().trim_start_matches("ip -batch -:").trim();
    match line {
        Some(l) => format!("ip {l}: {reason}"),
        None => error.to_string(),
    }
}

/// Whether kernel route `have` is planned route `want`. A planned route without an interface
/// lets the kernel choose: any interface matches.
fn same(want: &RouteEntry, have: &RouteEntry) -> bool {
    want.destination == have.destination
        && want.via == have.via
        && want.source == have.source
        && (want.interface.is_none()
            || have.interface.is_none()
            || want.interface == have.interface)
}

impl Driver for Netlink {
    fn name(&self) -> DriverName {
        DriverName::Netlink
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move {
            let net = &plan.net;
            let fresh = self
                .last
                .lock()
                .ok()
                .and_then(|l| l.as_ref().map(|(p, at)| p == net && at.elapsed() < RESYNC))
                .unwrap_or(false);
            if fresh {
                return Ok(Applied::quiet());
            }
            for s in &net.sysctls {
                let path = format!("/proc/sys/{}", s.key.replace('.', "/"));
                // Conntrack's settings exist once its module is loaded (the firewall, applied
                // next, would load it): load it first.
                if s.key.starts_with("net.netfilter.")
                    && !tokio::fs::try_exists(&path).await.unwrap_or(false)
                {
                    tool::run("modprobe", &["nf_conntrack"], None).await?;
                }
                let cur = tokio::fs::read_to_string(&path).await.unwrap_or_default();
                if cur.trim() != s.value {
                    match tokio::fs::write(&path, &s.value).await {
                        // The table's size is the host's alone: read-only inside a network
                        // namespace. The conntrack guard still takes its share of the
                        // configured size, and status shows the kernel's.
                        Err(e)
                            if s.key == "net.netfilter.nf_conntrack_max"
                                && e.kind() == std::io::ErrorKind::PermissionDenied =>
                        {
                            tracing::warn!(
                                key = %s.key,
                                value = %s.value,
                                kernel = %cur.trim(),
                                "sysctl is read-only in this network namespace; kept the kernel's"
                            );
                        }
                        r => r.map_err(|e| {
                            DriverError::rejected_from(format!("sysctl {}={}", s.key, s.value), e)
                        })?,
                    }
                }
            }
            let mut batch = String::new();
            // Addresses: add what is missing; remove what we added earlier and no longer want.
            let wanted: BTreeSet<Address> = net.addresses.iter().cloned().collect();
            let owned = self.owned.lock().map(|o| o.clone()).unwrap_or_default();
            // One `ip addr show` per interface (a VIP takeover waits on this).
            let mut have: BTreeMap<&str, BTreeSet<IpNet>> = BTreeMap::new();
            let devs: BTreeSet<&str> = owned
                .iter()
                .chain(&wanted)
                .chain(&net.absent)
                .map(|a| a.interface.as_str())
                .collect();
            for dev in devs {
                if let Ok(list) = addresses_of(dev).await {
                    have.insert(dev, list);
                }
            }
            let present = |a: &Address| {
                have.get(a.interface.as_str())
                    .is_some_and(|s| s.contains(&a.address))
            };
            for a in owned.difference(&wanted) {
                if present(a) {
                    batch.push_str(&format!("addr del {a}\n"));
                }
            }
            // HA: VIPs another instance holds must not linger here (a killed earlier run).
            for a in &net.absent {
                if !owned.contains(a) && present(a) {
                    batch.push_str(&format!("addr del {a}\n"));
                }
            }
            let mut added = Vec::new();
            for a in &wanted {
                if !have.contains_key(a.interface.as_str()) {
                    addresses_of(&a.interface).await?;
                }
                if !present(a) {
                    // A floating IPv6 address is usable at once (no duplicate detection):
                    // VRRP decides who holds it.
                    let nodad = if a.address.addr().is_ipv6() {
                        " nodad"
                    } else {
                        ""
                    };
                    batch.push_str(&format!("addr add {a}{nodad}\n"));
                    added.push(a.address.addr());
                }
            }
            run_batch(&batch).await?;
            if let Ok(mut o) = self.owned.lock() {
                *o = wanted;
            }
            // Routes (after addresses: a next hop must be on-link first).
            let have = our_routes().await?;
            let mut batch = String::new();
            let planned = |k: &KernelRoute| {
                k.route
                    .as_ref()
                    .is_some_and(|h| net.routes.iter().any(|w| same(w, h)))
            };
            for k in &have {
                if !planned(k) {
                    batch.push_str(&format!("route del {} proto {RT_PROTO}\n", k.dst));
                }
            }
            for r in &net.routes {
                if !have
                    .iter()
                    .any(|k| k.route.as_ref().is_some_and(|h| same(r, h)))
                {
                    batch.push_str(&format!("route replace {r} proto {RT_PROTO}\n"));
                }
            }
            run_batch(&batch).await?;
            // Policy rules: ours (by protocol) that are not planned go, planned ones missing
            // are added.
            let clean = &self.rules_clean;
            let have = if net.rules.is_empty() && clean.load(Ordering::Relaxed) {
                Vec::new()
            } else {
                our_rules().await?
            };
            let mut batch = String::new();
            for (priority, rule) in &have {
                if !rule.as_ref().is_some_and(|h| net.rules.contains(h)) {
                    let what = rule
                        .as_ref()
                        .map_or_else(|| format!("priority {priority}"), ToString::to_string);
                    batch.push_str(&format!("rule del {what} protocol {RT_PROTO}\n"));
                }
            }
            for r in &net.rules {
                if !have.iter().any(|(_, h)| h.as_ref() == Some(r)) {
                    batch.push_str(&format!("rule add {r} protocol {RT_PROTO}\n"));
                }
            }
            run_batch(&batch).await?;
            clean.store(net.rules.is_empty(), Ordering::Relaxed);
            if let Ok(mut l) = self.last.lock() {
                *l = Some((net.clone(), std::time::Instant::now()));
            }
            Ok(if added.is_empty() {
                Applied::quiet()
            } else {
                Applied::with(Effect::AddressesAdded(added))
            })
        })
    }

    /// A recreated interface lost what this driver put on it.
    fn react(&self, effect: &Effect) {
        if let Effect::LinkRecreated(_) = effect {
            self.invalidate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip -j rule show` as iproute2 6.1 writes it: only kawaii's (protocol 177) are read,
    /// typed as the plan writes them (main is table 254).
    #[test]
    fn reads_its_own_policy_rules() {
        let json = r#"[{"priority":0,"src":"all","table":"local"},
            {"priority":218,"src":"all","fwmark":"0x6b61","table":"220","protocol":"177"},
            {"priority":219,"src":"all","dst":"10.1.0.0","dstlen":24,"table":"main","protocol":"177"},
            {"priority":220,"src":"all","table":"220"},
            {"priority":32766,"src":"all","table":"main"}]"#;
        let got = kernel_rules(json).expect("json");
        let text: Vec<String> = got
            .iter()
            .map(|(_, r)| r.as_ref().map(ToString::to_string).unwrap_or_default())
            .collect();
        assert_eq!(
            text,
            [
                "priority 218 fwmark 0x6b61 lookup 220",
                "priority 219 to 10.1.0.0/24 lookup 254"
            ]
        );
    }

    #[test]
    fn a_failed_batch_names_its_command() {
        let batch = "route del 10.9.0.0/24 proto 177\nroute replace 10.3.0.0/24 via 198.51.100.77 proto 177\n";
        let got = failed_command(
            batch,
            "ip -batch -: Error: Nexthop has invalid gateway.\nCommand failed -:2",
        );
        assert_eq!(
            got,
            "ip route replace 10.3.0.0/24 via 198.51.100.77 proto 177: Error: Nexthop has invalid gateway."
        );
        assert_eq!(
            failed_command(batch, "ip -batch -: busy"),
            "ip -batch -: busy"
        );
    }

    fn kernel(json: &str) -> Vec<KernelRoute> {
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(kernel_route)
            .collect()
    }

    /// `ip -j route show proto 177` as iproute2 6.x prints it, read back into the plan's types:
    /// host routes get their /32, and each route is the planned one it was added from.
    #[test]
    fn kernel_routes_read_back_as_the_planned_routes() {
        let have = kernel(
            r#"[{"dst":"default","gateway":"203.0.113.1","dev":"wan0","protocol":"177","prefsrc":"203.0.113.10","flags":[]},
                {"dst":"10.2.0.0/24","gateway":"198.51.100.2","dev":"wan0","protocol":"177","flags":[]},
                {"dst":"10.8.0.5","dev":"kawaii-wg0","protocol":"177","scope":"link","flags":[]},
                {"dst":"fe80::/64","dev":"lan0","protocol":"177","flags":[]}]"#,
        );
        let planned = [
            RouteEntry {
                destination: Destination::Default,
                via: Some("203.0.113.1".parse().expect("ip")),
                interface: Some("wan0".into()),
                source: Some("203.0.113.10".parse().expect("ip")),
            },
            RouteEntry {
                destination: Destination::Net("10.2.0.0/24".parse().expect("net")),
                via: Some("198.51.100.2".parse().expect("ip")),
                interface: None,
                source: None,
            },
            RouteEntry::onto("10.8.0.5/32".parse::<IpNet>().expect("net"), "kawaii-wg0"),
        ];
        assert_eq!(have.len(), 4);
        for (k, want) in have.iter().zip(&planned) {
            let h = k.route.as_ref().expect("parses");
            assert!(same(want, h), "{want} vs {h}");
        }
        assert_eq!(
            have[3].route.as_ref().map(|r| r.to_string()).as_deref(),
            Some("fe80::/64 dev lan0")
        );
        // The default route planned without a source is not the one the kernel holds.
        let no_src = RouteEntry {
            source: None,
            ..planned[0].clone()
        };
        assert!(!same(&no_src, have[0].route.as_ref().expect("parses")));
        // Another interface is another route, unless the plan leaves the choice to the kernel.
        let other_dev =
            RouteEntry::onto("10.8.0.5/32".parse::<IpNet>().expect("net"), "kawaii-wg1");
        assert!(!same(&other_dev, have[2].route.as_ref().expect("parses")));
    }

    /// `ip -j -6 route show proto 177`: the IPv6 default route is deleted as `::/0`, and it is
    /// the planned route via the link-local upstream router with the VIP as source.
    #[test]
    fn ipv6_routes_read_back_and_delete_by_their_family() {
        let have = kernel_routes(
            r#"[{"dst":"default","gateway":"fe80::ff:1","dev":"wan0","protocol":"177","prefsrc":"2001:db8:ff::10","metric":1024,"flags":[],"pref":"medium"}]"#,
            true,
        )
        .expect("json");
        assert_eq!(have[0].dst, "::/0");
        let planned = RouteEntry {
            destination: Destination::Default,
            via: Some("fe80::ff:1".parse().expect("ip")),
            interface: Some("wan0".into()),
            source: Some("2001:db8:ff::10".parse().expect("ip")),
        };
        assert!(same(&planned, have[0].route.as_ref().expect("parses")));
        let v4 = kernel_routes(
            r#"[{"dst":"default","gateway":"203.0.113.1","dev":"wan0"}]"#,
            false,
        )
        .expect("json");
        assert_eq!(v4[0].dst, "default");
        assert!(!same(&planned, v4[0].route.as_ref().expect("parses")));
    }

    /// A route with kawaii's protocol number that does not parse is kept by its text, so that
    /// it is deleted rather than mistaken for a planned one.
    #[test]
    fn an_unreadable_kernel_route_is_deleted_by_its_text() {
        let have = kernel(r#"[{"dst":"10.9.0.0/16","gateway":"not-an-ip","dev":"wan0"}]"#);
        assert_eq!(
            have,
            [KernelRoute {
                dst: "10.9.0.0/16".into(),
                route: None,
            }]
        );
    }

    /// The batch lines use the plan's one rendering of an address and a route.
    #[test]
    fn batch_lines_are_the_plan_rendering() {
        let a = Address {
            interface: "wan0".into(),
            address: "203.0.113.10/24".parse().expect("net"),
        };
        assert_eq!(format!("addr add {a}"), "addr add 203.0.113.10/24 dev wan0");
        let r = RouteEntry {
            destination: Destination::Default,
            via: Some("203.0.113.1".parse().expect("ip")),
            interface: Some("wan0".into()),
            source: Some("203.0.113.10".parse().expect("ip")),
        };
        assert_eq!(
            format!("route replace {r} proto {RT_PROTO}"),
            "route replace default via 203.0.113.1 dev wan0 src 203.0.113.10 proto 177"
        );
    }
}
