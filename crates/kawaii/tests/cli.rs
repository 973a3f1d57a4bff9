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

/// Runs the binary with stdout on a pipe whose reader is already gone; returns its output.
fn to_closed_pipe(mut cmd: Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run kawaii")
}

/// `kawaii ... | head -1` must not panic: every write to a closed pipe ends quietly, the
/// client's (`render`) and a plain `println!`'s (`wg genkey`) alike.
#[test]
fn a_closed_pipe_ends_quietly() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gateway.toml");
    for args in [
        &["render", example][..],
        &["render", example, "--what", "nftables"],
        &["wg", "genkey"],
        &["--help"],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kawaii"));
        cmd.args(args);
        let out = to_closed_pipe(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
    }
}

/// `check FILE` and `render FILE` as `import FILE` (`--config` still works), and their help
/// shows no client flag; every argument of every command has help text.
#[test]
fn check_and_render_take_the_file_positionally_and_show_no_client_flags() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gateway.toml");
    assert!(kawaii(&["check", example]).status.success());
    let positional = kawaii(&["render", example, "--what", "routes"]);
    let flag = kawaii(&["render", "--config", example, "--what", "routes"]);
    assert!(positional.status.success());
    assert_eq!(positional.stdout, flag.stdout);
    assert!(!positional.stdout.is_empty());
    assert!(!kawaii(&["check"]).status.success(), "a file is required");
    for cmd in ["check", "render", "serve", "import", "lab"] {
        let help = String::from_utf8_lossy(&kawaii(&[cmd, "--help"]).stdout).into_owned();
        assert!(
            !help.contains("--token") && !help.contains("--api"),
            "{cmd}: {help}"
        );
    }
    for cmd in ["get", "apply", "delete", "status", "audit"] {
        let help = String::from_utf8_lossy(&kawaii(&[cmd, "--help"]).stdout).into_owned();
        assert!(help.contains("--token") && help.contains("--api"), "{cmd}");
    }
    // Every offered -o is a real one (the rest are checked by the golden tests).
    let status_help = String::from_utf8_lossy(&kawaii(&["status", "--help"]).stdout).into_owned();
    assert!(!status_help.contains("toml"), "{status_help}");
}

const CLIENT_CONFIG: &str = r#"[gateway]
name = "acme"
private_subnet = "10.1.0.0/24"

[[ingress_rules]]
protocol = "tcp"
ports = "22"
"#;

/// The client against a real daemon: `apply -f -` (TOML and JSON on stdin), `unchanged` when
/// the store kept its revision, the document as `get` prints it applying back unchanged, the
/// token errors saying where the CLI looked, `status` as tables, and a closed pipe.
#[test]
fn client_applies_stdin_says_unchanged_and_explains_token_errors() {
    use kawaii_testkit::serve::{Node, ServeOptions};
    let bin = env!("CARGO_BIN_EXE_kawaii");
    let node = Node::start("cli", CLIENT_CONFIG, &ServeOptions::new(bin))
        .unwrap_or_else(|e| panic!("{e}"));
    let state = node.serve.state.clone();
    let command = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = node.host.command(&[bin]);
        cmd.args(args)
            .env_remove("KAWAII_TOKEN")
            .env_remove("KAWAII_API")
            .env("KAWAII_STATE", &state);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    };
    let run = |args: &[&str], input: Option<&str>| {
        let mut cmd = command(args, &[]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kawaii");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(text) = input {
            use std::io::Write;
            stdin.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(stdin);
        let out = child.wait_with_output().expect("kawaii");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kawaii {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };

    // The document as `get` prints it is a config file; applied back, nothing changes.
    let doc = run(&["get"], None);
    assert!(doc.starts_with("# revision 1\n[gateway]\n"), "{doc}");
    let again = run(&["apply", "-f", "-"], Some(&doc));
    assert_eq!(again, "gateway/acme unchanged (revision 1)\n");
    // A change on stdin is applied; the same change again is not.
    let edited = doc.replace("ports = \"22\"", "ports = \"2222\"");
    let applied = run(&["apply", "-f", "-"], Some(&edited));
    assert_eq!(applied, "gateway/acme configured (revision 2)\n");
    let again = run(&["apply", "-f", "-"], Some(&edited));
    assert_eq!(again, "gateway/acme unchanged (revision 2)\n");
    let rules = run(&["get", "ingress-rules"], None);
    assert_eq!(
        rules
            .lines()
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec!["ID", "SOURCE", "PROTOCOL", "PORTS", "DESCRIPTION"]),
        "{rules}"
    );
    assert!(rules.contains("2222"), "{rules}");
    // JSON on stdin, as `get -o json` prints it.
    let json = run(&["get", "-o", "json"], None);
    let again = run(&["apply", "-f", "-"], Some(&json));
    assert_eq!(again, "gateway/acme unchanged (revision 2)\n");
    // The API's collection names are kinds; `-o name` gives back what `get` and `delete` take.
    let names = run(&["get", "ingress-rules", "-o", "name"], None);
    assert_eq!(names, "ingress-rule/ingress-1\n");
    let deleted = run(&["delete", names.trim()], None);
    assert_eq!(deleted, "ingress-rule/ingress-1 deleted (revision 3)\n");
    let out = command(&["get", "wireguard/peers"], &[])
        .output()
        .expect("kawaii");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("unknown kind"), "{err}");

    // Status: tables, never JSON.
    let status = run(&["status"], None);
    assert!(status.starts_with("GATEWAY "), "{status}");
    assert!(status.contains("\ndrivers\nDRIVER "), "{status}");
    assert!(!status.contains(['{', '"']), "{status}");
    let yaml = run(&["status", "-o", "yaml"], None);
    let v: serde_json::Value = yaml_serde::from_str(&yaml).expect("YAML");
    assert_eq!(v["gateway"], "acme");

    // Token errors say where the CLI looked and what to do.
    let refused = |env: &[(&str, &str)], args: &[&str]| {
        let out = command(args, env).output().expect("kawaii");
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(&[("KAWAII_STATE", "/nonexistent-kawaii")], &["status"]);
    for said in [
        "--token",
        "KAWAII_TOKEN",
        "/nonexistent-kawaii/admin.token (does not exist",
        "KAWAII_STATE",
    ] {
        assert!(err.contains(said), "{said:?} missing: {err}");
    }
    let err = refused(&[("KAWAII_TOKEN", "not-a-token")], &["status"]);
    assert!(
        err.contains("does not know the token from KAWAII_TOKEN"),
        "{err}"
    );
    let err = refused(&[], &["get", "--token", "not-a-token"]);
    assert!(
        err.contains("does not know the token from --token"),
        "{err}"
    );
    assert!(
        !err.contains("not-a-token"),
        "the token is not echoed: {err}"
    );

    // A reader that went away ends the client quietly; `| head -1` works.
    for args in [&["status"][..], &["get", "-o", "yaml"], &["get"]] {
        let out = to_closed_pipe(command(args, &[]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "{args:?}: {err}");
    }
    let head = node
        .host
        .run(&[
            "bash",
            "-c",
            &format!(
                "set -o pipefail; KAWAII_STATE={} {bin} status | head -1",
                state.display()
            ),
        ])
        .expect("status | head -1");
    assert_eq!(head.lines().count(), 1, "{head}");
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
