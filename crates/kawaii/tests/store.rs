//! The shared store end to end (issue 15): kawaii instances in their own namespaces on a
//! management switch with a real etcd (its own namespace, data on tmpfs, stopped by pid), and
//! the embedded store's file modes and API round trips.

use kawaii_testkit::api::{Api, Reply};
use kawaii_testkit::serve::{Serve, ServeOptions};
use kawaii_testkit::{Host, Topology, etcd, wait_for};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ETCD_IP: &str = "10.254.0.1";
const ADMIN: &str = "admin-token-for-tests";
const PSK: &str = "psk-that-must-never-leak-42";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kawaii")
}

/// The two-zone lab sharing its desired state through the lab's etcd.
fn etcd_lab() -> kawaii_testkit::lab::HaLabOptions {
    kawaii_testkit::lab::HaLabOptions::new(bin())
        .log("info")
        .etcd()
}

fn sha(token: &str) -> String {
    hex::encode(kawaii_api::hash_token(token))
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// One request to the API inside `host` (testkit's client, as `token`).
fn curl(
    host: &Host,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[&str],
) -> Reply {
    Api::new(host, token).request(method, path, body, headers)
}

/// The API test's gateway (`testdata/api-gateway.toml`: an IPsec connection carrying [`PSK`]),
/// with only the admin token.
fn base_config() -> String {
    include_str!("testdata/api-gateway.toml")
        .replace("@admin@", &sha(ADMIN))
        .replace("@operator@", &sha("operator-token-unused"))
        .replace("@viewer@", &sha("viewer-token-unused"))
        .replace("@psk@", PSK)
}

fn light_config(name: &str) -> String {
    format!(
        r#"{}
[api]
listen = "127.0.0.1:7780"
tokens = [{{ name = "ops", role = "admin", sha256 = "{}" }}]

[[ingress_rules]]
ports = "22"
"#,
        kawaii_testkit::configs::one_zone(name, ""),
        sha(ADMIN)
    )
}

struct Gw {
    host: Host,
    config: PathBuf,
    state: PathBuf,
    url: String,
    /// More `kawaii serve` arguments.
    extra: Vec<String>,
    proc: Option<usize>,
}

/// etcd and kawaii instances on one management switch. Fields drop in order: the etcd data
/// directories go after the topology has killed the processes.
struct Shared {
    topo: Topology,
    etcd: etcd::Etcd,
    gws: Vec<Gw>,
}

impl Shared {
    /// One instance per `(gateway name, key prefix)`, not started yet; a one-member etcd.
    fn new(tag: &str, gateways: &[(&str, &str)]) -> Shared {
        Shared::with_members(tag, gateways, &[ETCD_IP])
    }

    /// Two instances of gateway `acme` sharing the prefix `kawaii/acme`, both started.
    fn pair(tag: &str) -> Shared {
        Shared::started(tag, &[("acme", "kawaii/acme"), ("acme", "kawaii/acme")])
    }

    /// [`Shared::new`] with every instance started.
    fn started(tag: &str, gateways: &[(&str, &str)]) -> Shared {
        let mut s = Shared::new(tag, gateways);
        for i in 0..s.gws.len() {
            s.start(i);
        }
        s
    }

    fn with_members(tag: &str, gateways: &[(&str, &str)], members: &[&str]) -> Shared {
        assert!(
            kawaii_testkit::can_run(),
            "end-to-end tests need root and iproute2"
        );
        let mut topo = Topology::new(tag).expect("topology");
        let mgmt = topo.switch("mgmt").expect("switch");
        let etcd = etcd::start(&mut topo, &mgmt, members).unwrap_or_else(|e| panic!("{e}"));
        let mut gws = Vec::new();
        for (i, (name, prefix)) in gateways.iter().enumerate() {
            let host = topo.host(&format!("gw{i}")).expect("host");
            topo.plug(&host, "mgmt0", &mgmt).expect("plug");
            host.run(&[
                "ip",
                "addr",
                "add",
                &format!("10.254.0.{}/24", 11 + i),
                "dev",
                "mgmt0",
            ])
            .expect("addr");
            // The zone's interfaces (each instance's data plane lives in its own namespace).
            for ifname in ["wan0", "lan0"] {
                let peer = format!("{ifname}p");
                host.run(&[
                    "ip", "link", "add", ifname, "type", "veth", "peer", "name", &peer,
                ])
                .expect("veth");
                for i in [ifname, &peer] {
                    host.run(&["ip", "link", "set", i, "up"]).expect("up");
                }
            }
            let config = topo.dir().join(format!("gw{i}.toml"));
            std::fs::write(&config, light_config(name)).expect("config");
            gws.push(Gw {
                host,
                config,
                state: topo.dir().join(format!("state-{i}")),
                url: etcd.url(prefix),
                extra: Vec::new(),
                proc: None,
            });
        }
        Shared { topo, etcd, gws }
    }

    /// Starts instance `i` and waits until its API answers.
    fn start(&mut self, i: usize) {
        let g = &self.gws[i];
        let mut args = vec![
            "env",
            "KAWAII_LOG=info,kawaii_store=debug",
            bin(),
            "serve",
            "--config",
            path(&g.config),
            "--state",
            path(&g.state),
            "--store",
            &g.url,
        ];
        args.extend(g.extra.iter().map(String::as_str));
        let host = g.host.clone();
        let name = format!("kawaii-{i}-{}", self.topo.pids().len());
        let p = self.topo.spawn(&host, &name, &args).expect("spawn");
        self.gws[i].proc = Some(p);
        let r = wait_for(Duration::from_secs(15), "kawaii API", || {
            (curl(&host, "GET", "/v1/status", Some(ADMIN), None, &[]).status == 200).then_some(())
        });
        if let Err(e) = r {
            panic!("{e}\n{}", self.topo.proc(p).output());
        }
    }

    fn kill9(&mut self, i: usize) {
        if let Some(p) = self.gws[i].proc.take() {
            self.topo.proc(p).kill();
        }
    }

    fn log(&mut self, i: usize) -> String {
        self.gws[i]
            .proc
            .map(|p| self.topo.proc(p).output())
            .unwrap_or_default()
    }

    fn call(&self, i: usize, method: &str, path: &str, body: Option<&str>, hdr: &[&str]) -> Reply {
        curl(&self.gws[i].host, method, path, Some(ADMIN), body, hdr)
    }

    fn revision(&self, i: usize) -> u64 {
        self.call(i, "GET", "/v1/gateway", None, &[]).json()["revision"]
            .as_u64()
            .unwrap_or(0)
    }

    fn applied(&self, i: usize) -> u64 {
        self.call(i, "GET", "/v1/status", None, &[]).json()["applied_revision"]
            .as_u64()
            .unwrap_or(0)
    }

    fn ports(&self, i: usize) -> BTreeSet<String> {
        self.call(i, "GET", "/v1/ingress-rules", None, &[])
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["ports"].as_str().map(str::to_string))
            .collect()
    }

    fn wait_applied(&mut self, i: usize, rev: u64, what: &str) {
        let r = wait_for(Duration::from_secs(10), what, || {
            (self.applied(i) >= rev).then_some(())
        });
        if let Err(e) = r {
            panic!("{e}\n{}", self.log(i));
        }
    }
}

fn add_rule(s: &Shared, i: usize, port: u32, if_match: Option<u64>) -> Reply {
    let h = if_match.map(|r| format!("If-Match: \"{r}\""));
    let hdr: Vec<&str> = h.iter().map(String::as_str).collect();
    s.call(
        i,
        "POST",
        "/v1/ingress-rules",
        Some(&format!(r#"{{"protocol":"tcp","ports":"{port}"}}"#)),
        &hdr,
    )
}

/// Acceptance 2 (and 6's isolation is in its own test): 100 writes through each of two
/// instances, interleaved, each pinned with If-Match to what its instance showed. The final
/// document holds exactly the acknowledged ones, the losers got 412, and the audit trail has one
/// entry per acknowledged write.
#[test]
fn racing_writes_through_two_instances_lose_nothing_acknowledged() {
    let mut s = Shared::pair("st-race");
    let acked = std::sync::Mutex::new(BTreeSet::new());
    let lost = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for i in 0..2 {
            let (s, acked, lost) = (&s, &acked, &lost);
            scope.spawn(move || {
                for n in 0..100u32 {
                    let port = 1000 * (i as u32 + 1) + n;
                    let rev = s.revision(i);
                    let r = add_rule(s, i, port, Some(rev));
                    match r.status {
                        201 => {
                            acked.lock().expect("lock").insert(port.to_string());
                        }
                        412 | 409 => {
                            assert!(
                                r.body.contains("current revision"),
                                "a loser learns the current revision: {}",
                                r.body
                            );
                            lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other}: {}", r.body),
                    }
                }
            });
        }
    });
    let acked = acked.into_inner().expect("lock");
    let lost = lost.into_inner();
    assert_eq!(acked.len() + lost, 200);
    assert!(acked.len() >= 100, "{} acknowledged", acked.len());
    let final_rev = s.revision(0).max(s.revision(1));
    s.wait_applied(0, final_rev, "instance 0 to apply the last write");
    s.wait_applied(1, final_rev, "instance 1 to apply the last write");
    for i in 0..2 {
        let mut want = acked.clone();
        want.insert("22".into());
        assert_eq!(
            s.ports(i),
            want,
            "instance {i} holds exactly the acknowledged writes"
        );
    }
    let audit = s.call(0, "GET", "/v1/audit?limit=1000", None, &[]).json();
    let writes: Vec<&serde_json::Value> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter(|e| e["action"] == "POST /v1/ingress-rules")
        .collect();
    assert_eq!(
        writes.len(),
        acked.len(),
        "one audit entry per acknowledged write"
    );
    let revs: BTreeSet<u64> = writes
        .iter()
        .filter_map(|e| e["revision"].as_u64())
        .collect();
    assert_eq!(revs.len(), acked.len(), "each in its own revision");
    // Both instances read the one shared trail.
    let other = s.call(1, "GET", "/v1/audit?limit=1000", None, &[]).json();
    assert_eq!(audit, other);
    eprintln!("{} acknowledged, {lost} lost the race", acked.len());
}

/// Acceptance 3: etcd is killed. The data plane keeps its rules, writes answer 503 within 5 s,
/// /readyz and the metrics say the store is down, an instance restarted meanwhile comes up with
/// the last applied state, and once etcd is back writes work without any restart.
#[test]
fn etcd_outage_keeps_the_last_state_and_fails_writes_fast() {
    let mut s = Shared::pair("st-down");
    let r = add_rule(&s, 0, 8443, None);
    assert_eq!(r.status, 201, "{}", r.body);
    let rev = r.etag().expect("etag");
    s.wait_applied(1, rev, "instance 1 to apply the write made through 0");
    let nft = |s: &Shared, i: usize| {
        s.gws[i]
            .host
            .run(&["nft", "list", "table", "inet", "kawaii"])
            .unwrap_or_default()
    };
    assert!(nft(&s, 1).contains("8443"));

    s.etcd.kill(&mut s.topo, 0);
    for i in 0..2 {
        let t0 = Instant::now();
        let r = add_rule(&s, i, 9000 + i as u32, None);
        let took = t0.elapsed();
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body.contains("store unreachable"), "{}", r.body);
        assert!(took < Duration::from_secs(5), "answered in {took:?}");
    }
    for i in 0..2 {
        let host = s.gws[i].host.clone();
        wait_for(
            Duration::from_secs(10),
            "/readyz to show the store down",
            || {
                let r = curl(&host, "GET", "/readyz", None, None, &[]);
                (r.status == 503 && r.body.contains("store down")).then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = s.call(i, "GET", "/metrics", None, &[]).body;
        assert!(m.contains("kawaii_store_up{backend=\"etcd\"} 0"), "{m}");
        assert!(m.contains("kawaii_store_seconds_since_sync"), "{m}");
        let st = s.call(i, "GET", "/v1/status", None, &[]).json();
        assert_eq!(st["store"]["up"], false, "{st}");
        // The data plane is untouched.
        assert!(nft(&s, i).contains("8443"));
        assert!(s.ports(i).contains("8443"));
    }
    // `kawaii status` says it too.
    let out = s.gws[0]
        .host
        .command(&[bin(), "status"])
        .env("KAWAII_TOKEN", ADMIN)
        .output()
        .expect("kawaii status");
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().nth(1).unwrap_or_default();
    assert!(
        header.contains(" etcd ") && header.contains(" DOWN "),
        "{text}"
    );
    assert!(text.contains("\nstore error: "), "{text}");

    // Restarted during the outage: up with the cached state.
    s.kill9(1);
    let cache = s.gws[1].state.join("etcd-cache.json");
    let mode = std::fs::metadata(&cache)
        .expect("cache")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    s.start(1);
    assert!(s.ports(1).contains("8443"), "the cached state is served");
    assert_eq!(s.revision(1), rev);
    let host = s.gws[1].host.clone();
    wait_for(
        Duration::from_secs(10),
        "the restarted instance to apply",
        || (s.applied(1) == rev).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(nft(&s, 1).contains("8443"));

    s.etcd.restart(&mut s.topo, 0).expect("etcd back");
    let t0 = Instant::now();
    wait_for(Duration::from_secs(15), "writes to work again", || {
        (add_rule(&s, 1, 9100, None).status == 201).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("writes back {:?} after etcd", t0.elapsed());
    let rev2 = s.revision(1);
    s.wait_applied(0, rev2, "instance 0 to catch up without a restart");
    assert!(s.ports(0).contains("9100"));
    wait_for(Duration::from_secs(10), "/readyz to recover", || {
        (curl(&host, "GET", "/readyz", None, None, &[]).status == 200).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// A newer kawaii migrates the shared store while this one runs (a rolling upgrade): this
/// instance notices, keeps its last state in force, refuses writes without writing a key, and
/// says why; a store whose schema went back (restored from its backup) is not written in the
/// wrong layout either. With the schema as this build opened it, writes work again.
#[test]
fn a_running_instance_never_writes_a_store_of_another_schema() {
    let mut s = Shared::started("st-schema", &[("acme", "kawaii/acme")]);
    let r = add_rule(&s, 0, 8443, None);
    assert_eq!(r.status, 201, "{}", r.body);
    let rev = r.etag().expect("etag");
    s.wait_applied(0, rev, "the first write");
    let ctl = |s: &Shared, args: &[&str]| s.etcd.ctl(0, args).unwrap_or_else(|e| panic!("{e}"));
    let key = "/kawaii/acme/schema";
    assert_eq!(ctl(&s, &["get", "--print-value-only", key]).trim(), "2");

    for (change, found) in [
        (vec!["put", key, "3"], "schema 3"),
        (vec!["del", key], "schema 1"),
    ] {
        ctl(&s, &change);
        // At once, whether or not the watch has shown it yet: the write's guard holds.
        let etcd_rev = s.etcd.revision(0).expect("etcd revision");
        let r = add_rule(&s, 0, 9000, None);
        assert_eq!(r.status, 503, "{change:?}: {}", r.body);
        assert!(
            r.body.contains(found) && r.body.contains("othing was changed"),
            "{}",
            r.body
        );
        assert_eq!(
            s.etcd.revision(0).expect("etcd revision"),
            etcd_rev,
            "a key was written"
        );
        // The last state stays in force.
        assert!(s.ports(0).contains("8443") && !s.ports(0).contains("9000"));
        assert_eq!(s.applied(0), rev);
    }
    // Told in the status as soon as the watch shows a newer schema.
    ctl(&s, &["put", key, "3"]);
    wait_for(
        Duration::from_secs(10),
        "the store to show schema 3",
        || {
            let st = s.call(0, "GET", "/v1/status", None, &[]).json();
            (st["store"]["up"] == false
                && st["store"]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("newer kawaii"))
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", s.log(0)));
    ctl(&s, &["put", key, "2"]);
    wait_for(Duration::from_secs(10), "writes to work again", || {
        (add_rule(&s, 0, 9100, None).status == 201).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", s.log(0)));
    s.wait_applied(0, rev + 1, "the write after the schema came back");
    assert_eq!(
        s.call(0, "GET", "/v1/status", None, &[]).json()["store"]["up"],
        true
    );
}

/// Acceptance 5: the history is compacted past a disconnected instance's revision; when its
/// link comes back it reads everything again and holds the latest state.
#[test]
fn compaction_past_a_disconnected_instance_means_a_full_reread() {
    let mut s = Shared::pair("st-comp");
    let host1 = s.gws[1].host.clone();
    host1
        .run(&["ip", "link", "set", "mgmt0", "down"])
        .expect("cut");
    let mut last = 0;
    for n in 0..5 {
        let r = add_rule(&s, 0, 7000 + n, None);
        assert_eq!(r.status, 201, "{}", r.body);
        last = r.etag().expect("etag");
    }
    s.etcd.compact(0).expect("compact");
    assert!(s.revision(1) < last);
    host1
        .run(&["ip", "link", "set", "mgmt0", "up"])
        .expect("restore");
    s.wait_applied(1, last, "the reconnected instance to catch up");
    assert!(s.ports(1).contains("7004"));
    let _ = s.log(1);
}

/// Acceptance 6: two gateways under different prefixes of one etcd (one prefix a string
/// prefix of the other) never see each other's writes.
#[test]
fn gateways_under_different_prefixes_are_isolated() {
    let s = Shared::started(
        "st-iso",
        &[("acme", "kawaii/acme"), ("acme2", "kawaii/acme2")],
    );
    let r = add_rule(&s, 0, 6001, None);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = add_rule(&s, 1, 6002, None);
    assert_eq!(r.status, 201, "{}", r.body);
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.ports(0).contains("6001") && !s.ports(0).contains("6002"));
    assert!(s.ports(1).contains("6002") && !s.ports(1).contains("6001"));
    let g0 = s.call(0, "GET", "/v1/gateway", None, &[]).json();
    let g1 = s.call(1, "GET", "/v1/gateway", None, &[]).json();
    assert_eq!(g0["gateway"]["gateway"]["name"], "acme");
    assert_eq!(g1["gateway"]["gateway"]["name"], "acme2");
    let audit = s.call(1, "GET", "/v1/audit", None, &[]).body;
    assert!(!audit.contains("6001"), "{audit}");
}

/// Acceptance 7: `kawaii store copy` sqlite → etcd → sqlite gives the identical document,
/// audit trail and metadata; a non-empty target is refused without --force.
#[test]
fn store_copy_round_trips_between_sqlite_and_etcd() {
    use kawaii_store::{Actor, SqliteStore, Store};
    let s = Shared::new("st-copy", &[("acme", "kawaii/acme")]);
    let src = s.topo.dir().join("src");
    let back = s.topo.dir().join("back");
    {
        let store = SqliteStore::open(&src).expect("open");
        let mut g = kawaii_model::Gateway::parse(&base_config(), kawaii_model::Format::Toml)
            .expect("parse");
        let actor = Actor {
            name: "ops".into(),
            action: "test".into(),
        };
        store.commit(None, &g, &actor).expect("commit");
        g.ingress_rules[0].ports = "2222".into();
        store.commit(Some(1), &g, &actor).expect("commit");
        store.set_meta("config_file_sha256", "abc").expect("meta");
    }
    let url = s.gws[0].url.clone();
    let copy = |from: &str, to: &str, force: bool| {
        let mut args = vec![bin(), "store", "copy", "--from", from, "--to", to];
        if force {
            args.push("--force");
        }
        s.gws[0]
            .host
            .command(&args)
            .output()
            .expect("kawaii store copy")
    };
    let from = format!("sqlite:{}", src.display());
    let out = copy(&from, &url, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = copy(&from, &url, false);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(copy(&from, &url, true).status.success());
    let to = format!("sqlite:{}", back.display());
    let out = copy(&url, &to, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = SqliteStore::open(&src)
        .expect("open")
        .export()
        .expect("export");
    let b = SqliteStore::open(&back)
        .expect("open")
        .export()
        .expect("export");
    assert_eq!(a, b);
    assert_eq!(b.snapshot.revision, 2);
    assert_eq!(b.audit.len(), 2);
    let psk = b.snapshot.gateway.ipsec[0]
        .pre_shared_key
        .as_ref()
        .map(|s| s.expose().to_string());
    assert_eq!(psk.as_deref(), Some(PSK), "the secret's real value travels");
}

/// Acceptance 8 and 9 on the embedded store: a pre-existing 0755 state directory and 0644 file
/// are tightened (and logged); the database, WAL, shm and token files are 0600; GET → PUT of
/// /v1/gateway and `get -o toml` → `apply -f` round-trip, redacted secrets keeping their value.
#[test]
fn state_modes_and_api_round_trips() {
    let mut topo = Topology::new("st-modes").expect("topology");
    let host = topo.host("gw").expect("host");
    // The state directory exists before, too open (as `Serve::start` will use it).
    let state = topo.dir().join("gw").join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let stray = state.join("notes.txt");
    std::fs::write(&stray, "x").expect("write");
    std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let serve = Serve::start(
        &mut topo,
        &host,
        "gateway.toml",
        &base_config(),
        &ServeOptions::new(bin()),
    )
    .expect("serve");
    assert_eq!(serve.state, state);
    serve
        .wait_ready(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}: {}", serve.log(&mut topo)));
    let api = Api::new(&host, Some(ADMIN));
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).expect("ls") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    for f in ["kawaii.db", "kawaii.db-wal", "kawaii.db-shm", "notes.txt"] {
        assert!(state.join(f).exists(), "{f}");
    }
    assert!(
        serve.log(&mut topo).contains("tightened"),
        "the log says so"
    );

    // GET → PUT with the envelope as it came.
    let got = api.request("GET", "/v1/gateway", None, &[]);
    assert!(!got.body.contains(PSK));
    let r = api.request("PUT", "/v1/gateway", Some(&got.body), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    // A stale envelope is refused like a stale If-Match.
    let mut env = got.json();
    env["gateway"]["ingress_rules"][0]["ports"] = "2200".into();
    let rev = got.etag().expect("etag");
    env["revision"] = (rev + 100).into();
    let r = api.request("PUT", "/v1/gateway", Some(&env.to_string()), &[]);
    assert_eq!(r.status, 412, "{}", r.body);
    env["revision"] = rev.into();
    let r = api.request("PUT", "/v1/gateway", Some(&env.to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.body);

    // get -o toml > f; edit; apply -f f.
    let out = serve
        .cli(ADMIN, &["get", "gateway", "-o", "toml"])
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!toml.contains(PSK), "{toml}");
    let file = topo.dir().join("edited.toml");
    std::fs::write(&file, toml.replace("\"2200\"", "\"2201\"")).expect("write");
    let out = serve
        .cli(ADMIN, &["apply", "-f", path(&file)])
        .expect("cli");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = api.request("GET", "/v1/ingress-rules", None, &[]);
    assert!(r.body.contains("2201"), "{}", r.body);
    // The redacted PSK kept its stored value: the store still holds the real one.
    topo.proc(serve.proc).kill();
    let store = kawaii_store::SqliteStore::open(&state).expect("open");
    let cur = kawaii_store::Store::current(&store).expect("current");
    let psk = cur.gateway.ipsec[0]
        .pre_shared_key
        .as_ref()
        .map(|s| s.expose().to_string());
    assert_eq!(psk.as_deref(), Some(PSK));
}

/// Acceptance 1: two zones (the HA lab) on a real etcd on a management link. A port forward
/// written through zone-a's API is applied by zone-b; zone-a is killed, zone-b takes its VIPs
/// and enforces the write: a new connection to the forwarded port works, even with etcd
/// killed before the failover (both zones keep forwarding; writes answer 503).
#[test]
fn a_write_through_one_zone_holds_in_the_other_after_failover() {
    use kawaii_testkit::lab;
    let (mut topo, l) = lab::start_ha("st-ha", |_| lab::ha_config(5, "0s"), etcd_lab());
    let token = |zone: &str| {
        lab::admin_token(&topo.dir().join(format!("state-{zone}"))).expect("bootstrap token")
    };
    let (token_a, token_b) = (token("zone-a"), token("zone-b"));
    let svc = l.svc.clone();
    topo.spawn(
        &l.vm_a,
        "vm-a-http-8080",
        &["python3", &svc, "http", "vm-a", "8080"],
    )
    .expect("service");
    kawaii_testkit::wait_tcp(
        &l.vm_a,
        format!("{}:8080", lab::VM_A).parse().expect("addr"),
        Duration::from_secs(10),
    )
    .expect("vm-a :8080");

    let post = |path: &str, body: &str| {
        let r = curl(&l.gw_a, "POST", path, Some(&token_a), Some(body), &[]);
        assert_eq!(r.status, 201, "{}", r.body);
        r.etag().expect("etag")
    };
    post(
        "/v1/nat-rules",
        &format!(
            r#"{{"destination":"{}","protocol":"tcp","ports":"8080"}}"#,
            lab::VM_A
        ),
    );
    let rev = post("/v1/ingress-rules", r#"{"protocol":"tcp","ports":"8080"}"#);
    let url = format!("http://{}:8080/", lab::ZONE_A_PUBLIC_VIP);
    let fetch = |l: &lab::HaLab| {
        l.internet
            .run(&["curl", "-s", "--max-time", "2", &url])
            .unwrap_or_default()
    };
    wait_for(
        Duration::from_secs(10),
        "the forward through zone-a",
        || fetch(&l).contains("vm-a").then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for(
        Duration::from_secs(10),
        "zone-b to apply zone-a's write",
        || {
            let st = curl(&l.gw_b, "GET", "/v1/status", Some(&token_b), None, &[]).json();
            (st["applied_revision"].as_u64() >= Some(rev)).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rules = curl(&l.gw_b, "GET", "/v1/nat-rules", Some(&token_b), None, &[]);
    assert!(rules.body.contains(lab::VM_A), "{}", rules.body);

    // Acceptance 3 on the real data plane: etcd dies; both zones keep forwarding, and what
    // zone-b enforces after the failover is what it had applied before the outage.
    let member = l
        .etcd
        .as_ref()
        .and_then(|e| e.members[0].proc)
        .expect("etcd");
    topo.proc(member).kill();
    let t0 = Instant::now();
    let r = curl(
        &l.gw_b,
        "POST",
        "/v1/ingress-rules",
        Some(&token_b),
        Some(r#"{"ports":"9999"}"#),
        &[],
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        fetch(&l).contains("vm-a"),
        "zone-a forwards during the outage"
    );
    let out = l
        .vm_b
        .run(&[
            "curl",
            "-s",
            "--max-time",
            "3",
            &format!("http://{}/", lab::INTERNET),
        ])
        .unwrap_or_default();
    assert!(
        out.contains("internet"),
        "zone-b egress during the outage: {out}"
    );

    topo.proc(l.kawaii_a.proc).kill();
    wait_for(
        Duration::from_secs(10),
        "zone-b to take zone-a's VIP",
        || lab::has_address(&l.gw_b, lab::ZONE_A_PUBLIC_VIP).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    wait_for(
        Duration::from_secs(10),
        "a new connection through zone-b",
        || fetch(&l).contains("vm-a").then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "forward works through zone-b {:?} after it took the VIP",
        t0.elapsed()
    );
    drop(l);
}

/// Acceptance 4: a 3-member cluster has its leader's link cut during a stream of writes. No
/// acknowledged write is lost, and the instance talking to the isolated member moves to the
/// others within seconds.
#[test]
fn leader_isolated_during_writes_loses_nothing_acknowledged() {
    let mut s = Shared::with_members(
        "st-3",
        &[("acme", "kawaii/acme"), ("acme", "kawaii/acme")],
        &["10.254.0.1", "10.254.0.2", "10.254.0.3"],
    );
    let leader = wait_for(Duration::from_secs(10), "an etcd leader", || {
        s.etcd.leader()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Instance 0 talks to the leader first, instance 1 to another member.
    let order = |first: usize| {
        let mut ips: Vec<String> = s.etcd.members.iter().map(|m| m.ip.clone()).collect();
        ips.rotate_left(first);
        format!(
            "etcd://{}/kawaii/acme",
            ips.iter()
                .map(|ip| format!("{ip}:{}", etcd::CLIENT_PORT))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    s.gws[0].url = order(leader);
    s.gws[1].url = order((leader + 1) % 3);
    s.start(0);
    s.start(1);
    let acked = std::sync::Mutex::new(BTreeSet::new());
    let cut_at = std::sync::Mutex::new(None::<Instant>);
    let first_after_cut = std::sync::Mutex::new(None::<Duration>);
    let (mut failed, mut port) = (0, 3000);
    std::thread::scope(|scope| {
        let (s, cut_at) = (&s, &cut_at);
        scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            s.etcd.link(leader, false).expect("cut");
            *cut_at.lock().expect("lock") = Some(Instant::now());
            std::thread::sleep(Duration::from_secs(8));
            s.etcd.link(leader, true).expect("restore");
        });
        let deadline = Instant::now() + Duration::from_secs(12);
        while Instant::now() < deadline {
            port += 1;
            let r = add_rule(s, (port % 2) as usize, port, None);
            let cut = *cut_at.lock().expect("lock");
            match r.status {
                201 => {
                    acked.lock().expect("lock").insert(port.to_string());
                    if let Some(c) = cut
                        && port % 2 == 0
                    {
                        first_after_cut
                            .lock()
                            .expect("lock")
                            .get_or_insert(c.elapsed());
                    }
                }
                503 | 0 => failed += 1,
                other => panic!("unexpected {other}: {}", r.body),
            }
        }
    });
    let acked = acked.into_inner().expect("lock");
    let moved = first_after_cut.into_inner().expect("lock");
    eprintln!(
        "{} writes acknowledged, {failed} refused; instance 0 wrote again {moved:?} after the cut",
        acked.len()
    );
    let moved = moved.expect("instance 0 never wrote again after its member was cut off");
    assert!(moved < Duration::from_secs(8), "{moved:?}");
    // Both converge on the newest revision either of them has seen (the write acknowledged
    // last may have gone through either instance).
    let rev = s.revision(0).max(s.revision(1));
    s.wait_applied(0, rev, "instance 0 to converge");
    s.wait_applied(1, rev, "instance 1 to converge");
    for i in 0..2 {
        let have = s.ports(i);
        let missing: Vec<_> = acked.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "instance {i} lost acknowledged writes {missing:?}"
        );
    }
}

/// The store benchmark (`bench/store/run.sh` runs it; not a test): write → applied latency
/// from the API's acknowledgement through zone-a to the last driver's apply on zone-b (etcd) or
/// on the same instance (SQLite), p50/p99 over 200 writes 50 ms apart, and sustained writes per
/// second with 1 and 4 writers. Built on unique namespaces, so it runs beside a lab.
#[test]
#[ignore = "benchmark: run bench/store/run.sh"]
fn bench_store() {
    use kawaii_testkit::lab;
    let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/store");
    let writer = bench.join("writer.py").to_string_lossy().into_owned();
    let applied = bench.join("applied.py").to_string_lossy().into_owned();
    let pairs = std::env::var("N").unwrap_or_else(|_| "100".into());
    let measure = |topo: &Topology, gw: &Host, token: &str, logs: &[(&str, PathBuf)]| {
        // Past the start-up (first reconciles, VRRP elections): steady state only.
        std::thread::sleep(Duration::from_secs(3));
        let acks = gw
            .run(&["python3", &writer, "latency", token, &pairs, "50"])
            .expect("writer");
        let file = topo.dir().join("acks");
        std::fs::write(&file, acks).expect("acks");
        std::thread::sleep(Duration::from_secs(1));
        for (what, log) in logs {
            let mut args = vec![applied.as_str(), path(&file), path(log)];
            if std::env::var_os("BENCH_DEBUG").is_some() {
                args.push("slowest");
                let text = std::fs::read_to_string(log).unwrap_or_default();
                for l in text
                    .lines()
                    .filter(|l| l.contains("etcd") || l.contains("WARN"))
                {
                    println!("    {l}");
                }
            }
            let out = std::process::Command::new("python3")
                .args(&args)
                .output()
                .expect("applied.py");
            println!(
                "  {what}: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        for c in ["1", "4"] {
            let out = gw
                .run(&["python3", &writer, "rate", token, "5", c])
                .expect("writer");
            let mut it = out
                .split_whitespace()
                .map(|v| v.parse::<f64>().unwrap_or(0.0));
            let (n, s) = (it.next().unwrap_or(0.0), it.next().unwrap_or(1.0));
            println!("  sustained writes, {c} writer(s): {:.0}/s", n / s);
        }
    };

    println!("== etcd: two zones sharing one etcd 3.4 (tmpfs, management switch)");
    {
        let (mut topo, l) = lab::start_ha("bs-etcd", |_| lab::ha_config(5, "0s"), etcd_lab());
        let token = lab::admin_token(&topo.dir().join("state-zone-a")).expect("token");
        let log_a = topo.proc(l.kawaii_a.proc).log.clone();
        let log_b = topo
            .proc(l.kawaii_b.as_ref().expect("zone-b").proc)
            .log
            .clone();
        measure(
            &topo,
            &l.gw_a,
            &token,
            &[
                ("write on A -> applied on B", log_b),
                ("write on A -> applied on A", log_a),
            ],
        );
    }
    println!("== sqlite: one instance");
    {
        let mut topo = Topology::new("bs-sqlite").expect("topology");
        let cfg = topo.dir().join("gateway.toml");
        std::fs::write(&cfg, include_str!("../../../examples/lab.toml")).expect("config");
        let opts = lab::LabOptions {
            kawaii: bin().into(),
            config: cfg,
            env: vec![("KAWAII_LOG".into(), "info".into())],
        };
        let l = lab::build(&mut topo, &opts).unwrap_or_else(|e| panic!("lab: {e}"));
        let token = lab::admin_token(&l.state).expect("token");
        let log = topo.proc(l.kawaii.proc).log.clone();
        measure(
            &topo,
            &l.gw,
            &token,
            &[("write -> applied (same instance)", log)],
        );
    }
}

/// etcd with authentication: a role limited to the gateway's prefix, the password only in
/// `--store-auth-file`, never in the log; a prefix outside the role is refused at start.
#[test]
fn etcd_user_from_the_auth_file_is_limited_to_its_prefix() {
    let mut s = Shared::new(
        "st-auth",
        &[("acme", "kawaii/acme"), ("other", "kawaii/other")],
    );
    let password = "pw-that-must-never-be-logged-31";
    for cmd in [
        vec!["user", "add", "root:rootpw"],
        vec!["user", "grant-role", "root", "root"],
        vec!["role", "add", "kawaii-acme"],
        vec![
            "role",
            "grant-permission",
            "kawaii-acme",
            "readwrite",
            "/kawaii/acme/",
            "--prefix=true",
        ],
    ] {
        s.etcd.ctl(0, &cmd).unwrap_or_else(|e| panic!("{e}"));
    }
    let user = format!("kawaii-acme:{password}");
    s.etcd
        .ctl(0, &["user", "add", &user])
        .unwrap_or_else(|e| panic!("{e}"));
    s.etcd
        .ctl(0, &["user", "grant-role", "kawaii-acme", "kawaii-acme"])
        .unwrap_or_else(|e| panic!("{e}"));
    s.etcd
        .ctl(0, &["auth", "enable"])
        .unwrap_or_else(|e| panic!("{e}"));
    let auth = s.topo.dir().join("etcd.auth");
    kawaii_testkit::keys::write_secret(&auth, &user, 0o600).expect("auth file");
    for g in &mut s.gws {
        g.extra = vec!["--store-auth-file".into(), path(&auth).into()];
    }
    s.start(0);
    let r = add_rule(&s, 0, 4444, None);
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!s.log(0).contains(password), "the password reached the log");

    // The same user on a prefix its role does not cover: refused, and said so.
    let g = &s.gws[1];
    let out = g
        .host
        .command(&[
            bin(),
            "serve",
            "--config",
            path(&g.config),
            "--state",
            path(&g.state),
            "--store",
            &g.url,
            "--store-auth-file",
            path(&auth),
        ])
        .output()
        .expect("kawaii serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied"), "{err}");
    assert!(!err.contains(password), "{err}");
}

/// `[store]` retention prunes the shared audit trail: after a restart (the daemon prunes at
/// start, then hourly) only the newest `audit_max_entries` remain, and writes go on.
#[test]
fn the_shared_audit_trail_is_pruned_to_its_retention() {
    let mut s = Shared::new("st-prune", &[("acme", "kawaii/acme")]);
    let config = light_config("acme") + "\n[store]\naudit_max_entries = 3\n";
    std::fs::write(&s.gws[0].config, config).expect("config");
    s.start(0);
    for port in 2000..2006 {
        let r = add_rule(&s, 0, port, None);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let entries = |s: &Shared| -> Vec<u64> {
        let r = s.call(0, "GET", "/v1/audit?limit=100", None, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|e| e["revision"].as_u64())
            .collect()
    };
    assert!(entries(&s).len() >= 6, "{:?}", entries(&s));
    s.kill9(0);
    s.start(0);
    let newest = s.revision(0);
    let kept = wait_for(Duration::from_secs(10), "the pruned trail", || {
        let e = entries(&s);
        (e.len() == 3).then_some(e)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", entries(&s), s.log(0)));
    assert_eq!(kept, [newest, newest - 1, newest - 2]);
    assert!(s.log(0).contains("audit trail pruned"), "{}", s.log(0));
    assert_eq!(add_rule(&s, 0, 2100, None).status, 201);
    assert_eq!(entries(&s).len(), 4);
}
