//! The nftables driver: replaces the `inet kawaii` table in one transaction (`nft -f -`), never
//! touching any other table, and reads the rule counters back (`nft -j list table`): those of
//! commented rules, and those of set elements summed per rule (the element's comment). When it
//! writes counting rules again (a replace, a refilled chain), it carries their counts into the
//! script, so a restart or a change does not reset them.

use crate::{Applied, ApplyFuture, Driver, DriverError, DriverName, tool};
use kawaii_plan::Plan;
use kawaii_plan::nft::{Carried, Change, Table};
use serde::Serialize;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Nftables {
    /// The table last applied successfully: the next apply patches only the chains that changed
    /// (or does nothing when none did).
    last: Mutex<Option<Table>>,
    /// The counters as last read ([`Nftables::read_counters`], every 2 s and after changes):
    /// what a patch that refills chains carries into them, without a read on the way.
    recent: Mutex<Vec<RuleCounter>>,
    /// Held by an apply and by a read: a read never falls between an apply's choice of counts
    /// and its transaction, so no count is shown that a carried value then undercuts, and the
    /// counters `/metrics` shows never go down while the table lives (Prometheus would take a
    /// drop for a reset).
    io: tokio::sync::Mutex<()>,
}

impl Nftables {
    pub fn new() -> Nftables {
        Nftables::default()
    }

    /// Reads every commented counter of the table, and keeps them for the next patch.
    pub async fn read_counters(&self) -> Result<Vec<RuleCounter>, DriverError> {
        let _io = self.io.lock().await;
        self.read_held().await
    }

    /// [`Nftables::read_counters`] with `io` held by the caller.
    async fn read_held(&self) -> Result<Vec<RuleCounter>, DriverError> {
        let list = counters().await?;
        if let Ok(mut r) = self.recent.lock() {
            r.clone_from(&list);
        }
        Ok(list)
    }

    /// The counts to write into what this apply writes again (`io` held). A replace (a
    /// restart's first apply, or after a failure) reads the kernel first: nothing else is
    /// waiting on it. A patch that refills chains uses the last read (at most 2 s old) and so
    /// costs no `nft` run on the way of an API change; what those rules counted since is lost.
    async fn carried(&self, change: Change) -> Carried {
        match change {
            Change::Replace => self
                .read_held()
                .await
                .map(|l| carry(&l))
                .unwrap_or_default(),
            Change::Patch { refills: true } => {
                self.recent.lock().map(|r| carry(&r)).unwrap_or_default()
            }
            Change::Patch { refills: false } => Carried::default(),
        }
    }
}

impl Driver for Nftables {
    fn name(&self) -> DriverName {
        DriverName::Nftables
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> ApplyFuture<'a> {
        Box::pin(async move {
            let Some(table) = &plan.nftables else {
                return Ok(Applied::quiet());
            };
            let _io = self.io.lock().await;
            let prev = self.last.lock().ok().and_then(|l| l.clone());
            // What is written again keeps its counts (a restart's first apply replaces the
            // whole table). Without them (no table yet, or the read failed) it starts at 0.
            let change = table.change_from(prev.as_ref());
            let mut carried = self.carried(change).await;
            let script = match (change, &prev) {
                (Change::Patch { .. }, Some(p)) => table.render_patch(p, &mut carried),
                _ => table.render_carrying(&mut carried),
            };
            if script.is_empty() {
                return Ok(Applied::quiet());
            }
            // One `nft -f` input is one kernel transaction: on error nothing changes.
            let result = tool::run("nft", &["-f", "-"], Some(&script)).await;
            if let Ok(mut l) = self.last.lock() {
                // After a failure, forget what we think is there: the next apply replaces all.
                *l = result.is_ok().then(|| table.clone());
            }
            result.map(|_| Applied::quiet())
        })
    }
}

/// Makes the kernel track connections in this network namespace before the daemon opens
/// long-lived ones (the etcd store's). With the SYN proxy on, `nf_conntrack_tcp_loose = 0` makes
/// conntrack refuse any TCP flow it did not see start, so a connection opened before the first
/// table was loaded would go dead. When kawaii's table is there already (a restart), tracking
/// is on; otherwise a first `inet kawaii` table that only counts (as open as the host was
/// before kawaii ran) turns it on, and the first apply replaces it whole.
pub async fn track_connections() -> Result<(), DriverError> {
    use kawaii_plan::nft::TABLE;
    if tool::run("nft", &["list", "table", "inet", TABLE], None)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let first = format!(
        "table inet {TABLE} {{\n\tchain conntrack {{\n\t\ttype filter hook prerouting priority raw + 10; policy accept;\n\t\tct state invalid counter\n\t}}\n}}\n"
    );
    tool::run("nft", &["-f", "-"], Some(&first))
        .await
        .map(|_| ())
}

/// One rule's counter, named by its comment. A rule rendered as set elements is named by their
/// comment, and its chain is the set's name (the chain that looks the set up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RuleCounter {
    pub chain: String,
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The counters as values to carry into a rewrite, in the order they were read.
pub fn carry(list: &[RuleCounter]) -> Carried {
    let mut c = Carried::default();
    for r in list {
        c.push(&r.chain, &r.rule, r.packets, r.bytes);
    }
    c
}

/// Reads every commented counter of the table.
pub async fn counters() -> Result<Vec<RuleCounter>, DriverError> {
    let text = tool::run(
        "nft",
        &["-j", "list", "table", "inet", kawaii_plan::nft::TABLE],
        None,
    )
    .await?;
    parse_counters(&text)
}

/// Parses `nft -j list table` output into counters (pure, tested on captured output).
pub fn parse_counters(json: &str) -> Result<Vec<RuleCounter>, DriverError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| DriverError::transient_from("nft -j output", e))?;
    let mut out: Vec<RuleCounter> = Vec::new();
    // (chain, rule) -> index in `out`, to sum the elements of one rule.
    let mut seen = std::collections::HashMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        if let Some(set) = item.get("set") {
            let Some(name) = set["name"].as_str() else {
                continue;
            };
            for e in set["elem"].as_array().into_iter().flatten() {
                let e = &e["elem"];
                let (Some(comment), Some(c)) = (e["comment"].as_str(), e.get("counter")) else {
                    continue;
                };
                let (packets, bytes) = (
                    c["packets"].as_u64().unwrap_or(0),
                    c["bytes"].as_u64().unwrap_or(0),
                );
                let key = (name.to_string(), comment.to_string());
                if let Some(&i) = seen.get(&key) {
                    let r: &mut RuleCounter = &mut out[i];
                    r.packets += packets;
                    r.bytes += bytes;
                } else {
                    seen.insert(key, out.len());
                    out.push(RuleCounter {
                        chain: name.to_string(),
                        rule: comment.to_string(),
                        packets,
                        bytes,
                    });
                }
            }
            continue;
        }
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let (Some(chain), Some(comment)) = (rule["chain"].as_str(), rule["comment"].as_str())
        else {
            continue;
        };
        for e in rule["expr"].as_array().into_iter().flatten() {
            if let Some(c) = e.get("counter") {
                out.push(RuleCounter {
                    chain: chain.to_string(),
                    rule: comment.to_string(),
                    packets: c["packets"].as_u64().unwrap_or(0),
                    bytes: c["bytes"].as_u64().unwrap_or(0),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "kawaii", "handle": 1}},
          {"rule": {"family": "inet", "table": "kawaii", "chain": "input", "handle": 7, "comment": "ingress-1",
            "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}},
                     {"counter": {"packets": 12, "bytes": 720}}, {"accept": null}]}},
          {"rule": {"family": "inet", "table": "kawaii", "chain": "input", "handle": 8,
            "expr": [{"accept": null}]}}]}"#;
        let c = parse_counters(json).expect("parses");
        assert_eq!(
            c,
            vec![RuleCounter {
                chain: "input".into(),
                rule: "ingress-1".into(),
                packets: 12,
                bytes: 720
            }]
        );
    }

    /// What was read goes back into the same rules when the table is written again.
    #[test]
    fn read_counters_are_carried_into_a_rewrite() {
        let read = [("input", "ingress-1", 12, 720), ("input", "drop", 3, 180)];
        let list: Vec<RuleCounter> = read
            .iter()
            .map(|&(chain, rule, packets, bytes)| RuleCounter {
                chain: chain.into(),
                rule: rule.into(),
                packets,
                bytes,
            })
            .collect();
        let table = Table {
            chains: vec![kawaii_plan::nft::Chain {
                name: "input".into(),
                hook: None,
                rules: vec![
                    "iifname \"wan0\" counter accept comment \"ingress-1\"".into(),
                    "counter drop comment \"drop\"".into(),
                ],
            }],
            ..Table::default()
        };
        let script = table.render_carrying(&mut carry(&list));
        assert!(
            script.contains(
                "iifname \"wan0\" counter packets 12 bytes 720 accept comment \"ingress-1\""
            ) && script.contains("counter packets 3 bytes 180 drop comment \"drop\""),
            "{script}"
        );
    }

    /// A patch that refills a chain carries the counts read last, without an `nft` run; one
    /// that rewrites nothing counting carries nothing.
    #[tokio::test]
    async fn a_patch_carries_the_last_read_counts() {
        let chain = |rules: &[&str]| Table {
            chains: vec![kawaii_plan::nft::Chain {
                name: "forward".into(),
                hook: None,
                rules: rules.iter().map(|r| r.to_string()).collect(),
            }],
            ..Table::default()
        };
        let before = chain(&["counter drop comment \"drop\""]);
        let after = chain(&[
            "ip daddr 10.9.0.0/24 counter accept comment \"vpn-x\"",
            "counter drop comment \"drop\"",
        ]);
        let nft = Nftables::new();
        if let Ok(mut r) = nft.recent.lock() {
            *r = vec![RuleCounter {
                chain: "forward".into(),
                rule: "drop".into(),
                packets: 5,
                bytes: 300,
            }];
        }
        let change = after.change_from(Some(&before));
        let mut carried = nft.carried(change).await;
        let patch = after.render_patch(&before, &mut carried);
        assert!(
            patch.contains("counter packets 5 bytes 300 drop comment \"drop\""),
            "{patch}"
        );
        let mut none = nft.carried(before.change_from(Some(&before))).await;
        assert!(none.is_empty(), "nothing refilled, nothing carried");
        assert_eq!(before.render_patch(&before, &mut none), "");
    }

    #[test]
    fn sums_set_element_counters_per_rule() {
        // Captured from nft 1.0.6 (`nft -j list table inet kawaii`), trimmed.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
          {"table": {"family": "inet", "name": "kawaii", "handle": 3}},
          {"set": {"family": "inet", "name": "ingress", "table": "kawaii", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 1, "flags": ["interval"],
            "elem": [{"elem": {"val": {"concat": [{"prefix": {"addr": "0.0.0.0", "len": 0}}, "tcp", 22]}, "comment": "ingress-1", "counter": {"packets": 3, "bytes": 180}}},
                     {"elem": {"val": {"concat": [{"prefix": {"addr": "0.0.0.0", "len": 0}}, "tcp", 80]}, "comment": "ingress-1", "counter": {"packets": 2, "bytes": 120}}},
                     {"elem": {"val": {"concat": ["198.51.100.7", "udp", {"range": [5000, 5010]}]}, "comment": "ingress-2", "counter": {"packets": 0, "bytes": 0}}}]}},
          {"set": {"family": "inet", "name": "egress", "table": "kawaii", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 2, "flags": ["interval"]}},
          {"rule": {"family": "inet", "table": "kawaii", "chain": "ingress", "handle": 9, "comment": "ingress-3",
            "expr": [{"counter": {"packets": 1, "bytes": 60}}, {"accept": null}]}}]}"#;
        let c = parse_counters(json).expect("parses");
        let got: Vec<_> = c
            .iter()
            .map(|r| (r.chain.as_str(), r.rule.as_str(), r.packets, r.bytes))
            .collect();
        assert_eq!(
            got,
            [
                ("ingress", "ingress-1", 5, 300),
                ("ingress", "ingress-2", 0, 0),
                ("ingress", "ingress-3", 1, 60)
            ]
        );
    }
}
