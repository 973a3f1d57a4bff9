//! The binary's contract: its commands, `check` output, and `wg` keys.

use std::process::Command;

fn kawaii(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kawaii"))
        .args(args)
        .output()
        .expect("run kawaii")
}

#[test]
fn help_lists_the_contract_commands() {
    let out = kawaii(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "serve", "check", "render", "get", "apply", "delete", "status", "peer",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from:\n{help}"
        );
    }
}

#[test]
fn check_is_silent_on_the_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gateway.toml");
    let out = kawaii(&["check", "--config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_prints_one_line_per_mistake() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testdata/check-mistakes.toml"
    );
    let out = kawaii(&["check", "--config", file]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (line, path) in lines.iter().zip([
        "ingress_rules[0].source:",
        "ingress_rules[0].protocol:",
        "ingress_rules[0].ports:",
        "ipsec[0].phase1_dh_group_number:",
        "wireguard.peers[1].name:",
    ]) {
        assert!(line.starts_with(path), "{line:?} should name {path}");
    }
}

#[test]
fn wg_keys_round_trip_with_the_real_wg_tool() {
    let key = kawaii(&["wg", "genkey"]);
    assert!(key.status.success());
    let private = String::from_utf8_lossy(&key.stdout).trim().to_string();
    assert_eq!(private.len(), 44);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kawaii"))
        .args(["wg", "pubkey"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(private.as_bytes())
        .expect("write");
    let ours = child.wait_with_output().expect("wait");
    let theirs = kawaii_testkit::keys::public_key(&private).expect("wg pubkey (wireguard-tools)");
    assert_eq!(String::from_utf8_lossy(&ours.stdout), format!("{theirs}\n"));
}

/// Structural mistakes (unknown field, wrong type, missing field) are reported with the value
/// ones, in one pass, each placed in the file as `FILE:LINE:COLUMN:`.
#[test]
fn check_reports_structural_and_value_mistakes_at_once_with_their_places() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/testdata/invalid/every-kind-at-once/config.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kawaii"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("kawaii check");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    let f = file.display();
    for (line, path) in [
        (6, "gateway.colour: unknown field"),
        (16, "ingress_rules[0].ports: invalid type"),
        (24, "nat_rules[0].protocols: unknown field"),
        (8, "zones[0].private_vip: missing field"),
    ] {
        let want = format!("{f}:{line}:1: {path}");
        assert!(
            lines.iter().any(|l| l.starts_with(&want)),
            "no {want:?} in\n{text}"
        );
    }
    assert!(
        text.contains("port 0 is out of range 1-65535; port 70000 is out of range"),
        "{text}"
    );
    assert!(
        text.contains("gateway.egress_policy: \"maybe\" is not a policy"),
        "{text}"
    );
}

/// `check` looks at the files a config names: a PSK file others can read, a missing token file.
#[test]
fn check_refuses_secret_files_others_can_read_and_missing_ones() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let psk = dir.path().join("office.psk");
    std::fs::write(&psk, "psk-that-must-never-leak-42\n").expect("psk");
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            r#"[gateway]
name = "acme"
private_subnet = "10.1.0.0/24"

[api]
token_file = "{missing}"

[[ipsec]]
name = "office"
remote_peer = "198.51.100.8"
remote_subnet = "172.16.1.0/24"
pre_shared_key_file = "{psk}"
phase1_dh_group_number = 14
phase1_integrity_algorithm = "SHA256"
phase1_encryption_algorithm = "AES128"
phase2_dh_group_number = 14
phase2_integrity_algorithm = "SHA256"
phase2_encryption_algorithm = "AES128"
"#,
            missing = dir.path().join("no-such.tokens").display(),
            psk = psk.display()
        ),
    )
    .expect("config");
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kawaii"))
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .expect("kawaii check")
    };
    let out = check();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ipsec[0].pre_shared_key_file: "), "{text}");
    assert!(
        text.contains("mode 0644") && text.contains("chmod 600"),
        "{text}"
    );
    assert!(text.contains("api.token_file: "), "{text}");
    assert!(!text.contains("never-leak"), "{text}");
    // Fixed: silent, exit 0.
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(dir.path().join("no-such.tokens"), "").expect("tokens");
    let out = check();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `serve` for a zone the file does not declare refuses before it writes anything.
#[test]
fn serve_refuses_an_undeclared_zone_before_writing_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kawaii"))
        .args(["serve", "--zone", "zone-nowhere", "--config"])
        .arg(&config)
        .arg("--state")
        .arg(&state)
        .output()
        .expect("kawaii serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zone-nowhere"), "{err}");
    assert!(!err.contains("config file applied"), "{err}");
    assert!(!state.join("kawaii.db").exists(), "the store was written");
    assert!(
        !err.contains("\x1b["),
        "colours in a log that is not a terminal: {err}"
    );
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = kawaii(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let commit = std::env::var("KAWAII_GIT_COMMIT").unwrap_or(expected);
    assert_eq!(
        text.trim(),
        format!("kawaii {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_takes_the_file_as_an_argument_too() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gateway.toml");
    let out = kawaii(&["check", example]);
    assert!(out.status.success(), "{out:?}");
    let out = kawaii(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
