//! Bulk TCP through our device (TUN offload on: TSO split when sending, GRO when receiving)
//! against wireguard-go: 200 MB each way over IPv4, 50 MB each way over IPv6, 100 MB both
//! ways at once, every byte compared by SHA-256 at both ends. Needs root (fails, never skips, without it).

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{Netns, Proc, WgDev, can_run, keypair, uniq, wait_until};

/// Sends `n` seeded pseudo-random bytes, prints their SHA-256.
const SEND: &str = r#"
import hashlib, random, socket, sys
host, port, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.settimeout(60)
s.connect((host, port))
r, h, left = random.Random(seed), hashlib.sha256(), n
while left:
    c = r.randbytes(min(left, 1 << 20))
    h.update(c)
    s.sendall(c)
    left -= len(c)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(n, h.hexdigest())
"#;

/// Accepts one connection, prints the byte count and SHA-256 of what arrived.
const RECV: &str = r#"
import hashlib, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(1)
print("listening", flush=True)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(60)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
c.close()
print(n, h.hexdigest())
"#;

/// Moves `bytes` from `from` to `to_addr` (an address in `to`) and checks both digests.
fn transfer(from: &Netns, to: &Netns, to_addr: &str, port: u16, bytes: u64, seed: u64) {
    let mut cmd = to.command(&["python3", "-c", RECV, to_addr, &port.to_string()]);
    cmd.stdout(Stdio::piped());
    let mut recv = Proc::spawn(cmd);
    let mut out = BufReader::new(recv.child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("receiver output");
    assert_eq!(line.trim(), "listening", "receiver did not start");

    let sent = from.exec(&[
        "python3",
        "-c",
        SEND,
        to_addr,
        &port.to_string(),
        &bytes.to_string(),
        &seed.to_string(),
    ]);
    assert!(recv.wait_exit(Duration::from_secs(60)), "receiver hung");
    let mut got = String::new();
    std::io::Read::read_to_string(&mut out, &mut got).expect("receiver output");
    let sent: Vec<&str> = sent.split_whitespace().collect();
    let got: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(sent.len(), 2, "sender printed {sent:?}");
    assert_eq!(sent[0], bytes.to_string());
    assert_eq!(
        got, sent,
        "bytes/SHA-256 received differ from sent ({to_addr})"
    );
}

/// (rx_bytes, rx_packets, tx_bytes, tx_packets) of `ifname` in `ns`.
fn counters(ns: &Netns, ifname: &str) -> (u64, u64, u64, u64) {
    let read = |name: &str| -> u64 {
        let path = format!("/sys/class/net/{ifname}/statistics/{name}");
        let out = ns.exec(&["cat", &path]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{path}: {out:?}"))
    };
    (
        read("rx_bytes"),
        read("rx_packets"),
        read("tx_bytes"),
        read("tx_packets"),
    )
}

#[test]
fn bulk_tcp_both_ways_ipv4_and_ipv6_against_wireguard_go_is_byte_exact() {
    assert!(
        can_run(&["ip", "wg", "wireguard-go", "python3", "ping"]),
        "this end-to-end test needs root and the tools it names"
    );
    let a = Netns::new("a");
    let b = Netns::new("b");
    a.veth_to(&b, ("va", "192.0.2.1/24"), ("vb", "192.0.2.2/24"));

    let (key_a, _) = keypair();
    let (key_b, pub_b) = keypair();
    let if_a = format!("kw{}", uniq("a"));
    let if_b = format!("kg{}", uniq("b"));

    let dev = WgDev::start(
        &a,
        &if_a,
        &format!(
            "[Interface]\nName = {if_a}\nListenPort = 51820\nPrivateKey = {key_a}\n\
             [Peer]\nPublicKey = {pub_b}\nAllowedIPs = 10.8.0.2/32, fd00:8::2/128\n\
             Endpoint = 192.0.2.2:51820\n"
        ),
    );
    a.ip(&["addr", "add", "10.8.0.1/24", "dev", &if_a]);
    a.ip(&["addr", "add", "fd00:8::1/64", "dev", &if_a, "nodad"]);

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
            &dev.public_key,
            "allowed-ips",
            "10.8.0.1/32,fd00:8::1/128",
            "endpoint",
            "192.0.2.1:51820",
        ])
    });
    let _ = std::fs::remove_file(&key_file);
    set.expect("wg set on wireguard-go");
    b.ip(&["addr", "add", "10.8.0.2/24", "dev", &if_b]);
    b.ip(&["addr", "add", "fd00:8::2/64", "dev", &if_b, "nodad"]);
    b.ip(&["link", "set", &if_b, "up"]);
    a.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.8.0.2"]);
    a.exec(&["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd00:8::2"]);

    const MB: u64 = 1 << 20;
    // Ours sends: TSO super-packets split into segments. The kernel hands our TUN device
    // (its "tx") packets far larger than the 1420 MTU, or offload is not engaged.
    let before = counters(&a, &if_a);
    transfer(&a, &b, "10.8.0.2", 5001, 200 * MB, 1);
    let after = counters(&a, &if_a);
    let avg_tx = (after.2 - before.2) / (after.3 - before.3);
    assert!(avg_tx > 4000, "TUN reads average {avg_tx} bytes: no TSO");
    // Ours receives: segments coalesced into GRO writes (the TUN device's "rx").
    transfer(&b, &a, "10.8.0.1", 5002, 200 * MB, 2);
    let last = counters(&a, &if_a);
    let avg_rx = (last.0 - after.0) / (last.1 - after.1);
    assert!(avg_rx > 2000, "TUN writes average {avg_rx} bytes: no GRO");
    transfer(&a, &b, "fd00:8::2", 5003, 50 * MB, 3);
    transfer(&b, &a, "fd00:8::1", 5004, 50 * MB, 4);
    // Both ways at once: data and the other direction's ACKs interleave in every batch.
    std::thread::scope(|s| {
        s.spawn(|| transfer(&a, &b, "10.8.0.2", 5007, 100 * MB, 7));
        s.spawn(|| transfer(&b, &a, "10.8.0.1", 5008, 100 * MB, 8));
    });
    // Odd sizes end with short segments.
    transfer(&a, &b, "10.8.0.2", 5005, 1_000_003, 5);
    transfer(&b, &a, "fd00:8::1", 5006, 999_999, 6);

    let show = a.exec(&["wg", "show", &if_a, "transfer"]);
    let rx: u64 = show
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("wg show transfer: {show}"));
    assert!(rx > 250 * MB, "our rx counter {rx} below what we received");
}
