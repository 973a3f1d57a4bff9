//! The Debian package (issue 22, acceptance 1 and 2), built once by `scripts/deb` from the
//! debug binary this test run already has: its files and modes, `lintian`, then an install into a
//! throwaway root, where `kawaii check` runs on the shipped config and the unit verifies, then
//! `remove` (state kept) and `purge` (state gone).
//!
//! The throwaway root is an empty directory with a dpkg database, whose `/usr` is an overlay of
//! the host's `/usr` (the binaries the maintainer scripts and `systemd-analyze` need) with the
//! writes going to the test's directory. Each command runs in its own private mount namespace
//! (`unshare --mount`), so no mount outlives it and the host's `/usr` is never written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

/// The throwaway root and its overlay's upper and work directories.
struct Root {
    _dir: tempfile::TempDir,
    root: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
        for d in [
            "usr",
            "etc",
            "tmp",
            "proc",
            "dev",
            "sys",
            "run",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::create_dir_all(&upper).expect("upper");
        std::fs::create_dir_all(&work).expect("work");
        for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
            std::fs::write(root.join(f), "").expect("dpkg database");
        }
        for l in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).expect("symlink");
        }
        // man (for the unit's Documentation= check) wants its config and the `man` user.
        for f in ["passwd", "group", "manpath.config"] {
            std::fs::copy(Path::new("/etc").join(f), root.join("etc").join(f)).expect("etc");
        }
        Root {
            _dir: dir,
            root,
            upper,
            work,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Runs `args` (on the host, e.g. `dpkg --root`) with the root's mounts in place.
    fn host(&self, args: &[&str]) -> Output {
        const SETUP: &str = r#"set -e
R=$1 U=$2 W=$3; shift 3
mount -t overlay kawaii-deb -o "lowerdir=/usr,upperdir=$U,workdir=$W" "$R/usr"
mount --rbind /proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
mount -t tmpfs kawaii-deb-run "$R/run"
exec "$@""#;
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                SETUP,
                "sh",
            ])
            .arg(&self.root)
            .arg(&self.upper)
            .arg(&self.work)
            .args(args)
            .output()
            .expect("unshare")
    }

    /// Runs `args` chrooted into the root.
    fn chroot(&self, args: &[&str]) -> Output {
        let root = self.root.to_string_lossy().into_owned();
        let mut full = vec!["chroot", root.as_str()];
        full.extend_from_slice(args);
        self.host(&full)
    }

    fn dpkg(&self, args: &[&str]) -> Output {
        let root = format!("--root={}", self.root.display());
        let mut full = vec!["dpkg", root.as_str(), "--force-depends"];
        full.extend_from_slice(args);
        let out = self.host(&full);
        assert!(out.status.success(), "dpkg {args:?}:\n{}", text(&out));
        out
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_package_lints_clean_installs_verifies_and_purges() {
    assert!(
        kawaii_testkit::can_run(),
        "the package test needs root (dpkg --root, mounts in a private namespace)"
    );
    let started = std::time::Instant::now();
    // 1. Build it from the binary this run built (target/debug/kawaii).
    let bin = Path::new(env!("CARGO_BIN_EXE_kawaii"));
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let out_dir = tempfile::tempdir().expect("tempdir");
    run(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/deb"))
            .env("KAWAII_DEB_PROFILE", "dev")
            .env("CARGO_TARGET_DIR", target)
            .arg("-o")
            .arg(out_dir.path())
            .arg("--fast"),
    );
    let deb = std::fs::read_dir(out_dir.path())
        .expect("output dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb was written");
    let name = deb
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&format!("kawaii_{}-1_", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
    let deb = deb.to_string_lossy().into_owned();

    // 2. Files and modes.
    let contents = text(&run(Command::new("dpkg-deb").args(["--contents", &deb])));
    for (perms, path) in [
        ("-rwxr-xr-x", "./usr/bin/kawaii"),
        ("-rw-r--r--", "./etc/kawaii/gateway.toml"),
        ("-rw-r--r--", "./usr/lib/systemd/system/kawaii.service"),
        ("-rw-r--r--", "./usr/lib/modules-load.d/kawaii.conf"),
        ("-rw-r--r--", "./usr/share/man/man1/kawaii.1.gz"),
        ("-rw-r--r--", "./usr/share/man/man1/kawaii-serve.1.gz"),
        ("-rw-r--r--", "./usr/share/man/man1/kawaii-store-copy.1.gz"),
        (
            "-rw-r--r--",
            "./usr/share/bash-completion/completions/kawaii",
        ),
        ("-rw-r--r--", "./usr/share/zsh/vendor-completions/_kawaii"),
        (
            "-rw-r--r--",
            "./usr/share/fish/vendor_completions.d/kawaii.fish",
        ),
        ("-rw-r--r--", "./usr/share/doc/kawaii/copyright"),
        ("-rw-r--r--", "./usr/share/doc/kawaii/changelog.Debian.gz"),
        ("-rw-r--r--", "./usr/share/doc/kawaii/install.md"),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(perms) && l.ends_with(&format!(" {path}"))),
            "{perms} {path} missing from:\n{contents}"
        );
    }
    let field = |f: &str| text(&run(Command::new("dpkg-deb").args(["-f", &deb, f])));
    let depends = field("Depends");
    for pkg in [
        "nftables",
        "iproute2",
        "strongswan-charon",
        "libstrongswan-standard-plugins",
        "libcharon-extra-plugins",
        "conntrackd",
    ] {
        assert!(depends.contains(pkg), "{pkg} not in Depends: {depends}");
    }
    assert!(field("Recommends").contains("wireguard-tools"));
    let conffiles = text(&run(Command::new("dpkg-deb").args([
        "-I",
        &deb,
        "conffiles",
    ])));
    assert_eq!(conffiles.trim(), "/etc/kawaii/gateway.toml");

    // 3. lintian: no errors (the warnings it prints are explained in docs/install.md).
    let lint = Command::new("lintian")
        .args(["--fail-on", "error", "--tag-display-limit", "0", &deb])
        .output()
        .expect("lintian (scripts/setup installs it)");
    let lint_text = text(&lint);
    assert!(lint.status.success(), "lintian:\n{lint_text}");
    assert!(
        !lint_text.lines().any(|l| l.starts_with("E: ")),
        "{lint_text}"
    );
    println!("lintian:\n{lint_text}");

    // 4. Install into a throwaway root: state directory 0700, the config checks, the unit
    //    verifies (man pages included), and how exposed it is.
    let root = Root::new();
    root.dpkg(&["-i", &deb]);
    assert_eq!(mode(&root.path("/var/lib/kawaii")), 0o700);
    let check = root.chroot(&["kawaii", "check", "/etc/kawaii/gateway.toml"]);
    assert!(check.status.success(), "kawaii check:\n{}", text(&check));
    let version = text(&root.chroot(&["kawaii", "--version"]));
    assert!(
        version.starts_with("kawaii ") && version.contains("(commit "),
        "{version}"
    );
    let unit = "/usr/lib/systemd/system/kawaii.service";
    let verify = root.chroot(&["systemd-analyze", "verify", unit]);
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        text(&verify)
    );
    let security = text(&root.chroot(&["systemd-analyze", "security", "--offline=yes", unit]));
    let score: f64 = security
        .lines()
        .find_map(|l| l.split("exposure level for kawaii.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{security}"));
    println!("systemd-analyze security: exposure {score}");
    assert!(score <= 4.0, "exposure {score}:\n{security}");

    // 5. remove keeps the state and the edited config; purge removes both (Debian policy).
    std::fs::write(root.path("/var/lib/kawaii/kawaii.db"), b"state").expect("state");
    root.dpkg(&["-r", "kawaii"]);
    assert!(
        root.path("/var/lib/kawaii/kawaii.db").exists(),
        "remove kept the state"
    );
    assert!(
        root.path("/etc/kawaii/gateway.toml").exists(),
        "remove kept the conffile"
    );
    assert!(!root.path("/usr/bin/kawaii").exists());
    root.dpkg(&["-P", "kawaii"]);
    assert!(
        !root.path("/var/lib/kawaii").exists(),
        "purge removed the state"
    );
    assert!(
        !root.path("/etc/kawaii").exists(),
        "purge removed the config"
    );
    println!("package test took {:?}", started.elapsed());
}

/// The Containerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let joined = std::mem::take(&mut current);
                if let Some((op, rest)) = joined.trim().split_once(char::is_whitespace) {
                    out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
                }
            }
        }
    }
    out
}

/// Builds the image where a builder works (podman, buildah, or docker with a daemon); otherwise
/// a structural lint: known instructions, pinned and named stages, `COPY --from` a declared
/// stage, apt in one layer without recommends and without its lists, exec-form entry point, and
/// the runtime stage installing every package the .deb depends on.
#[test]
fn containerfile_builds_or_lints_clean() {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let text = std::fs::read_to_string(format!("{repo}/Containerfile")).expect("Containerfile");
    let builder = ["podman", "buildah", "docker"].into_iter().find(|b| {
        Command::new(b)
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if let Some(b) = builder {
        let sub = if b == "buildah" { "bud" } else { "build" };
        run(Command::new(b)
            .args([sub, "-f", "Containerfile", "-t", "kawaii-test", "."])
            .current_dir(repo));
        return;
    }
    let ins = instructions(&text);
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "ARG",
        "ENV",
        "WORKDIR",
        "VOLUME",
        "STOPSIGNAL",
        "ENTRYPOINT",
        "CMD",
        "LABEL",
        "EXPOSE",
        "USER",
    ];
    let mut stages: Vec<String> = Vec::new();
    let mut runtime_runs = String::new();
    for (op, rest) in &ins {
        assert!(KNOWN.contains(&op.as_str()), "unknown instruction {op}");
        match op.as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let image = words[0];
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(
                    !tag.is_empty() && tag != "latest",
                    "unpinned base image {image}"
                );
                assert!(
                    words.len() == 3 && words[1].eq_ignore_ascii_case("AS"),
                    "stage without a name: FROM {rest}"
                );
                stages.push(words[2].to_string());
                runtime_runs.clear();
            }
            "COPY" => {
                if let Some(from) = rest.strip_prefix("--from=") {
                    let stage = from.split_whitespace().next().unwrap_or("");
                    assert!(
                        stages[..stages.len() - 1].iter().any(|s| s == stage),
                        "COPY --from={stage}: no earlier stage has that name"
                    );
                }
                assert!(!rest.contains("http://") && !rest.contains("https://"));
            }
            "RUN" => {
                if rest.contains("apt-get install") {
                    assert!(
                        rest.contains("apt-get update"),
                        "install without update: {rest}"
                    );
                    assert!(rest.contains("--no-install-recommends"), "{rest}");
                    assert!(rest.contains("rm -rf /var/lib/apt/lists/*"), "{rest}");
                }
                assert!(!rest.contains("sudo "), "{rest}");
                runtime_runs.push_str(rest);
                runtime_runs.push(' ');
            }
            "ENTRYPOINT" | "CMD" => {
                let parsed: Vec<String> = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("{op} not in exec form ({e}): {rest}"));
                assert!(!parsed.is_empty());
            }
            _ => {}
        }
    }
    assert!(stages.len() >= 2, "a build stage and a small runtime stage");
    assert!(
        !runtime_runs.contains("cargo"),
        "the runtime stage builds nothing"
    );
    // The runtime has what the .deb depends on.
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("manifest");
    let depends = manifest
        .lines()
        .find_map(|l| l.strip_prefix("depends = \""))
        .expect("package.metadata.deb depends")
        .trim_end_matches('"');
    for pkg in depends
        .split(',')
        .map(str::trim)
        .filter(|p| !p.starts_with('$'))
    {
        assert!(
            runtime_runs.split_whitespace().any(|w| w == pkg),
            "the runtime stage does not install {pkg}"
        );
    }
    let last = ins.last().expect("instructions");
    assert_eq!(last.0, "CMD");
    assert!(
        ins.iter()
            .any(|(op, rest)| op == "ENTRYPOINT" && rest.contains("/usr/bin/kawaii"))
    );
}

/// The daemon's side of the unit, on the config the package ships: `READY=1` on the
/// `NOTIFY_SOCKET` once the first pass applied (the API answers by then), `WATCHDOG=1` every half
/// `WATCHDOG_USEC`, a reload on SIGHUP, and `STOPPING=1` on SIGTERM.
#[test]
fn serve_tells_systemd_ready_pings_the_watchdog_and_reloads_on_sighup() {
    use kawaii_testkit::serve::{Node, ServeOptions};
    use std::os::unix::net::UnixDatagram;
    assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let config = include_str!("../debian/gateway.toml");
    let mut opts = ServeOptions::new(env!("CARGO_BIN_EXE_kawaii"));
    opts.env = vec![
        ("NOTIFY_SOCKET".into(), path.to_string_lossy().into_owned()),
        ("WATCHDOG_USEC".into(), "200000".into()),
    ];
    let mut node = Node::start("pkg-notify", config, &opts).unwrap_or_else(|e| panic!("{e}"));
    // The watchdog task may ping before the first pass is done.
    loop {
        match recv().as_str() {
            "WATCHDOG=1" => continue,
            first => break assert_eq!(first, "READY=1\nSTATUS=first reconcile applied"),
        }
    }
    for _ in 0..3 {
        assert_eq!(recv(), "WATCHDOG=1");
    }
    let pid = node.serve.pid(&mut node.topo).to_string();
    run(Command::new("kill").args(["-HUP", &pid]));
    wait_for_log(&mut node, "SIGHUP: reloading the config file");
    run(Command::new("kill").args(["-TERM", &pid]));
    loop {
        match recv().as_str() {
            "WATCHDOG=1" => continue,
            last => break assert_eq!(last, "STOPPING=1"),
        }
    }
}

fn wait_for_log(node: &mut kawaii_testkit::serve::Node, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !node.log().contains(what) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {what:?} in:\n{}",
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
