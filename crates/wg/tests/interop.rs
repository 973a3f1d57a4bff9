//! Interop with wireguard-go: our device in namespace A, wireguard-go (configured with `wg`)
//! in namespace B, joined by a veth pair. Needs root (fails, never skips, without it).

mod common;

use std::time::Duration;

use common::{Netns, Proc, WgDev, can_run, keypair, uniq, wait_until};

fn transfer(ns: &Netns, ifname: &str) -> (u64, u64) {
    let out = ns.exec(&["wg", "show", ifname, "transfer"]);
    let w: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(w.len(), 3, "one peer expected: {out}");
    (w[1].parse().expect("rx"), w[2].parse().expect("tx"))
}

#[test]
fn interop_with_wireguard_go_ping_tcp_and_wg_show() {
    assert!(
        can_run(&["ip", "wg", "wireguard-go", "iperf3", "ping"]),
        "this end-to-end test needs root and the tools it names"
    );
    let a = Netns::new("a");
    let b = Netns::new("b");
    a.veth_to(&b, ("va", "192.0.2.1/24"), ("vb", "192.0.2.2/24"));

    let (key_a, pub_a) = keypair();
    let (key_b, pub_b) = keypair();
    let if_a = format!("kw{}", uniq("a"));
    let if_b = format!("kg{}", uniq("b"));

    // Our device, peer = wireguard-go.
    let mut dev = WgDev::start(
        &a,
        &if_a,
        &format!(
            "[Interface]\nName = {if_a}\nListenPort = 51820\nPrivateKey = {key_a}\n\
             [Peer]\nPublicKey = {pub_b}\nAllowedIPs = 10.8.0.2/32\nEndpoint = 192.0.2.2:51820\n"
        ),
    );
    assert_eq!(dev.public_key, pub_a);
    a.ip(&["addr", "add", "10.8.0.1/24", "dev", &if_a]);

    // wireguard-go in the foreground as our child; its UAPI socket is named after if_b.
    let mut go = Proc::spawn(b.command(&["wireguard-go", "-f", &if_b]));
    let go_sock = format!("/run/wireguard/{if_b}.sock");
    go.leftovers.push(go_sock.clone().into());
    assert!(
        wait_until(Duration::from_secs(5), || std::path::Path::new(&go_sock)
            .exists()),
        "wireguard-go did not create its UAPI socket"
    );
    let key_file = std::env::temp_dir().join(format!("{}.key", b.name));
    std::fs::write(&key_file, format!("{key_b}\n")).expect("writing key file");
    let key_path = key_file.to_str().expect("utf-8 path").to_owned();
    let set = std::panic::catch_unwind(|| {
        b.exec(&[
            "wg",
            "set",
            &if_b,
            "listen-port",
            "51820",
            "private-key",
            &key_path,
            "peer",
            &pub_a,
            "allowed-ips",
            "10.8.0.1/32",
            "endpoint",
            "192.0.2.1:51820",
        ])
    });
    let _ = std::fs::remove_file(&key_file);
    set.expect("wg set on wireguard-go");
    b.ip(&["addr", "add", "10.8.0.2/24", "dev", &if_b]);
    b.ip(&["link", "set", &if_b, "up"]);

    // Ping both ways (the first packet triggers the handshake).
    a.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.8.0.2"]);
    b.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.8.0.1"]);

    // TCP both ways: 8 MB A->B, then 8 MB B->A (-R).
    let _server = Proc::spawn(b.command(&["iperf3", "-s", "-B", "10.8.0.2"]));
    assert!(
        wait_until(Duration::from_secs(5), || {
            a.command(&["iperf3", "-c", "10.8.0.2", "-n", "8M"])
                .output()
                .is_ok_and(|o| o.status.success())
        }),
        "TCP A->B through the tunnel failed"
    );
    a.exec(&["iperf3", "-c", "10.8.0.2", "-n", "8M", "-R"]);

    // `wg show` on OUR interface (served by our UAPI socket).
    let show = a.exec(&["wg", "show", &if_a]);
    assert!(show.contains(&format!("peer: {pub_b}")), "{show}");
    assert!(show.contains("latest handshake"), "{show}");
    assert!(show.contains("endpoint: 192.0.2.2:51820"), "{show}");
    assert!(show.contains("allowed ips: 10.8.0.2/32"), "{show}");
    let (rx1, tx1) = transfer(&a, &if_a);
    // Each direction carried most of its 8 MiB (iperf3 ends a test on its control connection
    // and may drop what is still in flight, so not always all of it; seen: 7.0-7.8 MB).
    assert!(rx1 > 6_000_000 && tx1 > 6_000_000, "rx {rx1} tx {tx1}");
    a.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.8.0.2"]);
    let (rx2, tx2) = transfer(&a, &if_a);
    assert!(
        rx2 > rx1 && tx2 > tx1,
        "counters did not grow: {rx1}->{rx2} {tx1}->{tx2}"
    );

    // The same numbers through the programmatic API.
    let stats = dev.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].0, pub_b);
    assert!(stats[0].1 >= rx2 && stats[0].2 >= tx2);
    assert!(
        stats[0].3.is_some_and(|secs| secs < 60),
        "no recent handshake"
    );

    // wireguard-go sees us too.
    let go_show = b.exec(&["wg", "show", &if_b, "latest-handshakes"]);
    assert!(go_show.contains(&pub_a), "{go_show}");

    // Clean shutdown removes the interface and the UAPI socket.
    assert!(dev.stop(), "wgdev did not exit after stdin closed");
    let links = a.ip(&["-o", "link", "show"]);
    assert!(!links.contains(&if_a), "interface left behind: {links}");
    assert!(!std::path::Path::new(&format!("/run/wireguard/{if_a}.sock")).exists());
}
