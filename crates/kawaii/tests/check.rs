//! `kawaii check` on a file with ten mistakes of every kind, on the machine it names
//! (`--local`, in a namespace of its own): ten lines, each with its field path, and
//! `FILE:LINE:COLUMN:` for the syntax and structural ones.

use kawaii_testkit::Topology;
use std::os::unix::fs::PermissionsExt;

#[test]
fn ten_mistakes_of_every_kind_give_ten_lines_with_their_paths() {
    let mut t = Topology::new("chk").expect("topology");
    let gw = t.host("gw").expect("host");
    let peer = t.host("peer").expect("host");
    t.link(&gw, "bb0", &peer, "bb0").expect("backbone");
    gw.addr("bb0", "192.168.100.1/24").expect("addr");
    gw.default_via("192.168.100.254").expect("default route");

    let key = t
        .write("wg.key", "eCPZ1J6o4Vl4Jc2oWn6b+0b6JjoKkSAlrSHsnrDKYGw=\n")
        .expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let missing_psk = t.dir().join("office.psk");
    let text = format!(
        r#"[gateway]
name = "acme"
private_subnet = "10.1.0.0/24"
egress_policy = "maybe"
colour = "blue"

[[ingress_rules]]
source = "0.0.0.0/0
ports = "22"

[[egress_rules]]
ports = 25

[[vpc_peerings]]
name = "backbone"
subnet = "10.2.0.0/33"
via = "192.168.100.2"
consent = "none"

[[vpc_peerings]]
name = "far"
subnet = "10.3.0.0/24"
via = "198.51.100.77"
consent = "none"

[[ipsec]]
name = "office"
remote_peer = "198.51.100.8"
pre_shared_key_file = "{psk}"
phase1_dh_group_number = 7
phase1_integrity_algorithm = "SHA256"
phase1_encryption_algorithm = "AES128"
phase2_dh_group_number = 14
phase2_integrity_algorithm = "SHA256"
phase2_encryption_algorithm = "AES128"

[wireguard]
address = "10.8.0.1/24"
private_key_file = "{key}"
"#,
        psk = missing_psk.display(),
        key = key.display()
    );
    let file = t.write("gateway.toml", &text).expect("config");
    let out = gw
        .command(&[env!("CARGO_BIN_EXE_kawaii"), "check", "--local", "--config"])
        .arg(&file)
        .output()
        .expect("kawaii check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let f = file.display();
    let want = [
        // syntax, structural: placed in the file
        format!("{f}:8:20: ingress_rules[0].source: "),
        format!("{f}:5:1: gateway.colour: unknown field"),
        format!("{f}:12:1: egress_rules[0].ports: invalid type"),
        format!("{f}:26:1: ipsec[0].remote_subnet: missing field"),
        // values
        "gateway.egress_policy: \"maybe\" is not a policy".to_string(),
        "vpc_peerings[0].subnet: ".to_string(),
        "ipsec[0].phase1_dh_group_number: ".to_string(),
        // files
        "wireguard.private_key_file: ".to_string(),
        "ipsec[0].pre_shared_key_file: ".to_string(),
        // the machine
        "warning: vpc_peerings[1].via: 198.51.100.77 is on no network attached".to_string(),
    ];
    for w in &want {
        assert!(
            lines.iter().any(|l| l.starts_with(w.as_str())),
            "no line starting {w:?} in\n{stdout}{stderr}"
        );
    }
    assert_eq!(lines.len(), 10, "{stdout}{stderr}");
    assert!(lines.iter().any(|l| l.contains("mode 0644")), "{stdout}");
    assert!(!stdout.contains("eCPZ1J6o"), "the key leaked: {stdout}");

    // Fixed, the machine is quiet: the backbone peer is attached, the office routed.
    let fixed = text
        .replace("colour = \"blue\"\n", "")
        .replace("egress_policy = \"maybe\"", "egress_policy = \"accept\"")
        .replace("source = \"0.0.0.0/0\n", "source = \"0.0.0.0/0\"\n")
        .replace("ports = 25", "ports = \"25\"")
        .replace("10.2.0.0/33", "10.2.0.0/24")
        .replace("198.51.100.77", "192.168.100.3")
        .replace(
            "remote_peer = \"198.51.100.8\"\n",
            "remote_peer = \"198.51.100.8\"\nremote_subnet = \"172.16.1.0/24\"\n",
        )
        .replace("phase1_dh_group_number = 7", "phase1_dh_group_number = 14");
    std::fs::write(&missing_psk, "a-pre-shared-key-of-some-length\n").expect("psk");
    std::fs::set_permissions(&missing_psk, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&file, fixed).expect("config");
    let out = gw
        .command(&[env!("CARGO_BIN_EXE_kawaii"), "check", "--local", "--config"])
        .arg(&file)
        .output()
        .expect("kawaii check");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}
