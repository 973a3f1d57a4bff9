//! Addresses, routes and sysctls. Kawaii owns only what it adds: the VIPs it added during this
//! run and routes with protocol number [`RT_PROTO`]; it never removes addresses or routes it did
//! not add. Talks to the kernel through iproute2 (`ip -j`, `ip -batch`),
//! which speaks rtnetlink; see docs/architecture.md for why not the rtnetlink crate yet.

use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName, Effect, tool};
use kawaii_plan::{Plan, RouteEntry};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Route protocol number marking kawaii's routes (`ip route show proto 177`).
pub const RT_PROTO: &str = "177";

#[derive(Debug, Default)]
pub struct Netlink {
    /// Addresses this driver added (interface, address), so it can remove them later.
    owned: Mutex<BTreeSet<(String, String)>>,
    /// The plan last applied and when: an unchanged plan is re-checked against the kernel at
    /// most every [`RESYNC`] (drift repair), not on every reconcile.
    last: Mutex<Option<(kawaii_plan::NetPlan, std::time::Instant)>>,
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

async fn addresses_of(dev: &str) -> Result<BTreeSet<String>, DriverError> {
    let text = tool::run("ip", &["-j", "addr", "show", "dev", dev], None).await?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| DriverError::transient_from("ip -j", e))?;
    let mut out = BTreeSet::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["family"] == "inet"
                && let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64())
            {
                out.insert(format!("{ip}/{len}"));
            }
        }
    }
    Ok(out)
}

async fn our_routes() -> Result<Vec<RouteEntry>, DriverError> {
    let text = tool::run("ip", &["-j", "route", "show", "proto", RT_PROTO], None).await?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| DriverError::transient_from("ip -j", e))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            Some(RouteEntry {
                // `ip -j` shows a host route without its /32; the plan writes it with.
                destination: if dst == "default" || dst.contains('/') {
                    dst.to_string()
                } else {
                    format!("{dst}/32")
                },
                via: r["gateway"].as_str().unwrap_or_default().to_string(),
                interface: r["dev"].as_str().unwrap_or_default().to_string(),
                source: r["prefsrc"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect())
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
                let cur = tokio::fs::read_to_string(&path).await.unwrap_or_default();
                if cur.trim() != s.value {
                    tokio::fs::write(&path, &s.value).await.map_err(|e| {
                        DriverError::rejected_from(format!("sysctl {}={}", s.key, s.value), e)
                    })?;
                }
            }
            let mut batch = String::new();
            // Addresses: add what is missing; remove what we added earlier and no longer want.
            let wanted: BTreeSet<(String, String)> = net
                .addresses
                .iter()
                .map(|a| (a.interface.clone(), a.address.clone()))
                .collect();
            let owned = self.owned.lock().map(|o| o.clone()).unwrap_or_default();
            // One `ip addr show` per interface (a VIP takeover waits on this).
            let mut have: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
            let devs: BTreeSet<&String> = owned
                .iter()
                .chain(&wanted)
                .map(|(d, _)| d)
                .chain(net.absent.iter().map(|a| &a.interface))
                .collect();
            for dev in devs {
                if let Ok(list) = addresses_of(dev).await {
                    have.insert(dev.clone(), list);
                }
            }
            let present = |dev: &str, addr: &str| have.get(dev).is_some_and(|s| s.contains(addr));
            for (dev, addr) in owned.difference(&wanted) {
                if present(dev, addr) {
                    batch.push_str(&format!("addr del {addr} dev {dev}\n"));
                }
            }
            // HA: VIPs another instance holds must not linger here (a killed earlier run).
            for a in &net.absent {
                if !owned.contains(&(a.interface.clone(), a.address.clone()))
                    && present(&a.interface, &a.address)
                {
                    batch.push_str(&format!("addr del {} dev {}\n", a.address, a.interface));
                }
            }
            let mut added = Vec::new();
            for (dev, addr) in &wanted {
                if !have.contains_key(dev) {
                    addresses_of(dev).await?;
                }
                if !present(dev, addr) {
                    batch.push_str(&format!("addr add {addr} dev {dev}\n"));
                    added.extend(
                        addr.split('/')
                            .next()
                            .and_then(|a| a.parse::<std::net::IpAddr>().ok()),
                    );
                }
            }
            if !batch.is_empty() {
                tool::run("ip", &["-batch", "-"], Some(&batch)).await?;
            }
            if let Ok(mut o) = self.owned.lock() {
                *o = wanted;
            }
            // Routes (after addresses: a next hop must be on-link first).
            let have = our_routes().await?;
            let mut batch = String::new();
            // A planned route without an interface lets the kernel choose: any interface matches.
            let same = |a: &RouteEntry, b: &RouteEntry| {
                a.destination == b.destination
                    && a.via == b.via
                    && a.source == b.source
                    && (a.interface.is_empty()
                        || b.interface.is_empty()
                        || a.interface == b.interface)
            };
            for r in &have {
                if !net.routes.iter().any(|w| same(w, r)) {
                    batch.push_str(&format!("route del {} proto {RT_PROTO}\n", r.destination));
                }
            }
            for r in &net.routes {
                if !have.iter().any(|h| same(r, h)) {
                    let dev = if r.interface.is_empty() {
                        String::new()
                    } else {
                        format!(" dev {}", r.interface)
                    };
                    let via = if r.via.is_empty() {
                        String::new()
                    } else {
                        format!(" via {}", r.via)
                    };
                    let src = if r.source.is_empty() {
                        String::new()
                    } else {
                        format!(" src {}", r.source)
                    };
                    batch.push_str(&format!(
                        "route replace {}{via}{dev}{src} proto {RT_PROTO}\n",
                        r.destination
                    ));
                }
            }
            if !batch.is_empty() {
                tool::run("ip", &["-batch", "-"], Some(&batch)).await?;
            }
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
