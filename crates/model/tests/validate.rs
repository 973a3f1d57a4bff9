//! Validation over whole documents: the example is clean, and mistakes are all reported with paths.

use kawaii_model::{Format, Gateway, validate};

fn parse(text: &str) -> Gateway {
    Gateway::parse(text, Format::Toml).expect("parses")
}

#[test]
fn the_example_is_valid_and_silent() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/gateway.toml"
    ))
    .expect("example");
    let report = validate(&parse(&text)).expect("valid");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.desired.nat_rules.len(), 2);
}

const FIVE_MISTAKES: &str = r#"
[gateway]
name = "acme"
private_subnet = "10.1.0.0/33"

[[ingress_rules]]
ports = "80-22"

[[egress_rules]]
protocol = "icmp"
ports = "1"

[[ipsec]]
name = "office"
remote_peer = "198.51.100.8"
remote_subnet = "172.16.1.0/24"
pre_shared_key = "a-long-enough-psk"
phase1_dh_group_number = 7
phase1_integrity_algorithm = "SHA512"
phase1_encryption_algorithm = "AES256"
phase2_dh_group_number = 14
phase2_integrity_algorithm = "SHA512"
phase2_encryption_algorithm = "AES256"

[wireguard]
address = "10.8.0.1/24"

[[wireguard.peers]]
name = "alice"
public_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
allowed_ips = ["10.8.0.5/32"]

[[wireguard.peers]]
name = "alice"
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
allowed_ips = ["10.8.0.6/32"]
"#;

#[test]
fn five_mistakes_five_errors_each_with_its_path() {
    let err = validate(&parse(FIVE_MISTAKES)).expect_err("invalid");
    let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "gateway.private_subnet",
            "ingress_rules[0].ports",
            "egress_rules[0].protocol",
            "ipsec[0].phase1_dh_group_number",
            "wireguard.peers[1].name",
        ],
        "{err}"
    );
    assert!(err.0[1].reason.contains("descending"));
    assert!(err.0[3].reason.contains("DH group 7"));
}

#[test]
fn overlaps_are_errors_naming_both_sides() {
    let g = parse(
        r#"
[gateway]
private_subnet = "10.1.0.0/24"
[wireguard]
address = "10.1.0.129/25"
[[wireguard.peers]]
name = "a"
public_key = "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg="
allowed_ips = ["10.8.0.0/24"]
[[wireguard.peers]]
name = "b"
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
allowed_ips = ["10.8.0.5/32"]
"#,
    );
    let err = validate(&g).expect_err("invalid").to_string();
    assert!(
        err.contains("wireguard.address: 10.1.0.128/25 overlaps 10.1.0.0/24"),
        "{err}"
    );
    assert!(
        err.contains("peer \"b\" overlaps 10.8.0.0/24 of peer \"a\""),
        "{err}"
    );
}

#[test]
fn ipsec_values_and_names_with_spaces() {
    let mut text = FIVE_MISTAKES
        .replace("10.1.0.0/33", "10.1.0.0/24")
        .replace("= 7", "= 5");
    text = text
        .replace("ports = \"80-22\"", "ports = \"22\"")
        .replace("\"icmp\"", "\"tcp\"");
    text = text.replace("name = \"office\"", "name = \"ACME Office\"");
    text = text.replace(
        "name = \"alice\"\npublic_key = \"xTIB",
        "name = \"bob\"\npublic_key = \"xTIB",
    );
    let report = validate(&parse(&text)).expect("valid");
    assert_eq!(report.desired.ipsec[0].name, "ACME Office");
    assert_eq!(report.desired.ipsec[0].phase1.dh_group, 5);

    let bad = text.replace(
        "phase2_integrity_algorithm = \"SHA512\"",
        "phase2_integrity_algorithm = \"MD5\"",
    ) + "\n";
    let bad = bad.replace(
        "remote_subnet = \"172.16.1.0/24\"",
        "remote_subnet = \"172.16.1.0/24\"\nrekey = \"2h\"",
    );
    let err = validate(&parse(&bad)).expect_err("invalid").to_string();
    assert!(
        err.contains("ipsec[0].phase2_integrity_algorithm: \"MD5\" is not supported"),
        "{err}"
    );
    assert!(
        err.contains("ipsec[0].rekey: 2h must be shorter than phase2_lifetime"),
        "{err}"
    );
}

#[test]
fn domains_pipes_and_references() {
    let g = parse(
        r#"
[gateway]
name = "edge"
[[routes]]
domain = "Example.com"
https = ["10.1.0.10:443"]
[[routes]]
domain = "a.*.example.com"
http = ["10.1.0.10:80"]
[[routes]]
domain = "*.example.org"
https = ["10.1.0.12:443"]
[[routes]]
domain = "x.example.net"
https = ["backend:443"]
[[pipes]]
name = "nginx"
port = 8080
remote = "nginx.internal:80"
peer = "nobody"
[[pipes]]
name = "other"
port = 8080
remote = "10.0.0.1"
"#,
    );
    let err = validate(&g).expect_err("invalid").to_string();
    for needle in [
        "routes[0].domain: \"Example.com\" must be lowercase",
        "routes[1].domain: \"a.*.example.com\": a wildcard may only be the whole first label",
        "pipes[0].peer: \"nobody\" names no WireGuard peer",
        "pipes[1].port: port 8080 is already used by pipes[0]",
        "pipes[1].remote: \"10.0.0.1\" needs a port",
        "routes[3].https[0]: \"backend:443\" is not an IP:port",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("routes[2]"), "{err}");
}

#[test]
fn nat_without_opening_warns() {
    let g = parse(
        r#"
[gateway]
private_subnet = "10.1.0.0/24"
[[nat_rules]]
destination = "10.1.0.10"
protocol = "udp"
ports = "51000-51010"
"#,
    );
    let report = validate(&g).expect("valid");
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].path, "nat_rules[0]");
}
