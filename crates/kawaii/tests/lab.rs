//! `kawaii lab` tried as a new user would: up in under 30 s, every printed command does what its
//! comment says, and `down` leaves no namespace or process behind.

use std::process::Command;
use std::time::{Duration, Instant};

/// The suite's labs have a name of their own (`klab-suite-*`, `/run/kawaii-lab-suite`), so the
/// suite runs beside an operator's lab.
const LAB_NAME: (&str, &str) = ("KAWAII_LAB", "suite");

fn kawaii(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kawaii"))
        .args(args)
        .env(LAB_NAME.0, LAB_NAME.1)
        .output()
        .expect("run kawaii")
}

/// One lab at a time in this suite (`/run/kawaii-lab-suite`): the tests take turns.
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Down;
impl Drop for Down {
    fn drop(&mut self) {
        let _ = kawaii(&["lab", "down"]);
    }
}

/// `kawaii lab up ARGS`: what it printed, once it succeeded, and the guard that takes it down.
fn up(args: &[&str]) -> (String, Down) {
    let out = kawaii(&[&["lab", "up"], args].concat());
    let down = Down;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lab up {args:?}: {text}{err}");
    (text, down)
}

#[test]
fn lab_up_commands_and_down() {
    assert!(kawaii_testkit::can_run(), "the lab needs root");
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let (text, _down) = up(&[]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "lab up took {:?}",
        started.elapsed()
    );

    // The daemon's environment check found nothing to say about the lab's own machine (a lab
    // on an operator's file prints each `config warning` as `warning (gw): field: reason`).
    assert!(!text.contains("\nwarning ("), "{text}");

    let commands: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("kawaii lab exec "))
        .map(|l| {
            let (cmd, comment) = l.split_once('#').unwrap_or((l, ""));
            (cmd.trim().to_string(), comment.trim().to_string())
        })
        .collect();
    assert!(commands.len() >= 11, "{text}");
    assert!(
        text.contains("kawaii lab exec laptop"),
        "the lab shows the VPN: {text}"
    );
    assert!(
        text.contains("kawaii lab exec ohost"),
        "the lab shows the office on our own subnet: {text}"
    );
    assert!(
        text.contains("IPv6") && text.contains("curl -gs http://[2001:db8:1::10]/"),
        "the lab shows IPv6 next to IPv4: {text}"
    );
    for (cmd, comment) in &commands {
        // The printed commands are shell lines: run them the way a user would paste them.
        let line = format!("{} lab exec {cmd}", env!("CARGO_BIN_EXE_kawaii"));
        let out = Command::new("bash")
            .args(["-c", &line])
            .env(LAB_NAME.0, LAB_NAME.1)
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if comment.contains("blocked") {
            assert!(!out.status.success(), "{cmd} should be blocked: {stdout}");
            continue;
        }
        assert!(
            out.status.success(),
            "{cmd}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if comment.contains("the internet sees 203.0.113.10") {
            assert!(stdout.contains("you are 203.0.113.10:"), "{stdout}");
        }
        if comment.contains("-> vm1") {
            assert!(stdout.contains("hello from vm1"), "{stdout}");
        }
        if comment.contains("VPN:") {
            assert!(
                stdout.contains("you are 10.8.0.2:"),
                "vm1 sees the VPN address: {stdout}"
            );
        }
        if comment.contains("VPN over IPv6") {
            assert!(
                stdout.contains("you are fd00:8::2:"),
                "vm1 sees the laptop's IPv6 VPN address: {stdout}"
            );
        }
        if comment.contains("handshake") {
            assert!(stdout.contains("latest handshake"), "{stdout}");
        }
        if comment.contains("-> vm2") {
            assert!(stdout.contains("vm2 got hi"), "{stdout}");
        }
        if comment.contains("vm1's own address") {
            assert!(stdout.contains("you are 2001:db8:1:"), "{stdout}");
        }
        if comment.contains("from the gateway's RA") {
            assert!(stdout.contains("via fe80::1"), "{stdout}");
        }
        if comment.contains("an office on our own subnet") {
            assert!(
                stdout.contains("hello from ohost, you are 10.73.0.10:"),
                "{stdout}"
            );
        }
        if comment.contains("vm1 sees it as 10.93.0.10") {
            assert!(stdout.contains("you are 10.93.0.10:"), "{stdout}");
        }
        if comment.contains("steers the office's alias") {
            assert!(stdout.contains("fwmark 0x6b61 lookup 220"), "{stdout}");
        }
    }
    let status = kawaii(&["lab", "status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    let down = kawaii(&["lab", "down"]);
    assert!(down.status.success());
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("klab-suite-"),
        "namespaces left behind"
    );
    assert!(!std::path::Path::new("/run/kawaii-lab-suite").exists());
}

/// The two-zone lab: `kawaii` run in either gateway's host talks to that host's daemon with
/// that daemon's own token (each zone has its own bootstrap token), and `lab status` shows both.
#[test]
fn two_zone_lab_exec_uses_each_hosts_own_daemon() {
    assert!(kawaii_testkit::can_run(), "the lab needs root");
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let (text, _down) = up(&["--zones", "2"]);
    // The VPN laptop of zone A, to call over in a failover: its printed command works.
    let ping = "kawaii lab exec laptop ping -c 3 10.1.0.10";
    assert!(text.contains(ping), "{text}");
    let out = kawaii(&[
        "lab",
        "exec",
        "laptop",
        "ping",
        "-c",
        "3",
        "-W",
        "2",
        "10.1.0.10",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (host, zone) in [("gw-a", "zone-a"), ("gw-b", "zone-b")] {
        let out = Command::new(env!("CARGO_BIN_EXE_kawaii"))
            .args(["lab", "exec", host, "kawaii", "status"])
            .env(LAB_NAME.0, LAB_NAME.1)
            .env_remove("KAWAII_TOKEN")
            .env_remove("KAWAII_STATE")
            .output()
            .expect("lab exec");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{host}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let header: Vec<&str> = text
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(header.get(1), Some(&zone), "{host}: {text}");
        assert!(text.contains("\nzones (vrrp)\n"), "{host}: {text}");
    }
    let status = kawaii(&["lab", "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("\ngw-a:\n") && text.contains("\ngw-b:\n"),
        "{text}"
    );
}

/// A lab on an operator's own file says at once what the lab's machine lacks for it: every
/// warning of the daemon's environment check, with its field.
#[test]
fn a_lab_on_an_operators_file_prints_its_warnings() {
    assert!(kawaii_testkit::can_run(), "the lab needs root");
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("kawaii-lab-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("gateway.toml");
    let peering = "\n[[vpc_peerings]]\nname = \"elsewhere\"\nsubnet = \"10.2.0.0/24\"\nvia = \"192.168.77.2\"\nconsent = \"none\"\n";
    std::fs::write(&file, format!("{}{peering}", kawaii_testkit::lab::LAB_TOML)).expect("write");
    let lab = up(&["--config", &file.to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&dir);
    let (text, _down) = lab;
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("warning ("))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].starts_with(
            "warning (gw): vpc_peerings[0].via: 192.168.77.2 is on no network attached"
        ),
        "{text}"
    );
}
