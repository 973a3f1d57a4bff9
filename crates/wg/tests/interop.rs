//! Interop with wireguard-go: our device in namespace A, wireguard-go (configured with `wg`)
//! in namespace B, joined by a veth pair. Needs root (fails, never skips, without it).

use std::time::Duration;

use kawaii_testkit::wg::{GoPair, bin_path};
use kawaii_testkit::{Host, Topology, can_run_with, wait_for};

fn transfer(host: &Host, ifname: &str) -> (u64, u64) {
    let out = host
        .run(&["wg", "show", ifname, "transfer"])
        .expect("wg show transfer");
    let w: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(w.len(), 3, "one peer expected: {out}");
    (w[1].parse().expect("rx"), w[2].parse().expect("tx"))
}

#[test]
fn interop_with_wireguard_go_ping_tcp_and_wg_show() {
    can_run_with(&["wg", "wireguard-go", "iperf3", "ping"]).unwrap_or_else(|e| panic!("{e}"));
    let mut t = Topology::new("wgi").expect("topology");
    let wgdev = bin_path("WGDEV_BIN", env!("CARGO_BIN_EXE_kawaii-wgdev"));
    // Our device in a, peer = wireguard-go in b (configured with `wg`).
    let GoPair {
        a,
        b,
        mut dev,
        go,
        public_a: pub_a,
        public_b: pub_b,
    } = GoPair::build(&mut t, &wgdev, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dev.public_key, pub_a);
    let (if_a, if_b) = (dev.ifname.clone(), go.ifname.clone());
    let ping = |h: &Host, args: &[&str]| {
        let mut full = vec!["ping", "-i", "0.2", "-W", "2"];
        full.extend_from_slice(args);
        h.run(&full).unwrap_or_else(|e| panic!("{e}"));
    };

    // Ping both ways (the first packet triggers the handshake).
    ping(&a, &["-c", "3", "10.8.0.2"]);
    ping(&b, &["-c", "3", "10.8.0.1"]);

    // TCP both ways: 8 MB A->B, then 8 MB B->A (-R).
    t.spawn(&b, "iperf3", &["iperf3", "-s", "-B", "10.8.0.2"])
        .expect("iperf3 -s");
    wait_for(
        Duration::from_secs(5),
        "TCP A->B through the tunnel",
        || a.run(&["iperf3", "-c", "10.8.0.2", "-n", "8M"]).ok(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    a.run(&["iperf3", "-c", "10.8.0.2", "-n", "8M", "-R"])
        .expect("iperf3 -R");

    // `wg show` on OUR interface (served by our UAPI socket).
    let show = a.run(&["wg", "show", &if_a]).expect("wg show");
    assert!(show.contains(&format!("peer: {pub_b}")), "{show}");
    assert!(show.contains("latest handshake"), "{show}");
    assert!(show.contains("endpoint: 192.0.2.2:51820"), "{show}");
    assert!(show.contains("allowed ips: 10.8.0.2/32"), "{show}");
    let (rx1, tx1) = transfer(&a, &if_a);
    // Each direction carried most of its 8 MiB (iperf3 ends a test on its control connection
    // and may drop what is still in flight, so not always all of it; seen: 7.0-7.8 MB).
    assert!(rx1 > 6_000_000 && tx1 > 6_000_000, "rx {rx1} tx {tx1}");
    ping(&a, &["-c", "2", "10.8.0.2"]);
    let (rx2, tx2) = transfer(&a, &if_a);
    assert!(
        rx2 > rx1 && tx2 > tx1,
        "counters did not grow: {rx1}->{rx2} {tx1}->{tx2}"
    );

    // The same numbers through the programmatic API.
    let stats = dev.stats().expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].public_key, pub_b);
    assert!(stats[0].rx >= rx2 && stats[0].tx >= tx2);
    assert!(
        stats[0].handshake_secs.is_some_and(|secs| secs < 60),
        "no recent handshake"
    );

    // wireguard-go sees us too.
    let go_show = go
        .wg(&["show", &if_b, "latest-handshakes"])
        .expect("wg show on wireguard-go");
    assert!(go_show.contains(&pub_a), "{go_show}");

    // Clean shutdown removes the interface and the UAPI socket.
    assert!(dev.stop(), "wgdev did not exit after stdin closed");
    let links = a.run(&["ip", "-o", "link", "show"]).expect("ip link");
    assert!(!links.contains(&if_a), "interface left behind: {links}");
    assert!(!std::path::Path::new(&format!("/run/wireguard/{if_a}.sock")).exists());
}
