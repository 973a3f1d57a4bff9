//! Live peer changes: a server device with two client peers, both pinging every 10 ms. The
//! server converges to a list without client 1 (and with a new peer 3): client 1 is cut off
//! within 1 s, client 2 loses nothing and keeps its session. Needs root (fails, never skips, without it).

use std::time::Duration;

use kawaii_testkit::keys::keypair;
use kawaii_testkit::ping::{self, reply_times, unix_now};
use kawaii_testkit::wg::{WgDev, bin_path};
use kawaii_testkit::{Topology, can_run_with, wait_for};

const PINGS: u32 = 400; // 4 s at 10 ms

fn client_conf(name: &str, key: &str, server_pub: &str, endpoint: &str) -> String {
    format!(
        "[Interface]\nName = {name}\nPrivateKey = {key}\n\
         [Peer]\nPublicKey = {server_pub}\nAllowedIPs = 10.8.0.0/24\nEndpoint = {endpoint}\n"
    )
}

fn server_conf(name: &str, key: &str, peers: &[(&str, &str)]) -> String {
    let mut conf = format!("[Interface]\nName = {name}\nListenPort = 51820\nPrivateKey = {key}\n");
    for (public, ip) in peers {
        conf.push_str(&format!(
            "[Peer]\nPublicKey = {public}\nAllowedIPs = {ip}\n"
        ));
    }
    conf
}

#[test]
fn removing_a_peer_cuts_it_within_1s_and_spares_the_other() {
    can_run_with(&["wg", "ping"]).unwrap_or_else(|e| panic!("{e}"));
    let mut t = Topology::new("wgl").expect("topology");
    let (s, c1, c2) = (
        t.host("s").expect("s"),
        t.host("c1").expect("c1"),
        t.host("c2").expect("c2"),
    );
    for (c, s_if, c_if, s_ip, c_ip) in [
        (&c1, "s1", "e1", "192.0.2.1/30", "192.0.2.2/30"),
        (&c2, "s2", "e2", "192.0.2.5/30", "192.0.2.6/30"),
    ] {
        t.link(&s, s_if, c, c_if).expect("link");
        s.addr(s_if, s_ip).expect("addr");
        c.addr(c_if, c_ip).expect("addr");
    }

    let keys = || keypair().expect("wg genkey");
    let ((key_s, pub_s), (key_1, pub_1), (key_2, pub_2), (_, pub_3)) =
        (keys(), keys(), keys(), keys());
    let pid = std::process::id();
    let (if_s, if_1, if_2) = (
        format!("kw{pid}s"),
        format!("kw{pid}x"),
        format!("kw{pid}y"),
    );
    let wgdev = bin_path("WGDEV_BIN", env!("CARGO_BIN_EXE_kawaii-wgdev"));
    let start = |host, ifname: &str, conf: &str| {
        WgDev::start(&t, host, &wgdev, ifname, conf).unwrap_or_else(|e| panic!("{e}"))
    };

    let mut server = start(
        &s,
        &if_s,
        &server_conf(
            &if_s,
            &key_s,
            &[(&pub_1, "10.8.0.2/32"), (&pub_2, "10.8.0.3/32")],
        ),
    );
    s.addr(&if_s, "10.8.0.1/24").expect("addr");
    let _dev1 = start(
        &c1,
        &if_1,
        &client_conf(&if_1, &key_1, &pub_s, "192.0.2.1:51820"),
    );
    c1.addr(&if_1, "10.8.0.2/24").expect("addr");
    let _dev2 = start(
        &c2,
        &if_2,
        &client_conf(&if_2, &key_2, &pub_s, "192.0.2.5:51820"),
    );
    c2.addr(&if_2, "10.8.0.3/24").expect("addr");

    for c in [&c1, &c2] {
        wait_for(Duration::from_secs(5), "warm-up ping", || {
            c.pings("10.8.0.1").then_some(())
        })
        .unwrap_or_else(|e| panic!("{e} from {}", c.name));
    }
    let before = server.stats().expect("stats");
    let hs_before = before
        .iter()
        .find(|p| p.public_key == pub_2)
        .and_then(|p| p.handshake_secs)
        .expect("client 2 has a handshake");

    let p1 = ping::start(&mut t, &c1, "ping-1", "10.8.0.1", "0.01", Some(PINGS)).expect("ping");
    let p2 = ping::start(&mut t, &c2, "ping-2", "10.8.0.1", "0.01", Some(PINGS)).expect("ping");
    std::thread::sleep(Duration::from_secs(1));

    let t_remove = unix_now();
    server
        .reload(&server_conf(
            &if_s,
            &key_s,
            &[(&pub_2, "10.8.0.3/32"), (&pub_3, "10.8.0.4/32")],
        ))
        .expect("reload");
    let t_ok = unix_now();

    let mut finish = |p: usize| {
        let p = t.proc(p);
        let exited = p.wait_exit(Duration::from_secs(10));
        (exited && p.succeeded(), p.output())
    };
    let (_, out1) = finish(p1);
    let (ok2, out2) = finish(p2);

    // Client 1: worked until the removal, then nothing more than 1 s after it.
    let replies1 = reply_times(&out1);
    let last1 = replies1.iter().copied().fold(f64::MIN, f64::max);
    assert!(
        last1 > t_remove - 0.5,
        "client 1 was not working before the removal: last reply {last1}, removal {t_remove}"
    );
    assert!(
        last1 < t_remove + 1.0,
        "client 1 still answered {:.3}s after the removal",
        last1 - t_remove
    );
    eprintln!(
        "client 1: {} replies, last {:.3}s after the removal request (apply took {:.3}s)",
        replies1.len(),
        last1 - t_remove,
        t_ok - t_remove
    );

    // Client 2: not a single lost ping.
    assert!(ok2, "client 2 ping failed:\n{out2}");
    assert!(
        out2.contains(&format!("{PINGS} packets transmitted, {PINGS} received")),
        "client 2 lost pings:\n{}",
        out2.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );

    // Server: exactly peers 2 and 3 now; peer 2 kept its session (no new handshake).
    let after = server.stats().expect("stats");
    let mut keys: Vec<&str> = after.iter().map(|p| p.public_key.as_str()).collect();
    keys.sort_unstable();
    let mut want = vec![pub_2.as_str(), pub_3.as_str()];
    want.sort_unstable();
    assert_eq!(keys, want);
    let hs_after = after
        .iter()
        .find(|p| p.public_key == pub_2)
        .and_then(|p| p.handshake_secs)
        .expect("client 2 still has a handshake");
    assert!(
        hs_after >= hs_before + 3,
        "client 2 re-handshaked: {hs_before}s ago before, {hs_after}s ago after"
    );
    let show = s.run(&["wg", "show", &if_s, "peers"]).expect("wg show");
    assert!(
        !show.contains(&pub_1),
        "removed peer still in wg show: {show}"
    );
}
