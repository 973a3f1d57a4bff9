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
