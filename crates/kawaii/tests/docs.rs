//! Docs as tests: every fenced example in README.md and docs/ that a reader would copy is run.
//!
//! - `toml`: a config. It goes through `kawaii check` and must pass with no warning. A block
//!   without a `[gateway]` table is a fragment, checked inside a minimal gateway document.
//!   Files it names under `/etc/kawaii/` are provided (mode 0600) in a scratch directory
//!   (`gateway.toml` is `examples/gateway.toml`, as install.md puts it there).
//! - `sh` and `console`: commands (in `console`, the lines after a `$ ` or `# ` prompt; the
//!   rest is output). A block runs when every command is one that needs no lab and no gateway
//!   host: `kawaii check|render|wg|import|--help` and plain shell around them. It runs with
//!   `sh -e` in a scratch directory holding `examples/` and the files named before it.
//! - `yaml`, `json`, `ini`, `rust`: run only when marked as a file (below).
//! - Untagged and `text` blocks are diagrams and outputs, not examples.
//!
//! An HTML comment on the lines just before a fence changes that (blank lines between are
//! fine): `<!-- doc-test: skip REASON -->` (not run: the reason is required),
//! `<!-- doc-test: warns PATH... -->` (the config shows exactly these warnings),
//! `<!-- doc-test: file NAME -->` (the block is written to NAME for the commands after it in
//! the same page; a config is still checked). Any other example block fails the test: every
//! example is either run or says why not.

use std::path::{Path, PathBuf};
use std::process::Command;

const MARK: &str = "<!-- doc-test:";

#[derive(Debug)]
struct Block {
    page: PathBuf,
    line: usize,
    lang: String,
    body: String,
    marker: Option<String>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The fenced blocks of a page, each with the marker just before it, if any.
fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(page).expect("page");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].starts_with("```"))
            .unwrap_or_else(|| panic!("{}:{}: unclosed fence", page.display(), i + 1));
        let marker = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix(MARK))
            .and_then(|l| l.strip_suffix("-->"))
            .map(|m| m.trim().to_string());
        out.push(Block {
            page: page.to_path_buf(),
            line: i + 1,
            lang: lang.trim().to_string(),
            body: lines[i + 1..end].join("\n") + "\n",
            marker,
        });
        i = end + 1;
    }
    out
}

/// A page's scratch directory: `examples/` from the repository, `etc-kawaii/` for the files
/// configs name under `/etc/kawaii/`, and the files the page's blocks were written to.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(repo().join("examples"), dir.path().join("examples"))
            .expect("symlink examples");
        std::fs::create_dir(dir.path().join("etc-kawaii")).expect("etc-kawaii");
        Scratch { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `text` with `/etc/kawaii/NAME` pointing into the scratch directory, each such file
    /// made (a WireGuard key for `*.key`, a secret otherwise; mode 0600) unless it exists.
    fn localize(&self, text: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let etc = self.path().join("etc-kawaii");
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("/etc/kawaii/") {
            out.push_str(&rest[..at]);
            let after = &rest[at + "/etc/kawaii/".len()..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
                .unwrap_or(after.len());
            let name = &after[..len];
            let file = etc.join(name);
            if !name.is_empty()
                && !file.exists()
                && !text.contains(&format!("> /etc/kawaii/{name}"))
            {
                let content = if name.ends_with(".key") {
                    kawaii(&["wg", "genkey"]).0
                } else if name == "gateway.toml" {
                    // What install.md puts there.
                    std::fs::read_to_string(repo().join("examples/gateway.toml"))
                        .expect("examples/gateway.toml")
                } else {
                    "doc-test-secret-of-some-length\n".to_string()
                };
                std::fs::write(&file, content).expect("scratch file");
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            out.push_str(&format!("{}/", etc.display()));
            rest = after;
        }
        out.push_str(rest);
        out
    }
}

/// Runs the built binary; (stdout, stderr, success).
fn kawaii(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_kawaii"))
        .args(args)
        .output()
        .expect("kawaii");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// A minimal document around a fragment.
const BASE: &str = "[gateway]\nname = \"doc\"\nprivate_subnet = \"10.1.0.0/24\"\n";

fn check_config(b: &Block, scratch: &Scratch, warns: &[&str]) -> Result<(), String> {
    let text = if b.body.lines().any(|l| l.trim() == "[gateway]") {
        b.body.clone()
    } else {
        format!("{BASE}\n{}", b.body)
    };
    let file = scratch.path().join(format!("doc-{}.toml", b.line));
    std::fs::write(&file, scratch.localize(&text)).map_err(|e| e.to_string())?;
    let (stdout, stderr, ok) = kawaii(&["check", "--config", &file.to_string_lossy()]);
    if !ok {
        return Err(format!("kawaii check fails:\n{stdout}{stderr}"));
    }
    let got: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .filter_map(|l| l.split(':').next())
        .collect();
    if got != warns {
        return Err(format!(
            "kawaii check warns about {got:?}, the page shows {warns:?}:\n{stderr}"
        ));
    }
    Ok(())
}

/// The commands of a block: continuation lines joined; for `console`, prompt lines only.
fn commands(b: &Block) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in b.body.lines() {
        let line = if b.lang == "console" && cur.is_empty() {
            match line.strip_prefix("$ ").or_else(|| line.strip_prefix("# ")) {
                Some(l) => l,
                None => continue,
            }
        } else {
            line
        };
        match line.strip_suffix('\\') {
            Some(l) => {
                cur.push_str(l);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                let c = cur.trim().to_string();
                if !c.is_empty() && !c.starts_with('#') {
                    out.push(c);
                }
                cur.clear();
            }
        }
    }
    out
}

/// Whether `cmd` runs without a lab, a gateway host or the network.
fn runnable(cmd: &str) -> bool {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let words = match words.as_slice() {
        ["sudo", "sh", "-c", ..] => {
            return cmd
                .split(';')
                .all(|c| runnable(c.trim_start_matches("sudo sh -c").trim_matches([' ', '\''])));
        }
        ["sudo", rest @ ..] => rest,
        all => all,
    };
    match words {
        ["kawaii", sub, ..] => matches!(*sub, "check" | "render" | "wg" | "import" | "--help"),
        ["umask" | "printf" | "cat" | "chmod" | "mkdir", ..] => true,
        // `token=$(openssl rand -hex 24)`
        [assign, "rand", ..] if assign.ends_with("=$(openssl") => true,
        _ => false,
    }
}

fn run_commands(b: &Block, scratch: &Scratch) -> Result<usize, String> {
    let cmds = commands(b);
    if let Some(c) = cmds.iter().find(|c| !runnable(c)) {
        return Err(format!(
            "{c:?} needs more than this runner gives (no lab, no gateway host): run only `kawaii check|render|wg|import`, or mark the block `{MARK} skip REASON -->`"
        ));
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_kawaii"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = scratch.localize(
        &cmds
            .iter()
            .map(|c| c.strip_prefix("sudo ").unwrap_or(c).to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let out = Command::new("sh")
        .args(["-e", "-c", &script])
        .current_dir(scratch.path())
        .env("PATH", path)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "exit {:?}:\n{script}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(cmds.len())
}

#[test]
fn every_example_in_the_docs_runs_or_says_why_not() {
    let (mut configs, mut commands_run, mut files) = (0, 0, 0);
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for page in pages() {
        let scratch = Scratch::new();
        for b in blocks(&page) {
            let at = format!(
                "{}:{}",
                b.page.strip_prefix(repo()).unwrap_or(&b.page).display(),
                b.line
            );
            let marker = b.marker.as_deref().unwrap_or_default();
            let (verb, arg) = marker.split_once(' ').unwrap_or((marker, ""));
            if matches!(b.lang.as_str(), "" | "text") && marker.is_empty() {
                continue;
            }
            let result = match (verb, b.lang.as_str()) {
                ("skip", _) if arg.trim().is_empty() => Err("a skip needs a reason".into()),
                ("skip", _) => {
                    skipped.push(format!("{at}: {}", arg.trim()));
                    Ok(())
                }
                ("file", lang) => {
                    let name = arg.trim();
                    let wrote = std::fs::write(scratch.path().join(name), &b.body)
                        .map_err(|e| format!("{name}: {e}"));
                    files += 1;
                    match (wrote, lang) {
                        (Err(e), _) => Err(e),
                        (Ok(()), "toml") => {
                            configs += 1;
                            check_config(&b, &scratch, &[])
                        }
                        (Ok(()), _) => Ok(()),
                    }
                }
                ("warns", "toml") => {
                    configs += 1;
                    let warns: Vec<&str> = arg.split_whitespace().collect();
                    check_config(&b, &scratch, &warns)
                }
                ("", "toml") => {
                    configs += 1;
                    check_config(&b, &scratch, &[])
                }
                ("", "sh" | "console") => run_commands(&b, &scratch).map(|n| commands_run += n),
                ("", lang) => Err(format!(
                    "a `{lang}` block is run only as a file: mark it `{MARK} file NAME -->` or `{MARK} skip REASON -->`"
                )),
                (other, _) => Err(format!("unknown doc-test marker {other:?}")),
            };
            if let Err(e) = result {
                failures.push(format!("{at} ({}): {e}", b.lang));
            }
        }
    }
    // Written to stderr directly, so that it shows in the suite's log even when the test passes
    // (the test harness captures `println!`, not the handle).
    use std::io::Write;
    let mut report = format!(
        "docs as tests: {configs} configs checked, {commands_run} commands run, {files} files written, {} examples skipped with their reasons\n",
        skipped.len()
    );
    for s in &skipped {
        report += &format!("  skipped {s}\n");
    }
    let _ = std::io::stderr().write_all(report.as_bytes());
    assert!(
        failures.is_empty(),
        "{} doc examples fail:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(configs >= 10 && commands_run >= 3, "too few examples found");
}
