//! Pipes through the WireGuard tunnel, end to end: Cloud-Gateway's two demos rebuilt in network
//! namespaces (real nginx, kawaii edge nodes from Cloud-Gateway's own `conf.yaml` files as
//! published with the demo, and again from native TOML), 100 parallel 10 MB transfers with
//! checksums, and pipes added and removed through the API while another pipe carries a stream.
//!
//! ```text
//!  minimal:  nginx ─ legacy ─ server ─ cloudnative ─ client          curl client:8080
//!  reverse:  client-legacy ─ legacy ─ server ─ cloudnative ─ client-cloudnative, nginx
//!                                                                    curl client-legacy:8080
//! ```
//! legacy is 192.0.2.0/24, cloudnative 198.51.100.0/24; names resolve through per-namespace
//! hosts files, as Docker's DNS does in the original demo.

use kawaii_testkit::api::Api;
use kawaii_testkit::serve::{Serve, ServeOptions};
use kawaii_testkit::services::nginx;
use kawaii_testkit::{Host, Topology, wait_for};
use serde_json::json;
use std::time::Duration;

const PAGE: &str = "<h1>Welcome to nginx!</h1> behind the tunnel\n";

// client's public key, as published in the demo's conf.yaml files (`testdata/cloud-gateway/`).
const CLIENT_PUB: &str = "QqdKxpGpG1TTuyjCayMpRRKwLm5kjyIKZybxjv8oDnQ=";

struct Demo {
    topo: Topology,
    /// The kawaii nodes (each named after its host).
    nodes: Vec<Serve>,
    hosts: Vec<Host>,
}

impl Demo {
    fn host(&self, name: &str) -> Host {
        self.hosts
            .iter()
            .chain(self.nodes.iter().map(|n| &n.host))
            .find(|h| h.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    fn logs(&mut self) -> String {
        let nodes = self.nodes.clone();
        nodes
            .iter()
            .map(|n| format!("--- {}\n{}", n.host.name, n.log(&mut self.topo)))
            .collect()
    }

    /// The node's API as its bootstrap admin.
    fn api(&self, node: &str) -> Api {
        self.nodes
            .iter()
            .find(|n| n.host.name == node)
            .unwrap_or_else(|| panic!("no node {node}"))
            .api()
    }

    /// curl from `from` until it answers (the tunnel handshakes on first use).
    fn fetch(&mut self, from: &str, url: &str) -> String {
        let h = self.host(from);
        let r = wait_for(Duration::from_secs(20), url, || h.curl(url, "3"));
        r.unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }
}

fn start_nodes(topo: &mut Topology, nodes: &[(&Host, &str, String)]) -> Vec<Serve> {
    let opts = ServeOptions::new(env!("CARGO_BIN_EXE_kawaii"));
    let started: Vec<Serve> = nodes
        .iter()
        .map(|(host, file, text)| Serve::start(topo, host, file, text, &opts).expect("kawaii"))
        .collect();
    for node in &started {
        let name = &node.host.name;
        wait_for(Duration::from_secs(15), &format!("{name} applied"), || {
            let s = node.api().get("/v1/status");
            (s.status == 200 && s.json()["ready"] == true).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    started
}

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    CloudGateway,
    Native,
}

/// A demo from `testdata/cloud-gateway/<name>/`: the hosts on the two networks ("legacy",
/// "cloudnative") and their hosts files as `network.txt` lists them, nginx (and a digest sink
/// and an echo service) on the host `nginx`, and kawaii on every host with a config there:
/// `<host>.yaml` as Cloud-Gateway published it, or its native `.toml` twin.
fn demo(tag: &str, name: &str, flavor: Flavor) -> Demo {
    assert!(
        kawaii_testkit::can_run(),
        "end-to-end tests need root and iproute2"
    );
    let dir = format!(
        "{}/tests/testdata/cloud-gateway/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let read = |file: &str| {
        let path = format!("{dir}/{file}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let mut topo = Topology::new(tag).expect("topology");
    let legacy = topo.switch("legacy").expect("switch");
    let cloud = topo.switch("cloudnative").expect("switch");
    let mut hosts: Vec<(Host, String)> = Vec::new();
    for line in read("network.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut words = line.splitn(5, ' ');
        let mut word = || words.next().expect("host network interface address");
        let (host, net, dev, cidr) = (word(), word(), word(), word());
        let etc_hosts = words.next().unwrap_or_default().replace("; ", "\n");
        let h = match hosts.iter().find(|(h, _)| h.name == host) {
            Some((h, _)) => h.clone(),
            None => {
                let h = topo.host(host).expect("host");
                hosts.push((h.clone(), cidr.to_string()));
                h
            }
        };
        topo.plug(&h, dev, if net == "legacy" { &legacy } else { &cloud })
            .expect("plug");
        h.addr(dev, cidr).expect("addr");
        if !etc_hosts.is_empty() {
            topo.hosts_file(&h, &etc_hosts).expect("hosts");
        }
    }
    let (web, web_cidr) = hosts
        .iter()
        .find(|(h, _)| h.name == "nginx")
        .cloned()
        .expect("an nginx host");
    let web_ip = web_cidr.split('/').next().unwrap_or_default();
    nginx(&mut topo, &web, web_ip, PAGE).expect("nginx");
    let svc = topo.svc().expect("svc.py");
    topo.spawn(&web, "digest", &["python3", &svc, "digest", "9000"])
        .expect("digest");
    topo.spawn(&web, "echo", &["python3", &svc, "tcp-echo", "7"])
        .expect("echo");
    let (ext, file) = match flavor {
        Flavor::CloudGateway => ("yaml", "conf.yaml"),
        Flavor::Native => ("toml", "kawaii.toml"),
    };
    let configs: Vec<(&Host, &str, String)> = hosts
        .iter()
        .filter(|(h, _)| std::path::Path::new(&format!("{dir}/{}.{ext}", h.name)).exists())
        .map(|(h, _)| (h, file, read(&format!("{}.{ext}", h.name))))
        .collect();
    let nodes = start_nodes(&mut topo, &configs);
    Demo {
        topo,
        nodes,
        hosts: vec![web],
    }
}

#[test]
fn minimal_demo_from_cloud_gateway_files_with_load_and_live_pipes() {
    let mut d = demo("pipemin", "minimal", Flavor::CloudGateway);
    // 1. curl client:8080 gets nginx's page; the client has no route to nginx itself.
    let page = d.fetch("client", "http://client:8080/");
    assert_eq!(page, PAGE);
    let client = d.host("client");
    let direct = client.curl("http://192.0.2.10/", "2");
    assert!(direct.is_none(), "only the pipe reaches nginx");
    // Both ends derived the same VPN addresses from the files.
    let c_ip = kawaii_model::dropin::cloud_gateway_address(CLIENT_PUB).to_string();
    let status = d.api("server").status();
    let peers = status["details"]["wireguard"]["peers"].clone();
    assert_eq!(peers[0]["allowed_ips"][0], format!("{c_ip}/32"), "{status}");

    // 4. Pipes added through the API on both nodes: 100 parallel connections of 10 MB each
    // through the tunnel, every digest checked by the far end.
    for (node, body) in [
        (
            "server",
            json!({"name": "sink", "port": 9000, "remote": "nginx:9000"}),
        ),
        (
            "client",
            json!({"name": "sink", "port": 9000, "remote": "nginx:9000", "peer": "server"}),
        ),
        (
            "server",
            json!({"name": "echo", "port": 7000, "remote": "nginx:7"}),
        ),
        (
            "client",
            json!({"name": "echo", "port": 7000, "remote": "nginx:7", "peer": "server"}),
        ),
    ] {
        let r = d.api(node).post("/v1/pipes", &body);
        assert_eq!(r.status, 201, "{node}: {}", r.body);
    }
    let svc = d.topo.svc().expect("svc.py");
    let h = client.clone();
    let out = wait_for(Duration::from_secs(10), "the sink pipe", || {
        h.exec(&["python3", &svc, "load", "127.0.0.1", "9000", "1", "1000"])
            .ok()
            .filter(|o| o.status.success())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok 1"));
    let out = client
        .exec(&[
            "python3",
            &svc,
            "load",
            "127.0.0.1",
            "9000",
            "100",
            "10485760",
        ])
        .expect("load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("ok 100"),
        "100 × 10 MB: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("100 × 10 MB through the pipe: {}", text.trim());
    // Status (read live) counts every byte and connection, none left open.
    let sink = wait_for(Duration::from_secs(6), "the sink's counters", || {
        let st = d.api("client").status();
        let sink = st["details"]["pipes"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "sink").cloned())?;
        (sink["active"] == 0).then_some(sink)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sink["bytes_in"].as_u64().unwrap_or(0) >= 100 * 10_485_760,
        "{sink}"
    );
    assert_eq!(sink["connections"], 101, "{sink}");
    assert_eq!(sink["errors"], serde_json::json!({}), "{sink}");

    // 5. A stream through the echo pipe survives adding and removing other pipes.
    let stop = d.topo.dir().join("stop-stream");
    let (h, svc2, stop2) = (client.clone(), svc.clone(), stop.clone());
    let stream = std::thread::spawn(move || {
        h.run(&[
            "python3",
            &svc2,
            "stream",
            "127.0.0.1",
            "7000",
            stop2.to_str().expect("utf-8"),
        ])
        .unwrap_or_else(|e| e.to_string())
    });
    std::thread::sleep(Duration::from_millis(800));
    let extra = json!({"name": "extra", "port": 7100, "remote": "nginx:80"});
    let mut via_server = extra.clone();
    via_server["peer"] = "server".into();
    for (node, body) in [("client", &via_server), ("server", &extra)] {
        let r = d.api(node).post("/v1/pipes", body);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(d.fetch("client", "http://127.0.0.1:7100/"), PAGE);
    std::thread::sleep(Duration::from_millis(300));
    for node in ["client", "server"] {
        let r = d.api(node).delete("/v1/pipes/extra");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = d.api("client").delete("/v1/pipes/nginx");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(3), "the nginx pipe to close", || {
        client
            .curl("http://127.0.0.1:8080/", "1")
            .is_none()
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&stop, "").expect("stop");
    let result = stream.join().expect("stream thread");
    assert!(result.starts_with("ok "), "the echo stream broke: {result}");
    let bytes: u64 = result
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        bytes > 100_000,
        "the stream moved data throughout: {result}"
    );
    let metrics = d.api("client").get("/metrics").body;
    assert!(
        metrics.contains("kawaii_pipe_bytes_total{pipe=\"sink\",direction=\"in\"}"),
        "{metrics}"
    );
}

#[test]
fn minimal_demo_from_native_toml() {
    let mut d = demo("pipeminn", "minimal", Flavor::Native);
    assert_eq!(d.fetch("client", "http://client:8080/"), PAGE);
}

#[test]
fn reverse_demo_from_cloud_gateway_files() {
    let mut d = demo("piperev", "reverse", Flavor::CloudGateway);
    assert_eq!(d.fetch("client-legacy", "http://client-legacy:8080/"), PAGE);
    // The way through: the server's pipe dials client-cloudnative's VPN address.
    let cn = kawaii_model::dropin::cloud_gateway_address(CLIENT_PUB);
    let pipe = wait_for(Duration::from_secs(6), "the server's pipe status", || {
        let st = d.api("server").status();
        let p = st["details"]["pipes"][0].clone();
        (p["connections"].as_u64()? > 0).then_some(p)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pipe["target"], format!("{cn}:8080"), "{pipe}");
}

#[test]
fn reverse_demo_from_native_toml() {
    let mut d = demo("piperevn", "reverse", Flavor::Native);
    assert_eq!(d.fetch("client-legacy", "http://client-legacy:8080/"), PAGE);
}
