//! An office on our own subnet with two zones: the tunnel ends on zone A's VIP; vm-b, whose
//! gateway is zone B, reaches the office too (zone B routes the office's alias to zone A, which
//! translates and marks it into the tunnel), and when zone A dies zone B takes the VIP, the
//! tunnel and the translation: vm-a reaches the office again through zone B.

use super::Ha;
use kawaii_testkit::lab::{self, HaLab};
use kawaii_testkit::{Host, wait_for};
use std::time::Duration;

const PSK: &str = "office-psk-for-the-ha-twin-test";

/// `host` reaches the office's host at its alias and is seen there as `seen`.
fn reaches(host: &Host, seen: &str, what: &str) -> Result<(), String> {
    let url = format!("http://{}:8080/", lab::TWIN_SEEN);
    let want = format!("hello from {}, you are {seen}:", lab::TWIN_HOST);
    wait_for(Duration::from_secs(30), what, || {
        host.curl(&url, "1").filter(|b| b.contains(&want))
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[test]
fn an_office_on_our_own_subnet_follows_its_vip_to_the_other_zone() {
    let mut ha = Ha::new("ha-twin", true, |_| {
        format!(
            "{}{}dpd_timeout = \"8s\"\n",
            lab::ha_config(5, "0s"),
            lab::twin_toml(&format!("pre_shared_key = \"{PSK}\""))
        )
    });
    let HaLab {
        gw_a,
        gw_b,
        vm_a,
        vm_b,
        router,
        svc,
        ..
    } = ha.lab.clone();
    let office = lab::twin_office(&mut ha.topo, (&router, &svc), PSK).expect("office");
    let diag = |ha: &mut Ha| {
        format!(
            "office SAs:\n{}\ngw-a rules:\n{}\ngw-b rules:\n{}\nzone A:\n{}",
            office.sas(),
            gw_a.run(&["ip", "rule"]).unwrap_or_default(),
            gw_b.run(&["ip", "rule"]).unwrap_or_default(),
            ha.lab.kawaii_a.log(&mut ha.topo)
        )
    };
    if let Err(e) = reaches(&vm_a, "10.73.0.10", "vm-a to the office through zone A") {
        panic!("{e}\n{}", diag(&mut ha));
    }
    if let Err(e) = reaches(
        &vm_b,
        "10.73.0.40",
        "vm-b to the office, zone B then zone A",
    ) {
        panic!("{e}\n{}", diag(&mut ha));
    }
    ha.zone_a_dies(lab::ZONE_A_PUBLIC_VIP);
    if let Err(e) = reaches(&vm_a, "10.73.0.10", "vm-a to the office through zone B") {
        let log_b = ha.zone_b().clone().log(&mut ha.topo);
        panic!("{e}\noffice SAs:\n{}\nzone B:\n{log_b}", office.sas());
    }
    let rules = gw_b.run(&["ip", "rule"]).unwrap_or_default();
    assert!(rules.contains("fwmark 0x6b61 lookup 220"), "{rules}");
}
