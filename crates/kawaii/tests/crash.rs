//! Crash consistency (issue 17), in the one-zone lab with a WireGuard peer and an IPsec
//! connection: kill -9 at random points of an apply, each restart over the killed instance's
//! leftovers must reach the kernel state a clean start reaches; a corrupt database stops the
//! daemon with a clear error before it touches the data plane; a full disk refuses the write
//! and leaves nothing half-written.

use kawaii_testkit::lab::{self, GatewayLab, LAB_TOML};
use kawaii_testkit::{Topology, keys, office, wait_for};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KAWAII: &str = env!("CARGO_BIN_EXE_kawaii");
const PSK: &str = "crash-test-psk-never-logged";
/// The rule the test changes back and forth: its ports tell which document is in force.
const RULE: &str = "/v1/ingress-rules/ingress-1";
const DOCS: [&str; 2] = ["22,80", "22,80,2222"];

struct Lab {
    topo: Topology,
    lab: GatewayLab,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        assert!(kawaii_testkit::can_run(), "end-to-end tests need root");
        let mut topo = Topology::new(tag).expect("topology");
        let key = topo.dir().join("wg.key");
        keys::write_secret(&key, &keys::keypair().expect("wg keypair").0, 0o600).expect("key");
        let opts = lab::LabOptions::new(&topo, KAWAII, &config(&key)).expect("config");
        let lab = lab::build(&mut topo, &opts).unwrap_or_else(|e| panic!("lab: {e}"));
        Lab { topo, lab }
    }

    fn api(&self) -> kawaii_testkit::api::Api {
        self.lab.api()
    }

    fn kill(&mut self) {
        self.topo.proc(self.lab.kawaii.proc).kill();
    }

    fn restart(&mut self) {
        self.lab.kawaii.restart(&mut self.topo).expect("restart");
    }

    fn log(&mut self) -> String {
        self.lab.kawaii.log(&mut self.topo)
    }

    /// Waits until the daemon answers, has applied its desired revision, and every driver is
    /// ok (charon loaded, WireGuard up).
    fn converge(&mut self, what: &str) {
        let api = self.api();
        let done = wait_for(Duration::from_secs(30), what, || {
            let s = api.get("/v1/status");
            let s: Value = serde_json::from_str(&s.body).ok()?;
            let drivers = s["drivers"].as_array()?;
            let ok = !drivers.is_empty() && drivers.iter().all(|d| d["ok"] == true);
            (ok && s["applied_revision"] == s["desired_revision"]).then_some(())
        });
        if let Err(e) = done {
            panic!("{e}\n{}", self.log());
        }
    }

    /// Which of [`DOCS`] the store holds.
    fn doc(&self) -> usize {
        let ports = self.api().get(RULE).json()["ports"].clone();
        DOCS.iter()
            .position(|d| ports == *d)
            .unwrap_or_else(|| panic!("unexpected ports {ports}"))
    }

    fn set_doc(&self, i: usize) -> kawaii_testkit::api::Reply {
        let rule = json!({"description": "web and ssh", "protocol": "tcp", "ports": DOCS[i]});
        self.api().put(RULE, &rule)
    }

    /// The kernel state kawaii owns, with what legitimately differs between two runs (packet
    /// counters) masked: the nft table, addresses, routes, WireGuard peers, charon's
    /// connections.
    fn kernel_state(&mut self) -> String {
        let gw = self.lab.gw.clone();
        let nft = gw
            .run(&["nft", "list", "table", "inet", "kawaii"])
            .expect("nft");
        let addrs = gw.run(&["ip", "-br", "addr"]).expect("addr");
        let routes = gw
            .run(&["ip", "route", "show", "table", "all"])
            .expect("routes");
        let wg = self
            .lab
            .kawaii
            .run_in_mounts(
                &mut self.topo,
                &[
                    "sh",
                    "-c",
                    "wg show all listen-port; wg show all allowed-ips",
                ],
            )
            // No daemon (killed), no device.
            .unwrap_or_default();
        let uri = format!(
            "unix://{}",
            self.lab.state.join("ipsec/charon.vici").display()
        );
        let conns = gw
            .run(&["swanctl", "--list-conns", "--uri", &uri])
            .unwrap_or_default();
        format!(
            "# nft\n{}\n# addresses\n{}\n# routes\n{}\n# wireguard\n{}\n# charon\n{}",
            canonical_nft(&nft),
            sorted(&without_kernel_link_locals(&addrs)),
            sorted(&without_kernel_link_locals(&routes)),
            sorted(&wg),
            conns.trim()
        )
    }
}

/// The lab's gateway with a WireGuard peer and the ACME Office IPsec connection.
fn config(key: &Path) -> String {
    let laptop = keys::keypair().expect("wg keypair").1;
    format!(
        "{LAB_TOML}{}{}",
        lab::wireguard_toml(&key.to_string_lossy(), &[("laptop", &laptop, "")]),
        office::ipsec_toml(PSK)
    )
}

/// The nft listing with packet and byte counts masked and each set's elements in one sorted
/// line (a set has no order; nft lists them in insertion order).
fn canonical_nft(nft: &str) -> String {
    let mut out = String::new();
    // A set's `elements = { ... }` being gathered: the text before the brace, the items.
    let mut open: Option<(String, Vec<String>)> = None;
    for line in mask_counters(nft).lines() {
        let (head, rest) = match (&mut open, line.find("elements = { ")) {
            (Some(_), _) => (None, line),
            (None, Some(at)) => {
                let (head, rest) = line.split_at(at + "elements = ".len());
                (Some(head.to_string()), rest.trim_start_matches('{'))
            }
            (None, None) => {
                out += line;
                out.push('\n');
                continue;
            }
        };
        let (_, items) = open.get_or_insert_with(|| (head.unwrap_or_default(), Vec::new()));
        let item = rest
            .trim()
            .trim_end_matches('}')
            .trim()
            .trim_end_matches(',');
        items.push(item.trim().to_string());
        if rest.trim_end().ends_with('}')
            && let Some((head, mut items)) = open.take()
        {
            items.sort();
            out += &format!("{head}{{ {} }}\n", items.join(", "));
        }
    }
    out
}

fn mask_counters(nft: &str) -> String {
    let mut out = String::new();
    for line in nft.lines() {
        let mut words: Vec<&str> = line.split(' ').collect();
        for i in 1..words.len() {
            if matches!(words[i - 1], "packets" | "bytes") {
                words[i] = "_";
            }
        }
        out += &words.join(" ");
        out.push('\n');
    }
    out
}

/// The text without the IPv6 link-local addresses the kernel gives every interface it creates
/// (EUI-64 or random: four groups after `fe80::`), and without the routes that name one. Kawaii's
/// own link-local VIPs (`fe80::1`) stay.
fn without_kernel_link_locals(text: &str) -> String {
    let kernel = |w: &str| {
        w.strip_prefix("fe80::")
            .map(|rest| rest.split('/').next().unwrap_or("").split(':').count() == 4)
            .unwrap_or(false)
    };
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // The kernel's own IPv6 link routes (`anycast fe80::`, `fe80::/64`, `multicast ff00::/8`)
        // come and go with the interfaces' link-local addresses.
        if words
            .first()
            .is_some_and(|w| matches!(*w, "anycast" | "multicast" | "fe80::/64"))
            && !line.contains("fe80::1 ")
        {
            continue;
        }
        // A route to or from one of them goes; an interface line keeps its other addresses.
        if words.iter().any(|w| kernel(w))
            && !line.contains("UP")
            && !line.contains("UNKNOWN")
            && !line.contains("DOWN")
        {
            continue;
        }
        let kept: Vec<&str> = words.into_iter().filter(|w| !kernel(w)).collect();
        out += &kept.join(" ");
        out.push('\n');
    }
    out
}

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// A small xorshift generator: the seed is printed so a failing run can be replayed
/// (`KAWAII_CRASH_SEED`).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("KAWAII_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        eprintln!("KAWAII_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Acceptance: kill -9 at random points of an apply, 50 runs. Half the kills land in the
/// start-up apply (anywhere in its first 1.5 s), half in the apply of an API write (0 to
/// 400 ms after it was acknowledged). After each restart the kernel state equals the clean
/// start's for the document the store holds: the restart cleans up or reuses whatever the
/// killed instance left (VIPs, routes, the table, charon's TUN routes).
#[test]
fn kill_9_anywhere_in_an_apply_then_restart_equals_a_clean_start() {
    let mut l = Lab::new("crash");
    l.converge("the clean start to converge");
    let mut reference = [String::new(), String::new()];
    reference[0] = l.kernel_state();
    let r = l.set_doc(1);
    assert_eq!(r.status, 200, "{}", r.body);
    l.converge("the second document to apply");
    reference[1] = l.kernel_state();
    assert_ne!(
        reference[0], reference[1],
        "the two documents differ in the kernel"
    );

    let mut rng = Rng::new();
    let runs = 50;
    let started = Instant::now();
    for run in 0..runs {
        let in_startup = rng.below(2) == 0;
        if in_startup {
            l.kill();
            l.restart();
            std::thread::sleep(Duration::from_millis(rng.below(1500)));
        } else {
            let next = 1 - l.doc();
            let r = l.set_doc(next);
            assert_eq!(r.status, 200, "{}", r.body);
            std::thread::sleep(Duration::from_millis(rng.below(400)));
        }
        l.kill();
        l.restart();
        l.converge(&format!("run {run}: the restart to converge"));
        let doc = l.doc();
        let now = l.kernel_state();
        if now != reference[doc] {
            panic!(
                "run {run} ({}): the kernel state after the restart differs from a clean start's\n--- clean\n{}\n--- after the crash\n{now}\n--- log\n{}",
                if in_startup {
                    "killed in the start-up apply"
                } else {
                    "killed in an API write's apply"
                },
                reference[doc],
                l.log()
            );
        }
    }
    eprintln!("{runs} kill -9 runs in {:?}", started.elapsed());
}

/// A corrupt database: the daemon refuses to start, naming the file, and the data plane the
/// previous instance left stays exactly as it was.
#[test]
fn a_corrupt_database_stops_the_start_and_leaves_the_data_plane_alone() {
    let mut l = Lab::new("crashdb");
    l.converge("the start to converge");
    // What the killed instance leaves: the table, the VIPs, the routes.
    l.kill();
    let before = l.kernel_state();
    let db = l.lab.state.join("kawaii.db");
    for side in ["kawaii.db-wal", "kawaii.db-shm"] {
        let _ = std::fs::remove_file(l.lab.state.join(side));
    }
    std::fs::write(&db, vec![0x5a_u8; 64 * 1024]).expect("corrupt the database");
    l.restart();
    let proc = l.lab.kawaii.proc;
    let exited = l.topo.proc(proc).wait_exit(Duration::from_secs(10));
    let log = l.log();
    assert!(exited, "kawaii started over a corrupt database:\n{log}");
    assert!(
        log.contains(&db.display().to_string()),
        "the error names the database file:\n{log}"
    );
    assert_eq!(l.kernel_state(), before, "the data plane changed:\n{log}");
}

/// The state directory on a tiny tmpfs: a write that does not fit answers 507 (or 503) and
/// leaves the stored document as it was; once there is room, writes work again and a restart
/// comes up on the last acknowledged document.
#[test]
fn a_full_disk_refuses_the_write_and_keeps_the_last_document() {
    let mut l = Lab::new("crashfull");
    l.converge("the start to converge");
    // Move the state onto a 4 MiB tmpfs (unmounted on drop, also when the test fails).
    l.kill();
    let small = Tmpfs::mount(&l.topo.dir().join("small-state"), "4m");
    copy_dir(&l.lab.state, &small.0);
    let opts = kawaii_testkit::serve::ServeOptions::new(KAWAII);
    l.lab.kawaii = kawaii_testkit::serve::Serve::start_with(
        &mut l.topo,
        &l.lab.gw.clone(),
        &l.lab.kawaii.config.clone(),
        &small.0,
        &opts,
    )
    .expect("serve");
    l.lab.state = small.0.clone();
    l.converge("the daemon on the small disk");
    let rev = l.api().get("/v1/gateway").etag().expect("etag");
    // Fill it.
    let filler = small.0.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let r = l.set_doc(1);
    assert!(
        r.status == 507 || r.status == 503,
        "a write on a full disk answered {}: {}",
        r.status,
        r.body
    );
    assert_eq!(
        l.api().get("/v1/gateway").etag(),
        Some(rev),
        "revision moved"
    );
    assert_eq!(l.doc(), 0, "the refused write is not in force");
    // Room again: the write works, and survives a kill -9.
    std::fs::remove_file(&filler).expect("free the disk");
    let r = l.set_doc(1);
    assert_eq!(r.status, 200, "{}", r.body);
    l.kill();
    l.restart();
    l.converge("the restart after the full disk");
    assert_eq!(l.doc(), 1);
    l.kill();
}

/// A tmpfs mounted for the test, unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "kawaii-test",
            ])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .expect("cp");
    assert!(
        out.status.success(),
        "cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
