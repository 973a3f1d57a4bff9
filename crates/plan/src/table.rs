//! The `inet kawaii` table as data: chains of rule lines, interval sets with a counter per
//! element, and meters, rendered as one `nft -f` transaction that replaces the table, or as a
//! patch that touches only what changed. Either may carry counter values (`Carried`) into the
//! rules and elements it writes again, so a restarted daemon's full replace or a refilled chain
//! keeps counting from where the kernel was instead of from zero.

use crate::nft::{TABLE, quote};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write;

/// How an applied table becomes the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// One transaction that deletes the table and declares it again: every counter is new.
    Replace,
    /// Only what changed is written; `refills`: some chain that counts already is flushed and
    /// written again (its counters are worth carrying).
    Patch { refills: bool },
}

/// Counter values read from the kernel before a rewrite, per chain (or set) and comment, in the
/// order the rules stand; each value goes to the next rule written with that chain and comment
/// (a set's: to its first element with that comment, as the read-back sums them per rule).
#[derive(Debug, Clone, Default)]
pub struct Carried(HashMap<(String, String), VecDeque<(u64, u64)>>);

impl Carried {
    /// No value to carry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn push(&mut self, chain: &str, comment: &str, packets: u64, bytes: u64) {
        let key = (chain.to_string(), comment.to_string());
        self.0.entry(key).or_default().push_back((packets, bytes));
    }

    fn take(&mut self, chain: &str, comment: &str) -> Option<(u64, u64)> {
        if self.0.is_empty() {
            return None;
        }
        let key = (chain.to_string(), comment.to_string());
        self.0.get_mut(&key)?.pop_front().filter(|&v| v != (0, 0))
    }

    /// `rule` with its counter's values, if it has a counter and a comment and a value is
    /// carried for them: `... counter accept comment "x"` becomes `... counter packets P bytes B
    /// accept comment "x"`.
    pub(crate) fn rule<'r>(&mut self, chain: &str, rule: &'r str) -> Cow<'r, str> {
        let Some(at) = rule.rfind(" comment \"").filter(|_| !self.0.is_empty()) else {
            return Cow::Borrowed(rule);
        };
        let comment = rule[at + 10..].trim_end_matches('"');
        let head = &rule[..at];
        // The counter statement is the last `counter` word before the comment.
        let end = if head.ends_with(" counter") || head == "counter" {
            head.len()
        } else if let Some(i) = head.rfind(" counter ") {
            i + " counter".len()
        } else if head.starts_with("counter ") {
            "counter".len()
        } else {
            return Cow::Borrowed(rule);
        };
        match self.take(chain, comment) {
            Some((p, b)) => {
                format!("{} packets {p} bytes {b}{}", &rule[..end], &rule[end..]).into()
            }
            None => Cow::Borrowed(rule),
        }
    }
}

/// The table as chains of rule lines and sets of elements, so the driver can replace it whole
/// or patch only the chains and elements that changed (one transaction either way).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    pub chains: Vec<Chain>,
    pub sets: Vec<Set>,
    /// Dynamic sets the kernel fills (per-source limits); never patched, only declared.
    pub meters: Vec<Meter>,
}

/// A dynamic set keyed by source address, filled by `update`/`add` rules (nftables meters).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Meter {
    pub name: String,
    pub size: u32,
    /// Idle elements expire after this (`1m`); None: elements go when their state empties.
    pub timeout: Option<&'static str>,
    /// Keyed by IPv6 source addresses (else IPv4).
    pub v6: bool,
}

impl Meter {
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "\tset {} {{", self.name);
        let _ = writeln!(
            out,
            "\t\ttype {}",
            if self.v6 { "ipv6_addr" } else { "ipv4_addr" }
        );
        let _ = writeln!(out, "\t\tsize {}", self.size);
        match self.timeout {
            Some(t) => {
                let _ = writeln!(out, "\t\tflags dynamic,timeout");
                let _ = writeln!(out, "\t\ttimeout {t}");
            }
            None => {
                let _ = writeln!(out, "\t\tflags dynamic");
            }
        }
        let _ = writeln!(out, "\t}}");
    }
}

/// A named interval set with a counter per element. A set is named like the chain that looks
/// it up, and each element's comment is the id of the rule it came from (a rule with several
/// port ranges is several elements).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Set {
    pub name: String,
    /// `ipv4_addr . inet_proto . inet_service`
    pub key_type: String,
    pub elements: Vec<Element>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Element {
    /// `198.51.100.0/24 . tcp . 8000-8080`
    pub key: String,
    pub rule: String,
}

impl Element {
    fn render(&self) -> String {
        format!("{} comment {}", self.key, quote(&self.rule))
    }

    /// With its set's carried counter values, if any (`KEY counter packets P bytes B comment`).
    fn render_carrying(&self, set: &str, carried: &mut Carried) -> String {
        match carried.take(set, &self.rule) {
            Some((p, b)) => format!(
                "{} counter packets {p} bytes {b} comment {}",
                self.key,
                quote(&self.rule)
            ),
            None => self.render(),
        }
    }
}

impl Set {
    pub(crate) fn new(name: &str, key_type: &str) -> Set {
        Set {
            name: name.into(),
            key_type: key_type.into(),
            elements: Vec::new(),
        }
    }
    fn render(&self, out: &mut String, carried: &mut Carried) {
        let _ = writeln!(out, "\tset {} {{", self.name);
        let _ = writeln!(out, "\t\ttype {}", self.key_type);
        let _ = writeln!(out, "\t\tflags interval");
        let _ = writeln!(out, "\t\tcounter");
        if !self.elements.is_empty() {
            let items: Vec<String> = self
                .elements
                .iter()
                .map(|e| e.render_carrying(&self.name, carried))
                .collect();
            let _ = writeln!(out, "\t\telements = {{ {} }}", items.join(",\n\t\t\t     "));
        }
        let _ = writeln!(out, "\t}}");
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chain {
    pub name: String,
    /// `type filter hook input priority filter; policy drop;` for base chains.
    pub hook: Option<String>,
    pub rules: Vec<String>,
}

impl Chain {
    pub(crate) fn new(name: &str, hook: Option<&str>) -> Chain {
        Chain {
            name: name.into(),
            hook: hook.map(String::from),
            rules: Vec::new(),
        }
    }
    pub(crate) fn rule(&mut self, r: String) {
        self.rules.push(r);
    }
    fn render(&self, out: &mut String, carried: &mut Carried) {
        let _ = writeln!(out, "\tchain {} {{", self.name);
        if let Some(h) = &self.hook {
            let _ = writeln!(out, "\t\t{h}");
        }
        self.render_rules(out, carried);
        let _ = writeln!(out, "\t}}");
    }

    fn render_rules(&self, out: &mut String, carried: &mut Carried) {
        for r in &self.rules {
            let _ = writeln!(out, "\t\t{}", carried.rule(&self.name, r));
        }
    }
}

impl Table {
    /// The `nft -f` script that replaces the whole table in one transaction, whatever existed.
    pub fn render(&self) -> String {
        self.render_carrying(&mut Carried::default())
    }

    /// [`Table::render`], with the counter values of `carried` in its rules and elements.
    pub fn render_carrying(&self, carried: &mut Carried) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "table inet {TABLE} {{}}");
        let _ = writeln!(s, "delete table inet {TABLE}");
        let _ = writeln!(s, "table inet {TABLE} {{");
        for m in &self.meters {
            m.render(&mut s);
        }
        for set in &self.sets {
            set.render(&mut s, carried);
        }
        for c in &self.chains {
            c.render(&mut s, carried);
        }
        let _ = writeln!(s, "}}");
        s
    }

    /// A script that turns `prev` (applied) into `self` by deleting and adding only the set
    /// elements that changed, flushing and refilling only the chains whose rules changed, and
    /// adding or deleting whole chains, sets and meters that appear or go (a new peering's
    /// chains, a new rate limit's meter); None when a base chain, or a set or meter that both
    /// have, is declared differently (replace the table). Counters of untouched elements and
    /// chains survive.
    pub fn patch_from(&self, prev: &Table) -> Option<String> {
        self.patch_carrying(prev, &mut Carried::default())
    }

    /// How `prev` (applied, or None) becomes this table, decided without rendering anything.
    pub fn change_from(&self, prev: Option<&Table>) -> Change {
        match prev {
            Some(p) if self.patchable(p) => Change::Patch {
                refills: self.chains.iter().any(|c| {
                    p.chains
                        .iter()
                        .any(|old| old.name == c.name && old.rules != c.rules)
                }),
            },
            _ => Change::Replace,
        }
    }

    /// [`Table::patch_from`], with the counter values of `carried` in the refilled chains.
    pub fn patch_carrying(&self, prev: &Table, carried: &mut Carried) -> Option<String> {
        self.patchable(prev)
            .then(|| self.render_patch(prev, carried))
    }

    /// Whether every base chain, and every set and meter both tables have, is declared alike.
    fn patchable(&self, prev: &Table) -> bool {
        let base = |t: &Table| {
            t.chains
                .iter()
                .filter(|c| c.hook.is_some())
                .map(|c| (c.name.clone(), c.hook.clone()))
                .collect::<Vec<_>>()
        };
        let set_kept = |set: &Set| {
            prev.sets
                .iter()
                .find(|p| p.name == set.name)
                .is_none_or(|p| p.key_type == set.key_type)
        };
        // A name is either a set or a meter: one that changes kind is a new declaration.
        base(self) == base(prev)
            && self.sets.iter().all(set_kept)
            && self
                .meters
                .iter()
                .all(|m| !prev.meters.iter().any(|p| p.name == m.name && p != m))
            && !self
                .sets
                .iter()
                .any(|s| prev.meters.iter().any(|m| m.name == s.name))
            && !self
                .meters
                .iter()
                .any(|m| prev.sets.iter().any(|s| s.name == m.name))
    }

    /// The patch script from `prev`, for a [`Change::Patch`] from [`Table::change_from`] (a
    /// table that cannot be patched gets a script `nft` refuses as a whole). Empty: nothing to do.
    pub fn render_patch(&self, prev: &Table, carried: &mut Carried) -> String {
        let set_names = |t: &Table| -> BTreeSet<String> {
            t.sets
                .iter()
                .map(|s| s.name.clone())
                .chain(t.meters.iter().map(|m| m.name.clone()))
                .collect()
        };
        let (ours, theirs) = (set_names(self), set_names(prev));
        let mut s = String::new();
        // New sets, meters and chains first: refilled chains may refer to them.
        let mut declare = String::new();
        for m in self.meters.iter().filter(|m| !theirs.contains(&m.name)) {
            m.render(&mut declare);
        }
        for set in self.sets.iter().filter(|x| !theirs.contains(&x.name)) {
            set.render(&mut declare, &mut Carried::default());
        }
        let old_chain = |name: &str| prev.chains.iter().find(|c| c.name == name);
        for c in self.chains.iter().filter(|c| old_chain(&c.name).is_none()) {
            let _ = writeln!(declare, "\tchain {} {{\n\t}}", c.name);
        }
        if !declare.is_empty() {
            let _ = write!(s, "table inet {TABLE} {{\n{declare}}}\n");
        }
        // Deletions first: an element that changes only its rule id is deleted and added back
        // in the same transaction.
        let mut added = Vec::new();
        for set in &self.sets {
            let Some(p) = prev.sets.iter().find(|p| p.name == set.name) else {
                continue;
            };
            let new: BTreeSet<&Element> = set.elements.iter().collect();
            let old: BTreeSet<&Element> = p.elements.iter().collect();
            let gone: Vec<&str> = old.difference(&new).map(|e| e.key.as_str()).collect();
            if !gone.is_empty() {
                let _ = writeln!(
                    s,
                    "delete element inet {TABLE} {} {{ {} }}",
                    set.name,
                    gone.join(", ")
                );
            }
            let add: Vec<String> = new.difference(&old).map(|e| e.render()).collect();
            if !add.is_empty() {
                added.push(format!(
                    "add element inet {TABLE} {} {{ {} }}\n",
                    set.name,
                    add.join(", ")
                ));
            }
        }
        for c in &self.chains {
            let old = old_chain(&c.name);
            if old.is_some_and(|p| p.rules == c.rules) || (old.is_none() && c.rules.is_empty()) {
                continue;
            }
            if old.is_some() {
                let _ = writeln!(s, "flush chain inet {TABLE} {}", c.name);
            }
            let _ = writeln!(s, "table inet {TABLE} {{");
            let _ = writeln!(s, "\tchain {} {{", c.name);
            c.render_rules(&mut s, carried);
            let _ = writeln!(s, "\t}}\n}}");
        }
        // What goes: emptied first (their rules may jump to each other or look sets up), then
        // deleted once nothing refers to them.
        let gone: Vec<&Chain> = prev
            .chains
            .iter()
            .filter(|p| !self.chains.iter().any(|c| c.name == p.name))
            .collect();
        for c in &gone {
            let _ = writeln!(s, "flush chain inet {TABLE} {}", c.name);
        }
        for c in &gone {
            let _ = writeln!(s, "delete chain inet {TABLE} {}", c.name);
        }
        for name in theirs.difference(&ours) {
            let _ = writeln!(s, "delete set inet {TABLE} {name}");
        }
        s.extend(added);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_values_go_into_the_counter_of_the_rule_they_name() {
        let mut c = Carried::default();
        c.push("input", "invalid", 7, 420);
        c.push("forward", "drop", 3, 180);
        c.push("forward", "drop", 0, 0);
        let invalid = "ct state invalid counter drop comment \"invalid\"";
        let drop = "counter drop comment \"drop\"";
        // Taken once: a second rule of that name (or a second apply) gets nothing more. Rules
        // that share a comment take their values in order; zero is left unwritten.
        let want = [
            (
                "input",
                invalid,
                "ct state invalid counter packets 7 bytes 420 drop comment \"invalid\"",
            ),
            ("input", invalid, invalid),
            (
                "forward",
                drop,
                "counter packets 3 bytes 180 drop comment \"drop\"",
            ),
            ("forward", drop, drop),
        ];
        for (chain, rule, carried) in want {
            assert_eq!(c.rule(chain, rule), carried);
        }
        // Another chain's rule of that name, a rule without a counter, or without a comment.
        c.push("input", "nat-1", 5, 5);
        for rule in [
            "ip daddr 203.0.113.10 tcp dport 80 dnat ip to 10.1.0.10 comment \"nat-1\"",
            "ip saddr . meta l4proto . th dport @ingress counter accept",
        ] {
            assert_eq!(c.rule("input", rule), rule);
        }
        assert_eq!(
            c.rule("output", "counter accept comment \"invalid\""),
            "counter accept comment \"invalid\""
        );
        // The counter is the statement, not a word in an interface name before it.
        c.push("egress", "egress-2", 1, 60);
        assert_eq!(
            c.rule(
                "egress",
                "oifname \"counter\" tcp dport 25 counter drop comment \"egress-2\""
            ),
            "oifname \"counter\" tcp dport 25 counter packets 1 bytes 60 drop comment \"egress-2\""
        );
    }

    /// What an apply does, decided before anything is rendered: a base chain or a set declared
    /// differently replaces the table; otherwise a patch, which refills only changed chains.
    #[test]
    fn a_change_is_a_replace_only_when_a_declaration_differs() {
        let table = |hook: &str, key: &str, rules: &[&str]| {
            let mut input = Chain::new("input", Some(hook));
            for r in rules {
                input.rule(r.to_string());
            }
            Table {
                chains: vec![input, Chain::new("opened", None)],
                sets: vec![Set::new("ingress", key)],
                meters: Vec::new(),
            }
        };
        let hook = "type filter hook input priority 0; policy drop;";
        let one = table(hook, "ipv4_addr", &["counter accept"]);
        let cases = [
            (
                table(hook, "ipv4_addr", &["counter accept"]),
                Change::Patch { refills: false },
            ),
            (
                table(hook, "ipv4_addr", &["counter drop"]),
                Change::Patch { refills: true },
            ),
            (
                table(
                    "type filter hook input priority 1; policy drop;",
                    "ipv4_addr",
                    &[],
                ),
                Change::Replace,
            ),
            (
                table(hook, "ipv6_addr", &["counter accept"]),
                Change::Replace,
            ),
        ];
        for (i, (next, want)) in cases.iter().enumerate() {
            assert_eq!(next.change_from(Some(&one)), *want, "case {i}");
            let patch = next.patch_carrying(&one, &mut Carried::default());
            assert_eq!(patch.is_some(), *want != Change::Replace, "case {i}");
        }
        assert_eq!(one.render_patch(&one, &mut Carried::default()), "");
        assert_eq!(one.change_from(None), Change::Replace);
    }

    #[test]
    fn a_sets_carried_sum_goes_to_its_first_element_of_the_rule() {
        let mut set = Set::new("ingress", "ipv4_addr . inet_proto . inet_service");
        for port in [22, 80] {
            set.elements.push(Element {
                key: format!("0.0.0.0/0 . tcp . {port}"),
                rule: "ingress-1".into(),
            });
        }
        let mut c = Carried::default();
        c.push("ingress", "ingress-1", 9, 540);
        let mut out = String::new();
        set.render(&mut out, &mut c);
        assert!(
            out.contains(
                "0.0.0.0/0 . tcp . 22 counter packets 9 bytes 540 comment \"ingress-1\",\n\t\t\t     0.0.0.0/0 . tcp . 80 comment \"ingress-1\""
            ),
            "{out}"
        );
    }
}
