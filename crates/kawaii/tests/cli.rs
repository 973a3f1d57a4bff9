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
