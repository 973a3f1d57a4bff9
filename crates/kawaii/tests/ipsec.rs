//! IPsec site-to-site end to end: the gateway lab plus an `office` namespace on the internet
//! side running its own charon (kernel-libipsec) from a hand-written swanctl.conf, and a host
//! behind it. kawaii's charon is the one it starts and supervises itself.

use kawaii_testkit::api::Api;
use kawaii_testkit::lab::{self, GatewayLab};
use kawaii_testkit::office::{self, Office, OfficeConn};
use kawaii_testkit::{Topology, slurp};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const KAWAII: &str = env!("CARGO_BIN_EXE_kawaii");

#[path = "support/nft.rs"]
mod nft;

/// The IPv6 twin (`ipsec6_*`): IPv6 outer and inner addresses, and a dual-stack office.
#[path = "ipsec/v6.rs"]
mod v6;

/// An office on our own private subnet (`ipsec/twin.rs`).
#[path = "ipsec/twin.rs"]
mod twin;

const PSK: &str = "office-psk-never-in-any-log-1";
const PSK2: &str = "office-psk-rotated-never-logged-2";
const WRONG: &str = "office-psk-wrong-on-purpose-3";
const CONN: &str = "/v1/ipsec/ACME%20Office";

struct Site {
    topo: Topology,
    lab: GatewayLab,
    office: Office,
    api: Api,
}

fn ipsec_block(psk: &str, subnet: &str, p1: PhaseSpec, p2: PhaseSpec, rules: bool) -> String {
    let rules = if rules { office::SSH_ONLY } else { "" };
    office::ipsec_conn_toml(
        "ACME Office",
        office::OFFICE_PUBLIC,
        subnet,
        psk,
        (p1, p2),
        rules,
    )
}

/// strongSwan proposal keyword for the office's hand-written config.
fn proposal(p: (u32, &str, &str)) -> String {
    let dh = match p.0 {
        2 => "modp1024",
        5 => "modp1536",
        14 => "modp2048",
        19 => "ecp256",
        20 => "ecp384",
        21 => "ecp521",
        other => panic!("group {other} not in this test's table"),
    };
    format!(
        "{}-{}-{dh}",
        p.2.to_ascii_lowercase(),
        p.1.to_ascii_lowercase()
    )
}

fn office_conn(psk: &str, p1: (u32, &str, &str), p2: (u32, &str, &str)) -> OfficeConn {
    OfficeConn {
        psk: psk.into(),
        remote_peer: lab::PUBLIC_VIP.into(),
        local_ts: "172.16.0.0/16".into(),
        remote_ts: "10.1.0.0/24".into(),
        ike_proposal: proposal(p1),
        esp_proposal: proposal(p2),
    }
}

/// DH group, integrity, encryption of one phase.
type PhaseSpec = (u32, &'static str, &'static str);

const SEED: PhaseSpec = (14, "SHA512", "AES256");

/// The algorithm matrix (`testdata/ipsec-matrix.txt`): phase 1, phase 2, and the IKE SA's DH
/// group as strongSwan lists it.
fn matrix() -> Vec<(PhaseSpec, PhaseSpec, &'static str)> {
    let phase = |c: &'static str| -> PhaseSpec {
        let w: Vec<&'static str> = c.split_whitespace().collect();
        assert_eq!(w.len(), 3, "{c:?}: DH group, integrity, encryption");
        (w[0].parse().expect("a DH group number"), w[1], w[2])
    };
    include_str!("testdata/ipsec-matrix.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&'static str> = l.split('|').map(str::trim).collect();
            assert_eq!(cols.len(), 3, "{l:?}");
            (phase(cols[0]), phase(cols[1]), cols[2])
        })
        .collect()
}

impl Site {
    fn new(tag: &str, rules: bool) -> Site {
        let config =
            lab::LAB_TOML.to_string() + &ipsec_block(PSK, "172.16.1.0/24", SEED, SEED, rules);
        let (mut topo, lab) =
            lab::start(tag, Path::new(KAWAII), &config).unwrap_or_else(|e| panic!("lab: {e}"));
        let office = office::build(&mut topo, &lab.router, &lab.svc)
            .unwrap_or_else(|e| panic!("office: {e}"));
        office
            .load(&office_conn(PSK, SEED, SEED))
            .expect("office config");
        // vm1 also serves on tcp/22 (allowed by the connection's ingress rule).
        topo.spawn(
            &lab.vm1,
            "vm1-http-22",
            &["python3", &lab.svc, "http", "vm1", "22"],
        )
        .expect("vm1 :22");
        let api = lab.api();
        Site {
            topo,
            lab,
            office,
            api,
        }
    }

    fn status(&self) -> Value {
        self.api.status()
    }

    fn ipsec(&self) -> Value {
        self.status()["details"]["ipsec"].clone()
    }

    fn conn_status(&self) -> Value {
        self.ipsec()["connections"][0].clone()
    }

    fn charon_pid(&self) -> Option<u64> {
        self.ipsec()["charon"]["pid"].as_u64()
    }

    fn kawaii_log(&mut self) -> String {
        self.lab.kawaii.log(&mut self.topo)
    }

    /// Everything kawaii and both charons wrote.
    fn all_logs(&mut self) -> String {
        let dir = self.lab.state.join("ipsec");
        let mut s = self.kawaii_log();
        for f in ["charon.log", "charon.out", "strongswan.conf"] {
            s += &slurp(&dir.join(f));
        }
        s += &self.office.log();
        s
    }

    fn diagnostics(&mut self) -> String {
        format!(
            "--- status\n{}\n--- office SAs\n{}\n--- kawaii charon\n{}\n--- office charon\n{}\n--- kawaii\n{}",
            serde_json::to_string_pretty(&self.ipsec()).unwrap_or_default(),
            self.office.sas(),
            tail(&slurp(&self.lab.state.join("ipsec/charon.log")), 40),
            tail(&self.office.log(), 30),
            tail(&self.kawaii_log(), 30),
        )
    }

    /// Changes the connection through the API (fields of the stored object replaced).
    fn put_conn(&self, change: impl FnOnce(&mut Value)) {
        let mut v = self.api.get(CONN).json();
        change(&mut v);
        let r = self.api.put(CONN, &v);
        assert_eq!(r.status, 200, "{}", r.body);
    }

    fn wait_up(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Site) -> bool,
    ) -> Duration {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if check(self) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let d = self.diagnostics();
        panic!("{what} not within {timeout:?}\n{d}");
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The unique id of the office's established IKE SA (`kawaii: #3, ESTABLISHED, ...`).
fn office_ike_id(sas: &str) -> Option<String> {
    sas.lines()
        .find(|l| l.starts_with("kawaii: #") && l.contains("ESTABLISHED"))
        .and_then(|l| l.split(',').next())
        .map(String::from)
}

/// Office host → vm1 over the tunnel (tcp/22), seeing the office host's real address.
fn office_to_vm1(s: &Site) -> bool {
    s.office
        .host
        .curl("http://10.1.0.10:22/", "1")
        .is_some_and(|b| b.contains("hello from vm1, you are 172.16.1.10:"))
}

/// vm1 → office host, seeing vm1's real address (no NAT).
fn vm1_to_office(s: &Site, host: &str) -> bool {
    s.lab
        .vm1
        .curl(&format!("http://{host}:8080/"), "1")
        .is_some_and(|b| b.contains("hello from ohost, you are 10.1.0.10:"))
}

#[test]
fn ipsec_site_to_site_end_to_end() {
    let mut s = Site::new("ipsec", true);

    // (1) + (3): the seed's parameters, a name with a space; both directions, real addresses.
    let took = s.wait_up(
        "tunnel up (office → vm1)",
        Duration::from_secs(30),
        office_to_vm1,
    );
    eprintln!("tunnel up after {took:?}");
    s.wait_up("vm1 → office host", Duration::from_secs(5), |s| {
        vm1_to_office(s, office::OFFICE_HOST)
    });
    let c = s.conn_status();
    assert_eq!(c["name"], "ACME Office", "{c}");
    assert!(
        c["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("acme-office-")),
        "{c}"
    );
    let ipsec = s.ipsec();
    assert_eq!(ipsec["mode"], "kernel-libipsec", "{ipsec}");
    assert_eq!(c["start"], "initiate", "{c}");
    s.wait_up(
        "status shows the SA with traffic",
        Duration::from_secs(5),
        |s| {
            let c = s.conn_status();
            c["ike_state"] == "ESTABLISHED"
                && c["child_state"] == "INSTALLED"
                && c["packets_in"].as_u64() > Some(0)
        },
    );
    assert!(
        s.office
            .sas()
            .contains("AES_CBC-256/HMAC_SHA2_512_256/PRF_HMAC_SHA2_512/MODP_2048")
    );
    // The same in /metrics (no token needed, no secret in it).
    let metrics = s.api.as_token(None).get("/metrics").body;
    assert!(
        metrics.contains("kawaii_ipsec_child_sa_up{connection=\"ACME Office\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kawaii_ipsec_packets_in_total{connection=\"ACME Office\"}"));

    // `kawaii render --what ipsec`: the plan's connections, no PSK.
    let cfg = s.lab.kawaii.config.clone();
    let mut render = std::process::Command::new(KAWAII);
    render
        .args(["render", "--what", "ipsec", "--config"])
        .arg(&cfg);
    let rendered = kawaii_testkit::output(render, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rendered.contains("aes256-sha512-modp2048") && !rendered.contains(PSK),
        "{rendered}"
    );

    // (6) per-connection ingress rules: tcp/22 allowed (above), tcp/80 dropped.
    assert!(
        s.office.host.curl("http://10.1.0.10:80/", "2").is_none(),
        "tcp/80 from the office must be dropped"
    );

    // (4) PSK change through the API: re-established within 5 s, same charon.
    let pid = s.charon_pid().expect("charon pid");
    s.office
        .load(&office_conn(PSK2, SEED, SEED))
        .expect("office psk");
    let before = office_ike_id(&s.office.sas()).expect("office IKE SA");
    let t0 = Instant::now();
    s.put_conn(|v| v["pre_shared_key"] = PSK2.into());
    s.wait_up(
        "re-established with the new PSK",
        Duration::from_secs(5),
        |s| office_ike_id(&s.office.sas()).is_some_and(|id| id != before) && office_to_vm1(s),
    );
    eprintln!("PSK change re-established after {:?}", t0.elapsed());
    assert_eq!(s.charon_pid(), Some(pid), "charon was not restarted");

    // (4) remote subnet change: 172.16.2.0/24 negotiated within 5 s, same charon.
    let t0 = Instant::now();
    s.put_conn(|v| v["remote_subnet"] = "172.16.2.0/24".into());
    s.wait_up("remote subnet changed", Duration::from_secs(5), |s| {
        s.conn_status()["child_remote_ts"][0] == "172.16.2.0/24"
            && vm1_to_office(s, office::OFFICE_HOST_2)
    });
    eprintln!(
        "remote subnet change re-established after {:?}",
        t0.elapsed()
    );
    assert_eq!(s.charon_pid(), Some(pid), "charon was not restarted");
    s.put_conn(|v| v["remote_subnet"] = "172.16.1.0/24".into());
    s.wait_up("remote subnet back", Duration::from_secs(5), office_to_vm1);

    // (7) charon killed: kawaii restarts it and the tunnel is back within 10 s.
    s.lab
        .gw
        .run(&["kill", "-KILL", &pid.to_string()])
        .expect("kill charon");
    let t0 = Instant::now();
    s.wait_up(
        "tunnel back after charon was killed",
        Duration::from_secs(10),
        |s| s.charon_pid().is_some_and(|p| p != pid) && office_to_vm1(s),
    );
    eprintln!("tunnel back {:?} after charon was killed", t0.elapsed());
    assert!(s.ipsec()["charon"]["restarts"].as_u64() >= Some(1));

    // (5) wrong PSK on the office: status says why, nothing crashes.
    let pid = s.charon_pid().expect("charon pid");
    s.office
        .load(&office_conn(WRONG, SEED, SEED))
        .expect("office psk");
    let _ = s.office.terminate();
    s.wait_up(
        "authentication failure in status",
        Duration::from_secs(15),
        |s| {
            s.conn_status()["last_error"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("authentication failed"))
        },
    );
    let ki = s.lab.kawaii.proc;
    assert!(s.topo.proc(ki).alive(), "kawaii crashed");
    assert_eq!(s.charon_pid(), Some(pid), "charon crashed");
    // Back to the right key: the driver keeps retrying.
    s.office
        .load(&office_conn(PSK2, SEED, SEED))
        .expect("office psk");
    s.wait_up(
        "tunnel back with the right PSK",
        Duration::from_secs(10),
        office_to_vm1,
    );

    // Deleting the connection tears its SAs down.
    let r = s.api.delete(CONN);
    assert_eq!(r.status, 200, "{}", r.body);
    s.wait_up("SAs gone on the office", Duration::from_secs(5), |s| {
        !s.office.sas().contains("ESTABLISHED")
    });
    s.wait_up("connection gone from status", Duration::from_secs(5), |s| {
        s.ipsec()["connections"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });

    // No PSK anywhere: logs of kawaii and both charons, status, API.
    let mut everything = s.all_logs();
    everything += &s.status().to_string();
    everything += &s.api.get("/v1/gateway").body;
    everything += &s.api.get("/v1/audit").body;
    for psk in [PSK, PSK2, WRONG] {
        assert!(!everything.contains(psk), "a PSK leaked");
    }
}

#[test]
fn ipsec_algorithm_matrix() {
    let mut s = Site::new("ipsecm", false);
    s.wait_up("tunnel up", Duration::from_secs(30), |s| {
        s.office.host.curl("http://10.1.0.10:80/", "1").is_some()
    });
    let combos = matrix();
    assert_eq!(combos.len(), 8);
    for (p1, p2, ike_dh) in combos {
        let t0 = Instant::now();
        s.office
            .load(&office_conn(PSK, p1, p2))
            .expect("office config");
        s.put_conn(|v| {
            v["phase1_dh_group_number"] = p1.0.into();
            v["phase1_integrity_algorithm"] = p1.1.into();
            v["phase1_encryption_algorithm"] = p1.2.into();
            v["phase2_dh_group_number"] = p2.0.into();
            v["phase2_integrity_algorithm"] = p2.1.into();
            v["phase2_encryption_algorithm"] = p2.2.into();
        });
        s.wait_up(
            &format!("tunnel with {p1:?}/{p2:?}"),
            Duration::from_secs(15),
            |s| {
                s.office.sas().contains(ike_dh)
                    && s.office
                        .host
                        .curl("http://10.1.0.10:80/", "1")
                        .is_some_and(|b| b.contains("you are 172.16.1.10:"))
                    && s.lab
                        .vm1
                        .curl("http://172.16.1.10:8080/", "1")
                        .is_some_and(|b| b.contains("you are 10.1.0.10:"))
            },
        );
        let sas = s.office.sas();
        let esp = if p2.2.starts_with("CAMELLIA") {
            "CAMELLIA_CBC"
        } else {
            "AES_CBC"
        };
        assert!(sas.contains(esp), "{p2:?}: {sas}");
        eprintln!("{p1:?} / {p2:?}: up in {:?}", t0.elapsed());
    }
    let logs = s.all_logs();
    assert!(!logs.contains(PSK), "the PSK leaked into a log");
}

/// Two offices both on 192.168.1.0/24 (Paris at 198.51.100.8, Lyon at 198.51.100.9), real
/// strongSwan peers: vm1 reaches each through its own alias (10.91.1.0/24, 10.92.1.0/24); Paris
/// sees the gateway's private subnet as it is, Lyon sees its `local_alias` 10.72.0.0/24; each
/// office host reaches vm1 and vm1 sees it under its alias.
#[test]
fn offices_with_overlapping_subnets_through_aliases() {
    let offices = [
        (
            "Paris",
            "paris",
            "198.51.100.8",
            "eth2",
            "10.91.1.0/24",
            None,
        ),
        (
            "Lyon",
            "lyon",
            "198.51.100.9",
            "eth3",
            "10.92.1.0/24",
            Some("10.72.0.0/24"),
        ),
    ];
    let mut config = lab::LAB_TOML.to_string();
    for (name, _, peer, _, alias, local) in offices {
        config += &format!(
            "\n[[ipsec]]\nname = \"{name}\"\nremote_peer = \"{peer}\"\nremote_subnet = \"192.168.1.0/24\"\n\
             remote_alias = \"{alias}\"\n{}pre_shared_key = \"{PSK}\"\n\
             phase1_dh_group_number = 14\nphase1_integrity_algorithm = \"SHA512\"\n\
             phase1_encryption_algorithm = \"AES256\"\nphase2_dh_group_number = 14\n\
             phase2_integrity_algorithm = \"SHA512\"\nphase2_encryption_algorithm = \"AES256\"\n",
            local
                .map(|l| format!("local_alias = \"{l}\"\n"))
                .unwrap_or_default()
        );
    }
    let (mut topo, lab) =
        lab::start("ipsecnm", Path::new(KAWAII), &config).unwrap_or_else(|e| panic!("lab: {e}"));
    let mut sites = Vec::new();
    for (_, tag, peer, router_if, _, local) in offices {
        let host = format!("{tag}-host");
        let place = office::Place {
            name: tag,
            host: &host,
            public: peer,
            router_if,
            lan: &[("192.168.1.1/24", "192.168.1.10/24")],
            public6: None,
            lan6: &[],
        };
        let o = office::build_at(&mut topo, &lab.router, &lab.svc, &place)
            .unwrap_or_else(|e| panic!("office {tag}: {e}"));
        let conn = OfficeConn {
            local_ts: "192.168.1.0/24".into(),
            remote_ts: local.unwrap_or("10.1.0.0/24").into(),
            ..office_conn(PSK, SEED, SEED)
        };
        o.load(&conn).expect("office config");
        sites.push((o, host));
    }
    let api = lab.api();
    let seen_as = ["10.1.0.10", "10.72.0.10"];
    let aliases = ["10.91.1.10", "10.92.1.10"];
    let start = Instant::now();
    for (((o, host), seen), alias) in sites.iter().zip(seen_as).zip(aliases) {
        let want = format!("hello from {host}, you are {seen}:");
        let ok = || {
            lab.vm1
                .curl(&format!("http://{alias}:8080/"), "1")
                .filter(|b| b.contains(&want))
        };
        while ok().is_none() {
            if start.elapsed() > Duration::from_secs(40) {
                let logs = slurp(&lab.state.join("ipsec/charon.log"));
                panic!(
                    "vm1 -> {host} at {alias}: no answer as {seen}\n--- status\n{}\n--- office SAs\n{}\n--- office log\n{}\n--- kawaii charon\n{}\n--- gw\n{}",
                    api.status()["details"]["ipsec"],
                    o.sas(),
                    tail(&o.log(), 30),
                    tail(&logs, 40),
                    lab.gw
                        .run(&[
                            "sh",
                            "-c",
                            "nft list ruleset; ip route show table all; conntrack -L"
                        ])
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The office's host reaches vm1 where it sees the gateway, and vm1 sees the alias.
        let back = o
            .host
            .curl(&format!("http://{seen}/"), "2")
            .unwrap_or_default();
        assert!(
            back.contains(&format!("hello from vm1, you are {alias}:")),
            "{host} -> vm1 at {seen}: {back:?}"
        );
    }
    eprintln!("both offices reached after {:?}", start.elapsed());
    let conns = api.status()["details"]["ipsec"]["connections"].clone();
    let by_name = |n: &str| {
        conns
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == n)
            .cloned()
            .unwrap_or_default()
    };
    let (paris, lyon) = (by_name("Paris"), by_name("Lyon"));
    assert_eq!(
        (&paris["remote_subnet"], &paris["remote_alias"]),
        (&Value::from("192.168.1.0/24"), &Value::from("10.91.1.0/24")),
        "{paris}"
    );
    assert!(paris.get("local_alias").is_none(), "{paris}");
    assert_eq!(lyon["local_alias"], "10.72.0.0/24", "{lyon}");
    assert_eq!(lyon["remote_alias"], "10.92.1.0/24", "{lyon}");
}
