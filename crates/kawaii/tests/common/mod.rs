//! Helpers for end-to-end tests: a kawaii daemon in its own namespace, and HTTP through curl
//! run inside that namespace (so every request stays on the namespace's own loopback).
#![allow(dead_code)]

use kawaii_testkit::{Host, Topology, wait_for};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ADMIN: &str = "admin-token-for-tests";
pub const VIEWER: &str = "viewer-token-for-tests";
pub const OPERATOR: &str = "operator-token-for-tests";
pub const PSK: &str = "psk-that-must-never-leak-42";

pub fn sha(token: &str) -> String {
    use std::fmt::Write;
    let digest = kawaii_api::hash_token(token);
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kawaii")
}

/// Timestamps (`ping -D`: seconds since the Unix epoch) of the echo replies in ping's output.
pub fn reply_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// `kawaii wg pubkey` of a private key.
pub fn pubkey_of(private: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(bin())
        .args(["wg", "pubkey"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kawaii wg pubkey");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(private.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kawaii wg pubkey");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A WireGuard key pair from the kawaii CLI: (private, public).
pub fn keypair() -> (String, String) {
    let out = std::process::Command::new(bin())
        .args(["wg", "genkey"])
        .output()
        .expect("kawaii wg genkey");
    let private = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let public = pubkey_of(&private);
    (private, public)
}

/// Writes a secret file with `mode` (0600 for keys kawaii accepts).
pub fn write_secret(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{text}\n")).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A config with three tokens and an IPsec connection carrying a secret.
pub fn base_config() -> String {
    format!(
        r#"[gateway]
name = "acme"
private_subnet = "10.1.0.0/24"

[api]
listen = "127.0.0.1:7780"
tokens = [
  {{ name = "ops", role = "admin", sha256 = "{}" }},
  {{ name = "dev", role = "operator", sha256 = "{}" }},
  {{ name = "ro", role = "viewer", sha256 = "{}" }},
]

[[ingress_rules]]
ports = "22"

[[ipsec]]
name = "ACME Office"
remote_peer = "198.51.100.8"
remote_subnet = "172.16.1.0/24"
pre_shared_key = "{PSK}"
phase1_dh_group_number = 14
phase1_integrity_algorithm = "SHA512"
phase1_encryption_algorithm = "AES256"
phase2_dh_group_number = 14
phase2_integrity_algorithm = "SHA512"
phase2_encryption_algorithm = "AES256"
"#,
        sha(ADMIN),
        sha(OPERATOR),
        sha(VIEWER)
    )
}

pub struct Node {
    pub topo: Topology,
    pub host: Host,
    pub config: PathBuf,
    pub state: PathBuf,
    pub proc: Option<usize>,
}

pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn etag(&self) -> Option<u64> {
        self.headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("etag:")
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
            .and_then(|v| v.parse().ok())
    }
}

impl Node {
    /// A namespace with a config file and a state directory; the daemon is not started yet.
    pub fn new(tag: &str, config: &str) -> Node {
        assert!(
            kawaii_testkit::can_run(),
            "end-to-end tests need root and iproute2"
        );
        let mut topo = Topology::new(tag).expect("topology");
        let host = topo.host("gw").expect("host");
        let cfg = topo.dir().join("gateway.toml");
        std::fs::write(&cfg, config).expect("write config");
        let state = topo.dir().join("state");
        Node {
            topo,
            host,
            config: cfg,
            state,
            proc: None,
        }
    }

    pub fn start(&mut self) {
        let args = [
            bin(),
            "serve",
            "--config",
            path(&self.config),
            "--state",
            path(&self.state),
        ];
        let i = self
            .topo
            .spawn(&self.host, "kawaii", &args)
            .expect("spawn kawaii");
        self.proc = Some(i);
        let host = self.host.clone();
        wait_for(Duration::from_secs(10), "kawaii API", || {
            let r = curl(&host, "GET", "/readyz", None, None, &[]);
            (r.status == 200).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }

    pub fn log(&mut self) -> String {
        self.proc
            .map(|i| self.topo.proc(i).output())
            .unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(i) = self.proc.take() {
            self.topo.proc(i).kill();
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[&str],
    ) -> Reply {
        curl(&self.host, method, path, token, body, headers)
    }

    /// The kawaii CLI run inside the namespace.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec![bin()];
        full.extend_from_slice(args);
        self.host
            .command(&full)
            .env("KAWAII_TOKEN", ADMIN)
            .output()
            .expect("run kawaii")
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn curl(
    host: &Host,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[&str],
) -> Reply {
    let url = format!("http://127.0.0.1:7780{path}");
    let mut args: Vec<String> = vec![
        "curl".into(),
        "-sS".into(),
        "-i".into(),
        "-X".into(),
        method.into(),
        "--max-time".into(),
        "5".into(),
    ];
    if let Some(t) = token {
        args.push("-H".into());
        args.push(format!("Authorization: Bearer {t}"));
    }
    for h in headers {
        args.push("-H".into());
        args.push((*h).into());
    }
    if let Some(b) = body {
        args.push("-H".into());
        args.push("Content-Type: application/json".into());
        args.push("--data-binary".into());
        args.push(b.into());
    }
    args.push(url);
    let out = host.exec(&args).expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    }
}
