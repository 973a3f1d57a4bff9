//! Golden files of what `get` and `status` print in every `-o` format, rendered from fixed API
//! values: the document of `testdata/cli/gateway.toml` as the API serves it (secrets redacted,
//! ids assigned), and a status with every section built from the API's own types.
//! `UPDATE_GOLDEN=1` rewrites them.

use super::*;
use kawaii_api::{Details, DriverStatus, ErrorKind, Status};
use kawaii_drivers::{conntrack, conntrackd, consent, ipsec, nftables, vrrp, wireguard};
use kawaii_testkit::golden::check_golden;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// 2026-01-02T03:04:05Z, the clock the ages are computed against.
const NOW_MS: u64 = 1_767_323_045_000;
const NOW: u64 = NOW_MS / 1000;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/cli")
        .join(name)
}

/// `GET /v1/gateway`'s answer for the fixture document.
fn envelope() -> Value {
    let path = testdata("gateway.toml");
    let mut loaded = crate::config::load(&path).expect("fixture parses");
    loaded
        .gateway
        .prepare_commit(&kawaii_model::Gateway::default());
    kawaii_model::validate(&loaded.gateway).expect("fixture is valid");
    serde_json::json!({ "revision": 7, "gateway": loaded.gateway })
}

/// What `GET <kind.path>` answers: the collection of the document.
fn collection_of(doc: &Value, kind: &Kind) -> Value {
    let pointer = kind
        .path
        .strip_prefix("/v1")
        .expect("API path")
        .replace('-', "_");
    doc.pointer(&pointer).cloned().unwrap_or(Value::Null)
}

fn get_formats() -> [(GetOutput, &'static str); 6] {
    [
        (GetOutput::Table, "table"),
        (GetOutput::Wide, "wide"),
        (GetOutput::Json, "json"),
        (GetOutput::Yaml, "yaml"),
        (GetOutput::Toml, "toml"),
        (GetOutput::Name, "name"),
    ]
}

#[test]
fn get_every_kind_in_every_format() {
    let env = envelope();
    let doc = &env["gateway"];
    for (format, ext) in get_formats() {
        let mut out = format!("==> kawaii get -o {ext} <==\n");
        out.push_str(&gateway(&env, format).expect("gateway"));
        for kind in KINDS {
            let list = collection_of(doc, kind);
            assert!(
                list.as_array().is_some_and(|a| !a.is_empty()),
                "the fixture has no {}",
                kind.name
            );
            out.push_str(&format!("\n==> kawaii get {} -o {ext} <==\n", kind.name));
            out.push_str(&collection(kind, &list, format).expect("list"));
            // One item, as `get KIND NAME` answers.
            let one = &list[0];
            out.push_str(&format!(
                "\n==> kawaii get {}/{} -o {ext} <==\n",
                kind.singular,
                text(&one[kind.key])
            ));
            out.push_str(&collection(kind, one, format).expect("one"));
        }
        assert!(!out.contains("never-shows"), "a secret in {ext}:\n{out}");
        check_golden(&testdata(&format!("get.{ext}")), &out);
    }
}

#[test]
fn tables_have_the_name_first_no_borders_and_no_json() {
    let env = envelope();
    for kind in KINDS {
        let list = collection_of(&env["gateway"], kind);
        for format in [GetOutput::Table, GetOutput::Wide] {
            let t = collection(kind, &list, format).expect("table");
            let header = t.lines().next().expect("header");
            let first = header.split_whitespace().next().expect("a column");
            assert!(
                ["ID", "NAME", "DOMAIN"].contains(&first),
                "{}: {header}",
                kind.name
            );
            assert!(
                !t.contains(['{', '[', '│', '─', '"']),
                "{}:\n{t}",
                kind.name
            );
        }
    }
}

#[test]
fn every_serialized_format_parses_back_to_the_api_value() {
    let env = envelope();
    let doc = &env["gateway"];
    let toml_doc: Value =
        toml::from_str(&gateway(&env, GetOutput::Toml).expect("toml")).expect("TOML");
    assert_eq!(&toml_doc, doc);
    let yaml_doc: Value =
        yaml_serde::from_str(&gateway(&env, GetOutput::Yaml).expect("yaml")).expect("YAML");
    assert_eq!(&yaml_doc, doc);
    let json_doc: Value =
        serde_json::from_str(&gateway(&env, GetOutput::Json).expect("json")).expect("JSON");
    assert_eq!(&json_doc, doc);
    // The table of the gateway is the document itself, a config file `apply -f` takes.
    let table = gateway(&env, GetOutput::Table).expect("table");
    assert!(table.starts_with("# revision 7\n"), "{table}");
    let parsed = kawaii_model::Gateway::parse(&table, kawaii_model::Format::Toml);
    assert!(parsed.is_ok(), "{parsed:?}");
    // A list in TOML is `[[items]]`.
    let pipes = collection_of(doc, &KINDS[6]);
    let t: Value = toml::from_str(&collection(&KINDS[6], &pipes, GetOutput::Toml).expect("toml"))
        .expect("TOML");
    assert_eq!(t["items"], pipes);
}

#[test]
fn kinds_are_found_by_every_name_the_cli_and_the_api_use() {
    for (word, kind, name) in [
        ("wireguard/peers", "wireguard-peers", None),
        ("/v1/wireguard/peers", "wireguard-peers", None),
        ("wireguard-peer/alice", "wireguard-peers", Some("alice")),
        ("peers", "wireguard-peers", None),
        ("ingress-rule/ingress-2", "ingress-rules", Some("ingress-2")),
        ("vpc-peerings", "vpc-peerings", None),
        ("route/*.example.com", "routes", Some("*.example.com")),
        ("ipsec-connection/ACME Office", "ipsec", Some("ACME Office")),
    ] {
        match target(Some(word), None).expect(word) {
            Target::Kind(k, n) => assert_eq!((k.name, n), (kind, name), "{word}"),
            Target::Gateway => panic!("{word} is not the gateway"),
        }
    }
    assert!(matches!(target(None, None), Ok(Target::Gateway)));
    let err = target(Some("bogus"), None).expect_err("unknown");
    assert!(err.to_string().contains("wireguard/peers"), "{err}");
    assert!(target(Some("pipe/a"), Some("b")).is_err());
    // `-o name` prints what `get` takes back.
    let env = envelope();
    for kind in KINDS {
        let names = collection(kind, &collection_of(&env["gateway"], kind), GetOutput::Name)
            .expect("names");
        for line in names.lines() {
            let Ok(Target::Kind(k, Some(_))) = target(Some(line), None) else {
                panic!("{line} does not resolve");
            };
            assert_eq!(k.name, kind.name);
        }
    }
}

/// A status with every section, as `GET /v1/status` serializes it.
fn full_status() -> Value {
    let errors = |pairs: &[(kawaii_proxy::ErrorKind, u64)]| -> BTreeMap<_, _> {
        pairs.iter().copied().collect()
    };
    let status = Status {
        gateway: "acme".into(),
        zone: Some("zone-a".into()),
        desired_revision: 9,
        applied_revision: 8,
        ready: true,
        drivers: vec![
            DriverStatus {
                name: "nftables".into(),
                ok: true,
                applied_revision: 9,
                error: None,
                error_kind: None,
                resource: None,
                last_apply: Some("2026-01-02T03:03:55Z".into()),
            },
            DriverStatus {
                name: "netlink".into(),
                ok: false,
                applied_revision: 8,
                error: Some("vpc_peerings[0]: Nexthop has invalid gateway".into()),
                error_kind: Some(ErrorKind::Rejected),
                resource: Some("vpc_peerings[0]".into()),
                last_apply: Some("2026-01-02T03:03:55Z".into()),
            },
        ],
        plan_error: None,
        degraded: Some(
            "driver netlink failing on vpc peering \"marvelous\" (vpc_peerings[0]): Nexthop has invalid gateway".into(),
        ),
        store: Some(kawaii_store::StoreHealth {
            backend: "etcd".into(),
            up: true,
            seconds_since_sync: Some(0.4),
            error: None,
        }),
        rejected_config: vec![kawaii_model::FieldError::new(
            "ingress_rules[2].ports",
            "port 70000 is out of range 1-65535",
        )],
        details: Details {
            rules: Some(vec![
                nftables::RuleCounter {
                    chain: "ingress".into(),
                    rule: "ingress-1".into(),
                    packets: 1520,
                    bytes: 98_213,
                },
                nftables::RuleCounter {
                    chain: "nat".into(),
                    rule: "nat-1/ingress-1".into(),
                    packets: 12,
                    bytes: 720,
                },
            ]),
            vrrp: Some(vec![
                vrrp::RouterStatus {
                    zone: "zone-a".into(),
                    vrid: 1,
                    family: vrrp::Family::Ipv4,
                    state: vrrp::State::Master,
                    priority: 150,
                    configured_priority: 150,
                    master: Some([10, 254, 0, 11].into()),
                    vips: vec![[203, 0, 113, 10].into(), [10, 1, 0, 1].into()],
                    last_transition_ms: Some(NOW_MS - 3_723_000),
                    last_reason: Some(vrrp::Reason::MasterDown),
                    transitions: 1,
                    adverts_sent: 18_000,
                    adverts_received: 2,
                    held_for_sync: false,
                },
                vrrp::RouterStatus {
                    zone: "zone-b".into(),
                    vrid: 2,
                    family: vrrp::Family::Ipv4,
                    state: vrrp::State::Backup,
                    priority: 100,
                    configured_priority: 100,
                    master: Some([10, 254, 0, 12].into()),
                    vips: vec![[203, 0, 113, 20].into(), [10, 1, 0, 2].into()],
                    last_transition_ms: Some(NOW_MS - 42_000),
                    last_reason: Some(vrrp::Reason::HigherPriority {
                        master: [10, 254, 0, 12].into(),
                        priority: 150,
                    }),
                    transitions: 3,
                    adverts_sent: 40,
                    adverts_received: 17_000,
                    held_for_sync: false,
                },
            ]),
            router: Some(kawaii_proxy::RouterStatus {
                listeners: vec![kawaii_proxy::ListenerStatus {
                    name: "https".into(),
                    bind: "203.0.113.10:443".parse().expect("addr"),
                    local_addr: "203.0.113.10:443".parse().expect("addr"),
                    protocol: kawaii_proxy::config::ListenerProtocol::Tls,
                    active_connections: 3,
                    accepted_connections: 410,
                    errors: errors(&[(kawaii_proxy::ErrorKind::NoSni, 2)]),
                }],
                routes: vec![kawaii_proxy::RouteStatus {
                    domain: "*.example.com".into(),
                    protocol: kawaii_proxy::config::ListenerProtocol::Tls,
                    active_connections: 3,
                    total_connections: 408,
                    bytes_to_backend: 120_000,
                    bytes_to_client: 4_500_000,
                    errors: errors(&[]),
                    backends: vec![
                        kawaii_proxy::BackendStatus {
                            address: "10.1.0.10:443".parse().expect("addr"),
                            healthy: true,
                            health_checked: true,
                            active_connections: 2,
                            total_connections: 300,
                            bytes_to_backend: 90_000,
                            bytes_to_client: 3_000_000,
                            errors: errors(&[]),
                        },
                        kawaii_proxy::BackendStatus {
                            address: "10.1.0.11:443".parse().expect("addr"),
                            healthy: false,
                            health_checked: true,
                            active_connections: 0,
                            total_connections: 108,
                            bytes_to_backend: 30_000,
                            bytes_to_client: 1_500_000,
                            errors: errors(&[(kawaii_proxy::ErrorKind::ConnectFailed, 5)]),
                        },
                    ],
                }],
                idle_pipes: 4,
            }),
            ipsec: Some(ipsec::View {
                mode: Some(ipsec::Mode::Kernel),
                charon: ipsec::CharonView {
                    running: true,
                    pid: Some(4242),
                    restarts: 0,
                    last_exit: None,
                },
                connections: vec![
                    ipsec::ConnView {
                        id: "ipsec-0".into(),
                        name: "ACME Office".into(),
                        remote_peer: "198.51.100.8".into(),
                        remote_subnet: "172.16.1.0/24".into(),
                        start_action: "start".into(),
                        start: "initiate".into(),
                        ike_state: "ESTABLISHED".into(),
                        child_state: "INSTALLED".into(),
                        established_seconds: Some(930),
                        child_installed_seconds: Some(920),
                        algorithms: Some("AES_CBC-128/HMAC_SHA2_256_128/MODP_2048".into()),
                        child_remote_ts: vec!["172.16.1.0/24".into()],
                        bytes_in: 52_000,
                        bytes_out: 61_000,
                        packets_in: 400,
                        packets_out: 420,
                        ..Default::default()
                    },
                    ipsec::ConnView {
                        id: "ipsec-1".into(),
                        name: "branch".into(),
                        remote_peer: "198.51.100.9".into(),
                        remote_subnet: "172.16.2.0/24".into(),
                        start_action: "trap".into(),
                        start: "trap".into(),
                        ike_state: "DOWN".into(),
                        child_state: "DOWN".into(),
                        last_error: Some(ipsec::ErrorView {
                            reason: "authentication failed".into(),
                            detail: "received AUTHENTICATION_FAILED notify error".into(),
                            at: NOW - 75,
                        }),
                        remote_alias: Some("10.92.2.0/24".into()),
                        local_alias: Some("10.72.0.0/24".into()),
                        ..Default::default()
                    },
                ],
            }),
            pipes: Some(vec![kawaii_proxy::PipeStatus {
                name: "vm1-web".into(),
                listen: "10.8.0.1:8080".parse().expect("addr"),
                target: "10.1.0.10:80".into(),
                connections: 12,
                active: 1,
                bytes_in: 3_400,
                bytes_out: 880_000,
                errors: errors(&[(kawaii_proxy::ErrorKind::ConnectTimeout, 1)]),
            }]),
            vpc_peerings: Some(vec![consent::PeeringStatus {
                name: "marvelous".into(),
                subnet: "10.201.0.0/24".parse().expect("net"),
                local_subnet: "10.1.0.0/24".parse().expect("net"),
                local_alias: Some("10.200.0.0/24".parse().expect("net")),
                subnet6: Some("2001:db8:2::/64".parse().expect("net")),
                local_subnet6: Some("2001:db8:1::/64".parse().expect("net")),
                state: "active",
                since: NOW - 7_200,
                error: None,
            }]),
            wireguard: Some(wireguard::DeviceStatus {
                interface: "kawaii-wg0".into(),
                listen_port: 51820,
                public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
                peers: vec![
                    wireguard::PeerStatus {
                        name: "alice".into(),
                        public_key: "GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=".into(),
                        allowed_ips: vec!["10.8.0.2/32".into()],
                        endpoint: Some("192.0.2.2:40000".into()),
                        rx_bytes: 9_100,
                        tx_bytes: 12_500,
                        last_handshake: Some(NOW - 95),
                        last_handshake_ago: Some(95),
                    },
                    wireguard::PeerStatus {
                        name: "carol".into(),
                        public_key: "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into(),
                        allowed_ips: vec!["10.8.0.4/32".into(), "192.168.50.0/24".into()],
                        endpoint: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                        last_handshake: None,
                        last_handshake_ago: None,
                    },
                ],
            }),
            conntrack_sync: Some(conntrackd::View {
                enabled: true,
                transport: Some("ftfw-unicast".into()),
                running: true,
                pid: Some(4343),
                restarts: 1,
                last_restart_ms: Some(NOW_MS - 600_000),
                ready: true,
                ready_at_ms: Some(NOW_MS - 598_000),
                resyncs: 2,
                last_resync_ms: Some(NOW_MS - 598_000),
                synced_entries: 140,
                injected_entries: 96,
                injected_updates: 300,
                injected_destroys: 12,
                messages_sent: 5_000,
                messages_received: 4_800,
                siblings: vec![conntrackd::SiblingView {
                    address: "10.254.0.12".into(),
                    state: "up".into(),
                    last_heard_secs: Some(0),
                }],
                ..Default::default()
            }),
            conntrack: Some(conntrack::GuardStatus {
                count: 1_200,
                max: 262_144,
                fill: 1_200.0 / 262_144.0,
                public_cap: 196_608,
                engaged: false,
            }),
        },
    };
    serde_json::to_value(&status).expect("status serializes")
}

#[test]
fn status_every_section_in_every_format() {
    let v = full_status();
    let table = status(&v, false, NOW_MS);
    let wide = status(&v, true, NOW_MS);
    for t in [&table, &wide] {
        // (Quotes alone are no sign: the daemon's messages quote names.)
        assert!(
            !t.contains(['{', '}']) && !t.contains("\":"),
            "JSON in a table:\n{t}"
        );
        for section in [
            "drivers",
            "config file rejected",
            "zones (vrrp)",
            "rule counters",
            "wireguard peers",
            "ipsec connections",
            "vpc peerings",
            "router routes",
            "router backends",
            "pipes",
            "connection-state sync",
            "conntrack table",
        ] {
            assert!(
                t.lines().any(|l| l.starts_with(section)),
                "no {section}:\n{t}"
            );
        }
    }
    check_golden(&testdata("status.table"), &table);
    check_golden(&testdata("status.wide"), &wide);
    let json = serialized(&v, "json").expect("json");
    assert_eq!(serde_json::from_str::<Value>(&json).expect("JSON"), v);
    check_golden(&testdata("status.json"), &json);
    let yaml = serialized(&v, "yaml").expect("yaml");
    assert_eq!(yaml_serde::from_str::<Value>(&yaml).expect("YAML"), v);
    check_golden(&testdata("status.yaml"), &yaml);
}

/// A daemon newer than the client may send a section it does not know: it is a table too.
#[test]
fn an_unknown_section_is_a_table_not_json() {
    let v = serde_json::json!({
        "gateway": "acme", "desired_revision": 1, "applied_revision": 0, "ready": false,
        "degraded": "driver netlink failing",
        "drivers": [],
        "details": {
            "flux_capacitor": { "charged": true, "gigawatts": 1.21,
                "coils": [{ "name": "c1", "temp": { "now": 20, "max": 90 } }] }
        }
    });
    let t = status(&v, false, NOW_MS);
    assert!(t.contains("DEGRADED: driver netlink failing"), "{t}");
    assert!(
        t.contains("\nflux capacitor\nCHARGED   GIGAWATTS\nyes       1.21\n"),
        "{t}"
    );
    assert!(
        t.contains("flux capacitor coils\nNAME   TEMP\nc1     max=90,now=20\n"),
        "{t}"
    );
}

#[test]
fn ages_read_like_kubectl() {
    for (secs, want) in [
        (5, "5s"),
        (119, "119s"),
        (303, "5m3s"),
        (3_700, "61m"),
        (11_000, "3h3m"),
        (200_000, "2d7h"),
    ] {
        assert_eq!(age(secs), want);
    }
}
