//! Golden files for every rendered artefact: `testdata/render/<case>/config.toml` in,
//! `nft.txt` and `routes.txt` out. `UPDATE_GOLDEN=1 cargo test -p kawaii-plan` regenerates them;
//! read the diff in review. Every golden ruleset is also checked by the real `nft -c` inside a
//! throwaway network namespace.

use kawaii_model::{Format, Gateway, validate};
use kawaii_plan::nft::{Carried, Change, Table};
use kawaii_testkit::golden::{check_golden, nft_check_file};
use kawaii_testkit::{Host, Topology};
use std::path::Path;

fn cases() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render");
    let mut v: Vec<_> = std::fs::read_dir(root)
        .expect("testdata")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

/// The inline PSK of a case's config (or a marker that never matches).
fn secret_of(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.trim().strip_prefix("pre_shared_key = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "\u{0}no-psk".into())
}

#[test]
fn rendered_artefacts_match_golden_files() {
    for case in cases() {
        let text = std::fs::read_to_string(case.join("config.toml")).expect("config");
        let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
        g.prepare_commit(&Gateway::default());
        let d = validate(&g).expect("valid").desired;
        let plan = kawaii_plan::plan(&d, None).expect("plan");
        check_golden(
            &case.join("nft.txt"),
            &plan.nftables.as_ref().expect("a zone has a table").render(),
        );
        check_golden(&case.join("routes.txt"), &plan.net.render());
        let ipsec = serde_json::to_string_pretty(&plan.ipsec).expect("json") + "\n";
        assert!(
            !ipsec.contains(&secret_of(&text)),
            "{}: a PSK leaked into ipsec.json",
            case.display()
        );
        check_golden(&case.join("ipsec.json"), &ipsec);
        if let Some(router) = &plan.router {
            check_golden(
                &case.join("router.json"),
                &(serde_json::to_string_pretty(router).expect("json") + "\n"),
            );
        }
        if !plan.ra.is_empty() {
            check_golden(
                &case.join("ra.json"),
                &(serde_json::to_string_pretty(&plan.ra).expect("json") + "\n"),
            );
        }
        if !plan.pipes.is_empty() {
            check_golden(
                &case.join("pipes.json"),
                &(serde_json::to_string_pretty(&plan.pipes).expect("json") + "\n"),
            );
        }
        if let Some(wg) = &plan.wireguard {
            let rendered = wg.render();
            for secret in text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("preshared_key = "))
            {
                assert!(!rendered.contains(secret.trim_matches('"')), "a PSK leaked");
            }
            check_golden(&case.join("wireguard.txt"), &rendered);
            // showconf of every peer, as an operator sees it (secrets included) and as a viewer.
            let zone = d.zones.first();
            for p in &wg.peers {
                let conf = kawaii_plan::wireguard::peer_conf(
                    &d,
                    zone,
                    &p.name,
                    "gF6+fnmnOkWDbtcJUmHDFtX+kxIEgd5gNp7CzYZ3+Xs=",
                )
                .expect("showconf");
                let file = format!("showconf-{}.conf", p.name.replace(' ', "-"));
                check_golden(&case.join(&file), &conf.render(true));
                // With an IPv6 VIP, also the file for a peer that comes over IPv6.
                if let Ok(six) = conf.over_ipv6() {
                    let file = file.replace(".conf", "-ipv6.conf");
                    check_golden(&case.join(file), &six.render(true));
                }
            }
        }
    }
}

/// Patching only the changed elements and chains gives the same table as replacing it.
#[test]
fn patches_touch_only_changed_chains() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render/example/config.toml"),
    )
    .expect("config");
    let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
    g.assign_rule_ids(&Gateway::default());
    let before = kawaii_plan::plan(&validate(&g).expect("valid").desired, None)
        .expect("plan")
        .nftables
        .expect("table");
    let mut g2 = g.clone();
    g2.egress_rules[0].ports = "26".into();
    let after = kawaii_plan::plan(&validate(&g2).expect("valid").desired, None)
        .expect("plan")
        .nftables
        .expect("table");
    let patch = after.patch_from(&before).expect("same layout");
    // A disjoint egress rule is a set element: the patch swaps one element, no chain.
    assert_eq!(
        patch,
        "delete element inet kawaii egress { 0.0.0.0/0 . tcp . 25 }\n\
         add element inet kawaii egress { 0.0.0.0/0 . tcp . 26 comment \"egress-1\" }\n"
    );
    assert_eq!(before.patch_from(&before).as_deref(), Some(""));
    // Applied for real: full table, then the patch, equals the full new table.
    let (_t, nft) = netns("patch");
    nft.apply(&before.render());
    nft.apply(&patch);
    let patched = nft.list();
    nft.apply(&after.render());
    assert_eq!(patched, nft.list());
}

#[test]
fn golden_rulesets_pass_nft_check() {
    for case in cases() {
        let file = case.join("nft.txt");
        nft_check_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

/// The example's table, and the same with an egress rule that overlaps egress-1 (tcp 20-30):
/// both rules move from the egress set into the egress chain.
fn example_and_an_overlapping_egress_rule() -> (Table, Table) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render/example/config.toml"),
    )
    .expect("config");
    let table = |g: &Gateway| {
        kawaii_plan::plan(&validate(g).expect("valid").desired, None)
            .expect("plan")
            .nftables
            .expect("table")
    };
    let mut g = Gateway::parse(&text, Format::Toml).expect("parses");
    g.assign_rule_ids(&Gateway::default());
    let mut g2 = g.clone();
    let mut extra = g2.egress_rules[0].clone();
    extra.id = None;
    extra.ports = "20-30".into();
    g2.egress_rules.push(extra);
    g2.assign_rule_ids(&g);
    (table(&g), table(&g2))
}

/// A rule that starts or stops overlapping another moves between the set and the chain; the
/// patch, applied for real after the old table, gives the same table as the new one whole.
#[test]
fn patches_move_rules_between_set_and_chain() {
    let (one, two) = example_and_an_overlapping_egress_rule();
    let patch = two.patch_from(&one).expect("same layout");
    assert!(
        patch.contains("delete element inet kawaii egress { 0.0.0.0/0 . tcp . 25 }")
            && patch.contains("flush chain inet kawaii egress")
            && patch.contains("tcp dport 20-30 counter drop comment \"egress-2\""),
        "{patch}"
    );
    let (_t, nft) = netns("move");
    // Counters of untouched elements survive a patch (values planted, no traffic needed).
    let planted = "0.0.0.0/0 . tcp . 22 counter packets 5 bytes 300 comment \"ingress-1\"";
    nft.apply(&one.render());
    nft.plant("ingress", planted);
    nft.apply(&patch);
    nft.assert_counted(planted, &patch);
    for (from, to) in [(&one, &two), (&two, &one)] {
        nft.apply(&from.render());
        nft.apply(&to.patch_from(from).expect("same layout"));
        let patched = nft.list();
        nft.apply(&to.render());
        assert_eq!(patched, nft.list());
    }
}

/// Unrelated changes that add or remove whole chains and meters (a peering, a rate limit) are
/// patches too, so an egress element's counter survives them; the patch, applied for real
/// after the old table, gives the same table as the new one whole.
#[test]
fn counters_survive_chains_and_meters_that_come_and_go() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render/example/config.toml"),
    )
    .expect("config");
    let table = |text: &str| {
        let mut g = Gateway::parse(text, Format::Toml).expect("parses");
        g.assign_rule_ids(&Gateway::default());
        kawaii_plan::plan(&validate(&g).expect("valid").desired, None)
            .expect("plan")
            .nftables
            .expect("table")
    };
    let one = table(&text);
    let two = table(&format!(
        "{text}\n[[vpc_peerings]]\nname = \"far\"\nsubnet = \"10.3.0.0/24\"\nvia = \"203.0.113.77\"\nconsent = \"none\"\ningress_rules = [{{ protocol = \"tcp\", ports = \"443\" }}]\n"
    )
    .replace("ports = \"5353\"\n\n[[egress", "ports = \"5353\"\nrate_limit = \"20/s\"\n\n[[egress"));
    assert_ne!(
        one.chains.len(),
        two.chains.len(),
        "the peering adds chains"
    );
    assert_ne!(one.meters, two.meters, "the rate limit adds a meter");
    let (_t, nft) = netns("layout");
    let planted = "0.0.0.0/0 . tcp . 25 counter packets 3 bytes 180 comment \"egress-1\"";
    // Sorted lines: a chain added by a patch is listed after the others.
    let sorted = |s: String| {
        let mut l: Vec<String> = s.lines().map(String::from).collect();
        l.sort();
        l
    };
    for (from, to) in [(&one, &two), (&two, &one)] {
        let patch = to.patch_from(from).expect("a patch, not a replacement");
        nft.apply(&from.render());
        nft.plant("egress", planted);
        nft.apply(&patch);
        nft.assert_counted(planted, &patch);
        let patched = sorted(nft.list());
        nft.apply(&to.render());
        assert_eq!(patched, sorted(nft.list()), "{patch}");
    }
}

/// A restarted daemon replaces the table whole, and a change may refill a chain: with the
/// kernel's counters carried into what is written again, both keep counting from where they
/// were, and untouched chains keep theirs (values planted through the script, no traffic).
#[test]
fn carried_counters_survive_a_replace_and_a_refilled_chain() {
    let (one, two) = example_and_an_overlapping_egress_rule();
    assert_eq!(one.change_from(None), Change::Replace, "a first apply");
    let unchanged = Change::Patch { refills: false };
    assert_eq!(one.change_from(Some(&one)), unchanged, "nothing to write");
    let refilled = Change::Patch { refills: true };
    assert_eq!(two.change_from(Some(&one)), refilled, "the egress chain");

    let (_t, nft) = netns("carry");
    nft.apply(&one.render());
    let mut carried = Carried::default();
    carried.push("input", "invalid", 7, 420);
    carried.push("ingress", "ingress-1", 9, 540);
    nft.apply(&one.render_carrying(&mut carried));
    let invalid = "ct state invalid counter packets 7 bytes 420 drop comment \"invalid\"";
    nft.assert_counted(invalid, "replace");
    nft.assert_counted(
        "0.0.0.0/0 . tcp . 22 counter packets 9 bytes 540 comment \"ingress-1\"",
        "replace",
    );
    let mut carried = Carried::default();
    carried.push("egress", "egress-policy", 4, 240);
    let patch = two.patch_carrying(&one, &mut carried).expect("a patch");
    nft.apply(&patch);
    nft.assert_counted(
        "counter packets 4 bytes 240 accept comment \"egress-policy\"",
        &patch,
    );
    nft.assert_counted(invalid, &patch);
    // The same table as without carrying, but for the values.
    let patched = nft.list();
    nft.apply(&two.render());
    assert_eq!(patched, nft.list());
}

/// A throwaway network namespace (removed with the topology) to apply scripts in.
fn netns(tag: &str) -> (Topology, Nft) {
    let mut t = Topology::new(tag).expect("topology (root)");
    let host = t.host("nft").expect("namespace");
    (t, Nft(host))
}

struct Nft(Host);

impl Nft {
    fn apply(&self, script: &str) {
        self.0
            .run_input(&["nft", "-f", "-"], script)
            .unwrap_or_else(|e| panic!("{e}\n{script}"));
    }

    /// Puts `element` (`KEY counter packets N bytes M comment "ID"`) in place of its key's
    /// element in `set`: counter values without traffic.
    fn plant(&self, set: &str, element: &str) {
        let key = element.split(" counter").next().unwrap_or(element);
        self.apply(&format!(
            "delete element inet kawaii {set} {{ {key} }}\nadd element inet kawaii {set} {{ {element} }}\n"
        ));
    }

    /// `element`, counter values included, is in the table (after `patch`).
    fn assert_counted(&self, element: &str, patch: &str) {
        let counted = self.list_with(&[]);
        assert!(counted.contains(element), "{patch}\n{counted}");
    }

    /// The table without counters.
    fn list(&self) -> String {
        self.list_with(&["-s"])
    }

    fn list_with(&self, opts: &[&str]) -> String {
        let mut args = vec!["nft"];
        args.extend_from_slice(opts);
        args.extend(["list", "table", "inet", "kawaii"]);
        self.0.run(&args).unwrap_or_default()
    }
}
