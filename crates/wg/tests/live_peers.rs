//! Live peer changes: a server device with two client peers, both pinging every 10 ms. The
//! server converges to a list without client 1 (and with a new peer 3): client 1 is cut off
//! within 1 s, client 2 loses nothing and keeps its session. Needs root (fails, never skips, without it).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Netns, Proc, WgDev, can_run, keypair, uniq, wait_until};

const PINGS: &str = "400"; // 4 s at 10 ms

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Timestamps (`ping -D`) of the echo replies in ping's output.
fn reply_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

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
    assert!(
        can_run(&["ip", "wg", "ping"]),
        "this end-to-end test needs root and the tools it names"
    );
    let s = Netns::new("s");
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    s.veth_to(&c1, ("s1", "192.0.2.1/30"), ("e1", "192.0.2.2/30"));
    s.veth_to(&c2, ("s2", "192.0.2.5/30"), ("e2", "192.0.2.6/30"));

    let (key_s, pub_s) = keypair();
    let (key_1, pub_1) = keypair();
    let (key_2, pub_2) = keypair();
    let (_, pub_3) = keypair();
    let (if_s, if_1, if_2) = (
        format!("kw{}", uniq("s")),
        format!("kw{}", uniq("x")),
        format!("kw{}", uniq("y")),
    );

    let mut server = WgDev::start(
        &s,
        &if_s,
        &server_conf(
            &if_s,
            &key_s,
            &[(&pub_1, "10.8.0.2/32"), (&pub_2, "10.8.0.3/32")],
        ),
    );
    s.ip(&["addr", "add", "10.8.0.1/24", "dev", &if_s]);
    let _dev1 = WgDev::start(
        &c1,
        &if_1,
        &client_conf(&if_1, &key_1, &pub_s, "192.0.2.1:51820"),
    );
    c1.ip(&["addr", "add", "10.8.0.2/24", "dev", &if_1]);
    let _dev2 = WgDev::start(
        &c2,
        &if_2,
        &client_conf(&if_2, &key_2, &pub_s, "192.0.2.5:51820"),
    );
    c2.ip(&["addr", "add", "10.8.0.3/24", "dev", &if_2]);

    for c in [&c1, &c2] {
        assert!(
            wait_until(Duration::from_secs(5), || {
                c.command(&["ping", "-c", "1", "-W", "1", "10.8.0.1"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            }),
            "warm-up ping from {} failed",
            c.name
        );
    }
    let before = server.stats();
    let hs_before = before
        .iter()
        .find(|p| p.0 == pub_2)
        .and_then(|p| p.3)
        .expect("client 2 has a handshake");

    let ping = |c: &Netns| {
        Proc::spawn(c.command(&[
            "ping", "-D", "-i", "0.01", "-c", PINGS, "-W", "1", "10.8.0.1",
        ]))
    };
    let mut p1 = ping(&c1);
    let mut p2 = ping(&c2);
    std::thread::sleep(Duration::from_secs(1));

    let t_remove = unix_now();
    server.reload(&server_conf(
        &if_s,
        &key_s,
        &[(&pub_2, "10.8.0.3/32"), (&pub_3, "10.8.0.4/32")],
    ));
    let t_ok = unix_now();

    let (_, out1) = p1.finish(Duration::from_secs(10));
    let (ok2, out2) = p2.finish(Duration::from_secs(10));

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
    let after = server.stats();
    let mut keys: Vec<&str> = after.iter().map(|p| p.0.as_str()).collect();
    keys.sort_unstable();
    let mut want = vec![pub_2.as_str(), pub_3.as_str()];
    want.sort_unstable();
    assert_eq!(keys, want);
    let hs_after = after
        .iter()
        .find(|p| p.0 == pub_2)
        .and_then(|p| p.3)
        .expect("client 2 still has a handshake");
    assert!(
        hs_after >= hs_before + 3,
        "client 2 re-handshaked: {hs_before}s ago before, {hs_after}s ago after"
    );
    let show = s.exec(&["wg", "show", &if_s, "peers"]);
    assert!(
        !show.contains(&pub_1),
        "removed peer still in wg show: {show}"
    );
}
