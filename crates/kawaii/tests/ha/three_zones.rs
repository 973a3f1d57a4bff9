//! Three zones and a VPN laptop of zone A that pings vm-c, whose gateway is zone C: zone C routes
//! the answers to the instance that has the laptop's session (zone A's private address). When
//! zone A dies, zone B (next in the order) calls the laptop over and tells its siblings as soon as
//! the session is up; zone C, re-locating the laptop as soon as it hears, routes the answers to
//! zone B's instance within milliseconds.

use super::{KAWAII, SERIAL};
use kawaii_testkit::keys::{keypair, write_secret};
use kawaii_testkit::lab::{self, HaLabOptions};
use kawaii_testkit::{Host, Topology, ping, three_zones, wait_for};
use std::path::Path;
use std::time::Duration;

/// Where `gw` routes the laptop's VPN address.
fn route_to_laptop(gw: &Host) -> String {
    gw.run(&["ip", "route", "get", "10.8.0.2"])
        .unwrap_or_default()
}

#[test]
fn a_third_zone_routes_the_laptops_answers_to_the_zone_that_called_it_over() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = Topology::new("ha-3z-vpn").expect("topology");
    let key_file = t.dir().join("wg.key");
    write_secret(&key_file, &keypair().expect("wg genkey").0, 0o600).expect("key file");
    let (laptop_key, laptop_pub) = keypair().expect("wg genkey");
    let peers = [("laptop", laptop_pub.as_str(), "")];
    let text = three_zones::config() + &lab::wireguard_toml(&key_file.to_string_lossy(), &peers);
    let config = t.write("gateway.toml", &text).expect("config");
    let opts = HaLabOptions {
        kawaii: KAWAII.into(),
        config,
        env: vec![],
        start_b: true,
        etcd: false,
    };
    let z = three_zones::build(&mut t, &opts).unwrap_or_else(|e| panic!("{e}"));
    let gw = (&z.gws[0], z.kawaii[0].state.as_path());
    let laptop = lab::vpn_laptop_at(
        &mut t,
        (&z.router, "eth2"),
        gw,
        Path::new(KAWAII),
        &laptop_key,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for(
        Duration::from_secs(20),
        "the laptop to vm-c, answered by zone C through zone A",
        || laptop.pings(three_zones::VM_C).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\nzone C: {}", route_to_laptop(&z.gws[2])));
    let via_a = route_to_laptop(&z.gws[2]);
    assert!(via_a.contains("via 10.1.0.251 "), "{via_a}");
    // The siblings have heard where the laptop is (sync every 0.5 s).
    std::thread::sleep(Duration::from_millis(1500));

    let pinger = ping::start(
        &mut t,
        &laptop,
        "ping-vm-c",
        three_zones::VM_C,
        "0.05",
        None,
    )
    .expect("ping");
    std::thread::sleep(Duration::from_secs(1));
    t.proc(z.kawaii[0].proc).kill();
    for dev in ["wan0", "lan0"] {
        z.gws[0]
            .run(&["ip", "link", "set", dev, "down"])
            .expect("link");
    }
    wait_for(Duration::from_secs(10), "zone B to take zone A", || {
        lab::has_address(&z.gws[1], three_zones::PRIVATE_VIPS[0]).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_secs(8));
    let (gap, replies) = ping::stop(&mut t, pinger);
    eprintln!(
        "three zones, zone A lost: the laptop to vm-c, longest gap {gap:?} over {replies} replies"
    );
    let via = route_to_laptop(&z.gws[2]);
    assert!(
        replies > 100 && gap < Duration::from_secs(5),
        "gap {gap:?}, {replies} replies; zone C routes the laptop: {via}\nzone C's log:\n{}",
        z.kawaii[2].log(&mut t)
    );
    assert!(
        via.contains("via 10.1.0.252 "),
        "zone C routes the laptop: {via}"
    );
}
