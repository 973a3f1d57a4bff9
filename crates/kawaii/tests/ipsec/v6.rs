//! The IPv6 twin of the site-to-site test (issue 18, acceptance 6): the dual-stack gateway lab
//! and the dual-stack office (`office::build_dual`), IKE and ESP between 2001:db8:ff::10 and
//! 2001:db8:5::8, the office's 2001:db8:a1::/64 tunnelled to 2001:db8:1::/64, routed both ways
//! (no NAT66) and limited by the connection's ingress rule (tcp/22); a forged office source
//! from the Internet is dropped. Then the same tunnel carries both inner families, and once it
//! is down nothing reaches the office's prefix in clear.

use super::{KAWAII, PSK, WRONG, tail};
use kawaii_testkit::api::Api;
use kawaii_testkit::lab::{self, GatewayLab};
use kawaii_testkit::office::{self, Office, OfficeConn};
use kawaii_testkit::{Host, Topology, slurp};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const CONN: &str = "/v1/ipsec/Office%20v6";
const PROPOSAL: &str = "aes256-sha256-modp2048";

fn config() -> String {
    office::ipsec6_toml(PSK, office::SSH_ONLY)
}

/// The office's mirror: over IPv6 to the gateway's IPv6 VIP, for `local_ts` ↔ `remote_ts`.
fn office_conn(local_ts: &str, remote_ts: &str) -> OfficeConn {
    OfficeConn {
        psk: PSK.into(),
        remote_peer: lab::PUBLIC_VIP6.into(),
        local_ts: local_ts.into(),
        remote_ts: remote_ts.into(),
        ike_proposal: PROPOSAL.into(),
        esp_proposal: PROPOSAL.into(),
    }
}

/// `curl` from `host`, leaving from its address `from`; the body on success.
fn curl_from(host: &Host, from: &str, url: &str) -> Option<String> {
    let out = host
        .exec(&["curl", "-s", "-m", "1", "--interface", from, url])
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Site {
    topo: Topology,
    lab: GatewayLab,
    office: Office,
    api: Api,
}

impl Site {
    fn conn(&self) -> Value {
        self.api.status()["details"]["ipsec"]["connections"][0].clone()
    }

    /// Office host → vm1's tcp/`port` over IPv6, answered to the office host's own address.
    fn office_to_vm1(&self, port: u16) -> bool {
        curl_from(
            &self.office.host,
            office::OFFICE_HOST6,
            &format!("http://[{}]:{port}/", lab::VM1_6),
        )
        .is_some_and(|b| {
            b.contains(&format!(
                "hello from vm1, you are {}:",
                office::OFFICE_HOST6
            ))
        })
    }

    /// vm1 → the office host over IPv6, seen under vm1's own address (no NAT66).
    fn vm1_to_office(&self) -> bool {
        curl_from(
            &self.lab.vm1,
            lab::VM1_6,
            &format!("http://[{}]:8080/", office::OFFICE_HOST6),
        )
        .is_some_and(|b| b.contains(&format!("hello from ohost, you are {}:", lab::VM1_6)))
    }

    /// A rule counter's packets in the gateway's table, by the rule's comment.
    fn counter(&self, comment: &str) -> u64 {
        super::nft::rule_packets(&self.lab.gw, comment)
    }

    fn wait(&mut self, what: &str, timeout: Duration, check: impl Fn(&Site) -> bool) -> Duration {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if check(self) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let gw = self
            .lab
            .gw
            .run(&[
                "sh",
                "-c",
                "nft list ruleset; ip -6 route show table all; ip -6 rule",
            ])
            .unwrap_or_default();
        panic!(
            "{what} not within {timeout:?}\n--- status\n{}\n--- office SAs\n{}\n--- kawaii charon\n{}\n--- office charon\n{}\n--- kawaii\n{}\n--- gw\n{gw}",
            self.api.status()["details"]["ipsec"],
            self.office.sas(),
            tail(&slurp(&self.lab.state.join("ipsec/charon.log")), 40),
            tail(&self.office.log(), 30),
            tail(&self.lab.kawaii.log(&mut self.topo), 30),
        );
    }
}

#[test]
fn ipsec6_site_to_site_over_ipv6() {
    let (mut topo, lab) = lab::start(
        "ipsec6",
        Path::new(KAWAII),
        &(lab::LAB_TOML.to_string() + &config()),
    )
    .unwrap_or_else(|e| panic!("lab: {e}"));
    let office = office::build_dual(&mut topo, &lab.router, &lab.svc)
        .unwrap_or_else(|e| panic!("office: {e}"));
    office
        .load(&office_conn(office::OFFICE_SUBNET6, lab::PRIVATE_SUBNET6))
        .expect("office config");
    // vm1 also serves on tcp/22, the port the connection's ingress rule opens.
    topo.spawn(
        &lab.vm1,
        "vm1-http-22",
        &["python3", &lab.svc, "http", "vm1", "22"],
    )
    .expect("vm1 :22");
    let api = lab.api();
    let mut s = Site {
        topo,
        lab,
        office,
        api,
    };

    // IPv6 outside and inside: both directions, each side seeing the other's own address.
    let took = s.wait(
        "tunnel up (office → vm1 over IPv6)",
        Duration::from_secs(30),
        |s| s.office_to_vm1(22),
    );
    eprintln!("IPv6 tunnel up after {took:?}");
    s.wait(
        "vm1 → office host over IPv6",
        Duration::from_secs(5),
        Site::vm1_to_office,
    );
    let c = s.conn();
    assert_eq!(c["remote_peer"], office::OFFICE_PUBLIC6, "{c}");
    assert_eq!(c["remote_subnet"], office::OFFICE_SUBNET6, "{c}");
    assert_eq!(
        c["child_remote_ts"],
        serde_json::json!([office::OFFICE_SUBNET6]),
        "{c}"
    );
    assert_eq!(c["ike_state"], "ESTABLISHED", "{c}");
    // The office's IKE SA is between the two IPv6 addresses.
    let sas = s.office.sas();
    assert!(
        sas.contains(&format!("local  '{0}' @ {0}[", office::OFFICE_PUBLIC6))
            && sas.contains(&format!("remote '{0}' @ {0}[", lab::PUBLIC_VIP6)),
        "{sas}"
    );
    // kernel-libipsec routes the office's prefix into its TUN device, from private_vip6.
    let routes = s
        .lab
        .gw
        .run(&["ip", "-6", "route", "show", "table", "220"])
        .expect("table 220");
    assert!(
        routes.contains(office::OFFICE_SUBNET6) && routes.contains("src 2001:db8:1::1"),
        "{routes}"
    );

    // The ingress rule is enforced: tcp/80 on vm1 (open to the Internet) is refused from the
    // office, while tcp/22 passes.
    assert!(
        !s.office_to_vm1(80),
        "tcp/80 from the office must be dropped"
    );
    assert!(s.office_to_vm1(22));

    // A forged office source from the Internet (the private prefix is routed) is dropped
    // before the tunnel's rules could accept it.
    let forged = "2001:db8:a1::99";
    s.lab
        .internet
        .addr6("eth0", &format!("{forged}/128"))
        .expect("forged address");
    let id = c["id"].as_str().expect("connection id").to_string();
    let before = s.counter(&format!("ipsec-{id}-forged6"));
    assert!(
        curl_from(
            &s.lab.internet,
            forged,
            &format!("http://[{}]:22/", lab::VM1_6)
        )
        .is_none(),
        "a forged office source reached vm1"
    );
    assert!(
        s.counter(&format!("ipsec-{id}-forged6")) > before,
        "the forged packets were not dropped by ipsec-{id}-forged6"
    );

    // Dual-stack office, one tunnel: both inner families over the IPv6 outer path.
    let t0 = Instant::now();
    let both = format!("172.16.1.0/24,{}", office::OFFICE_SUBNET6);
    s.office
        .load(&office_conn(
            &both,
            &format!("10.1.0.0/24,{}", lab::PRIVATE_SUBNET6),
        ))
        .expect("office config, both families");
    let mut v = s.api.get(CONN).json();
    v["remote_subnet"] = format!("172.16.1.0/24, {}", office::OFFICE_SUBNET6).into();
    let r = s.api.put(CONN, &v);
    assert_eq!(r.status, 200, "{}", r.body);
    s.wait(
        "both families through one tunnel",
        Duration::from_secs(10),
        |s| {
            s.office_to_vm1(22)
                && s.vm1_to_office()
                && s.office
                    .host
                    .curl(&format!("http://{}:22/", lab::VM1), "1")
                    .is_some_and(|b| b.contains("hello from vm1, you are 172.16.1.10:"))
                && s.lab
                    .vm1
                    .curl(&format!("http://{}:8080/", office::OFFICE_HOST), "1")
                    .is_some_and(|b| b.contains("hello from ohost, you are 10.1.0.10:"))
        },
    );
    eprintln!("dual-stack inner re-established after {:?}", t0.elapsed());
    let c = s.conn();
    let ts = c["child_remote_ts"].to_string();
    assert!(
        ts.contains("172.16.1.0/24") && ts.contains(office::OFFICE_SUBNET6),
        "{c}"
    );
    assert_eq!(c["ike_state"], "ESTABLISHED", "{c}");
    // IPv4 from the office is limited by the same rule.
    assert!(
        s.office
            .host
            .curl(&format!("http://{}:80/", lab::VM1), "1")
            .is_none(),
        "tcp/80 over IPv4 from the office must be dropped"
    );

    // Tunnel down (the office no longer takes our key): the office's prefix is not reached in
    // clear through the IPv6 default route.
    let mut wrong = office_conn(&both, &format!("10.1.0.0/24,{}", lab::PRIVATE_SUBNET6));
    wrong.psk = WRONG.into();
    s.office.load(&wrong).expect("office, wrong key");
    let _ = s.office.terminate();
    s.wait(
        "tunnel down and its route gone",
        Duration::from_secs(15),
        |s| {
            s.conn()["child_state"] != "INSTALLED"
                && s.lab
                    .gw
                    .run(&["ip", "-6", "route", "show", "table", "220"])
                    .is_ok_and(|r| !r.contains(office::OFFICE_SUBNET6))
        },
    );
    let before = s.counter(&format!("ipsec-{id}-no-sa6"));
    assert!(!s.vm1_to_office(), "the office answered without a tunnel");
    assert!(
        s.counter(&format!("ipsec-{id}-no-sa6")) > before,
        "vm1's packets to the office were not dropped by ipsec-{id}-no-sa6"
    );

    let mut logs = s.lab.kawaii.log(&mut s.topo);
    logs += &slurp(&s.lab.state.join("ipsec/charon.log"));
    logs += &s.office.log();
    logs += &s.api.status().to_string();
    for psk in [PSK, WRONG] {
        assert!(!logs.contains(psk), "a PSK leaked");
    }
}
