//! Golden files for every rendered artefact: `testdata/render/<case>/config.toml` in,
//! `nft.txt` and `routes.txt` out. `UPDATE_GOLDEN=1 cargo test -p kawaii-plan` regenerates them;
//! read the diff in review. Every golden ruleset is also checked by the real `nft -c` inside a
//! throwaway network namespace.

use kawaii_model::{Format, Gateway, validate};
use std::path::Path;
use std::process::Command;

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

fn check_golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs; run with UPDATE_GOLDEN=1 and review the diff",
        path.display()
    );
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
                check_golden(&case.join(file), &conf.render(true));
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
    let ns = format!("kt-patch-{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .expect("ip")
            .success()
    );
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(ns.clone());
    let nft = |script: &str| {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        std::io::Write::write_all(&mut c.stdin.take().expect("stdin"), script.as_bytes())
            .expect("write");
        assert!(c.wait().expect("wait").success(), "{script}");
    };
    let list = || {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args([
                    "netns", "exec", &ns, "nft", "-s", "list", "table", "inet", "kawaii",
                ])
                .output()
                .expect("nft")
                .stdout,
        )
        .into_owned()
    };
    nft(&before.render());
    nft(&patch);
    let patched = list();
    nft(&after.render());
    assert_eq!(patched, list());
}

#[test]
fn golden_rulesets_pass_nft_check() {
    for case in cases() {
        let file = case.join("nft.txt");
        let out = Command::new("unshare")
            .args(["--net", "nft", "-c", "-f"])
            .arg(&file)
            .output()
            .expect("unshare + nft (root)");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A rule that starts or stops overlapping another moves between the set and the chain; the
/// patch, applied for real after the old table, gives the same table as the new one whole.
#[test]
fn patches_move_rules_between_set_and_chain() {
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
    let (one, two) = (table(&g), table(&g2));
    let patch = two.patch_from(&one).expect("same layout");
    assert!(
        patch.contains("delete element inet kawaii egress { 0.0.0.0/0 . tcp . 25 }")
            && patch.contains("flush chain inet kawaii egress")
            && patch.contains("tcp dport 20-30 counter drop comment \"egress-2\""),
        "{patch}"
    );
    let ns = format!("kt-move-{}", std::process::id());
    let nft = netns(&ns);
    // Counters of untouched elements survive a patch (values planted, no traffic needed).
    let planted = "0.0.0.0/0 . tcp . 22 counter packets 5 bytes 300 comment \"ingress-1\"";
    nft.apply(&one.render());
    nft.apply(&format!(
        "delete element inet kawaii ingress {{ 0.0.0.0/0 . tcp . 22 }}\n\
         add element inet kawaii ingress {{ {planted} }}\n"
    ));
    nft.apply(&patch);
    let counted = nft.list_with(&[]);
    assert!(counted.contains(planted), "{patch}\n{counted}");
    for (from, to) in [(&one, &two), (&two, &one)] {
        nft.apply(&from.render());
        nft.apply(&to.patch_from(from).expect("same layout"));
        let patched = nft.list();
        nft.apply(&to.render());
        assert_eq!(patched, nft.list());
    }
}

/// A throwaway network namespace (removed on drop) to apply scripts in.
struct Netns(String);

fn netns(name: &str) -> Netns {
    assert!(
        Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("ip")
            .success()
    );
    Netns(name.into())
}

impl Netns {
    fn apply(&self, script: &str) {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        std::io::Write::write_all(&mut c.stdin.take().expect("stdin"), script.as_bytes())
            .expect("write");
        assert!(c.wait().expect("wait").success(), "{script}");
    }

    /// The table without counters.
    fn list(&self) -> String {
        self.list_with(&["-s"])
    }

    fn list_with(&self, opts: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(opts)
            .args(["list", "table", "inet", "kawaii"])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
