//! Bulk TCP through our device (TUN offload on: TSO split when sending, GRO when receiving)
//! against wireguard-go: 200 MB each way over IPv4, 50 MB each way over IPv6, 100 MB both
//! ways at once, every byte compared by SHA-256 at both ends. Needs root (fails, never skips, without it).

use kawaii_testkit::wg::{GoPair, bin_path};
use kawaii_testkit::{Host, Topology, can_run_with};

/// Sends `n` seeded pseudo-random bytes, prints their SHA-256 (retries the connection for 10 s
/// while the receiver starts).
const SEND: &str = r#"
import hashlib, random, socket, sys, time
host, port, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
deadline = time.time() + 10
while True:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(60)
    try:
        s.connect((host, port))
        break
    except ConnectionRefusedError:
        s.close()
        if time.time() > deadline:
            raise
        time.sleep(0.05)
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
fn transfer(from: &Host, to: &Host, to_addr: &str, port: u16, bytes: u64, seed: u64) {
    let port = port.to_string();
    let (to, addr, p) = (to.clone(), to_addr.to_string(), port.clone());
    let recv = std::thread::spawn(move || to.run(&["python3", "-c", RECV, &addr, &p]));
    let sent = from
        .run(&[
            "python3",
            "-c",
            SEND,
            to_addr,
            &port,
            &bytes.to_string(),
            &seed.to_string(),
        ])
        .unwrap_or_else(|e| panic!("sender: {e}"));
    let got = recv
        .join()
        .expect("receiver thread")
        .unwrap_or_else(|e| panic!("receiver: {e}"));
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
fn counters(host: &Host, ifname: &str) -> (u64, u64, u64, u64) {
    let read = |name: &str| -> u64 {
        let path = format!("/sys/class/net/{ifname}/statistics/{name}");
        let out = host.run(&["cat", &path]).expect("cat");
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
    can_run_with(&["wg", "wireguard-go", "python3", "ping"]).unwrap_or_else(|e| panic!("{e}"));
    let mut t = Topology::new("wgb").expect("topology");
    let wgdev = bin_path("WGDEV_BIN", env!("CARGO_BIN_EXE_kawaii-wgdev"));
    let GoPair { a, b, dev, .. } =
        GoPair::build(&mut t, &wgdev, true).unwrap_or_else(|e| panic!("{e}"));
    let if_a = dev.ifname.clone();
    a.run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.8.0.2"])
        .expect("ping");
    a.run(&["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd00:8::2"])
        .expect("ping -6");

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

    let show = a.run(&["wg", "show", &if_a, "transfer"]).expect("wg show");
    let rx: u64 = show
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("wg show transfer: {show}"));
    assert!(rx > 250 * MB, "our rx counter {rx} below what we received");
}
