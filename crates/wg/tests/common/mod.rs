//! Test harness: uniquely named network namespaces (never the root one), veth links between
//! them, and child processes we started, all torn down in `Drop` even when a test panics.
//!
//! UAPI sockets live in `/run/wireguard`, shared by every namespace: each test uses interface
//! names containing its pid and a tag, so parallel tests and stale runs never collide.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether this machine can run the namespace tests (root, /dev/net/tun, the tools).
pub fn can_run(tools: &[&str]) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let missing: Vec<&&str> = tools
        .iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    let tun = std::path::Path::new("/dev/net/tun").exists();
    if !(root && tun && missing.is_empty()) {
        eprintln!("SKIP: needs root, /dev/net/tun and {tools:?} (missing {missing:?})");
        return false;
    }
    true
}

/// A short unique tag for names: the pid, plus the test's own letter.
pub fn uniq(tag: &str) -> String {
    format!("{}{tag}", std::process::id())
}

/// Runs a command, panicking with its stderr if it fails; returns stdout.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawning {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace named `wgt-<pid><tag>`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("wgt-{}", uniq(tag));
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NS args...`, must succeed; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip"];
        full.extend_from_slice(args);
        self.exec(&full)
    }

    /// A command to run inside this namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Creates a veth pair from inside `self` to `peer` (never through the root namespace)
    /// and addresses both ends.
    pub fn veth_to(&self, peer: &Netns, here: (&str, &str), there: (&str, &str)) {
        self.ip(&[
            "link", "add", here.0, "type", "veth", "peer", "name", there.0, "netns", &peer.name,
        ]);
        self.ip(&["addr", "add", here.1, "dev", here.0]);
        self.ip(&["link", "set", here.0, "up"]);
        peer.ip(&["addr", "add", there.1, "dev", there.0]);
        peer.ip(&["link", "set", there.0, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process we started; stopped by its pid on drop (SIGTERM, then SIGKILL).
pub struct Proc {
    pub child: Child,
    /// Files to remove after the process ended (e.g. a UAPI socket left by SIGKILL).
    pub leftovers: Vec<PathBuf>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        Self {
            child,
            leftovers: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for exit up to `limit`; true if it exited.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for exit and returns (success, stdout).
    pub fn finish(&mut self, limit: Duration) -> (bool, String) {
        let exited = self.wait_exit(limit);
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        }
        let ok = exited
            && self
                .child
                .try_wait()
                .ok()
                .flatten()
                .is_some_and(|s| s.success());
        (ok, out)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            if !self.wait_exit(Duration::from_secs(2)) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for path in &self.leftovers {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The `kawaii-wgdev` helper binary (cargo builds it for the integration tests).
pub fn wgdev_path() -> PathBuf {
    if let Some(p) = std::env::var_os("WGDEV_BIN") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_BIN_EXE_kawaii-wgdev"))
}

/// Our device (the `wgdev` example) running in a namespace, driven over stdin/stdout.
pub struct WgDev {
    pub ifname: String,
    pub public_key: String,
    pub config: PathBuf,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    proc: Proc,
}

impl WgDev {
    /// Writes `config` to a temp file and starts the device; waits for `ready`.
    pub fn start(ns: &Netns, ifname: &str, config: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}-{ifname}.conf", ns.name));
        std::fs::write(&path, config).expect("writing device config");
        let mut cmd = ns.command(&[
            wgdev_path().to_str().expect("utf-8 path"),
            path.to_str().expect("utf-8 path"),
        ]);
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning wgdev (built by cargo test as an example)");
        let mut proc = Proc {
            child,
            leftovers: vec![format!("/run/wireguard/{ifname}.sock").into()],
        };
        let stdin = proc.child.stdin.take();
        let stdout = BufReader::new(proc.child.stdout.take().expect("piped stdout"));
        let mut dev = Self {
            ifname: ifname.to_owned(),
            public_key: String::new(),
            config: path,
            stdin,
            stdout,
            proc,
        };
        let line = dev.read_line();
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("ready"), "wgdev said {line:?}");
        dev.public_key = words.next().expect("public key after ready").to_owned();
        dev
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading wgdev stdout");
        line
    }

    fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{cmd}").expect("writing to wgdev");
        stdin.flush().expect("flushing wgdev stdin");
    }

    /// Rewrites the config file and tells the device to converge to its peers.
    pub fn reload(&mut self, config: &str) {
        std::fs::write(&self.config, config).expect("writing device config");
        self.send("reload");
        let reply = self.read_line();
        assert_eq!(reply.trim(), "ok", "reload failed: {reply}");
    }

    /// `(public key, rx, tx, secs since handshake)` per peer, from `peer_stats()`.
    pub fn stats(&mut self) -> Vec<(String, u64, u64, Option<u64>)> {
        self.send("stats");
        let mut out = Vec::new();
        loop {
            let line = self.read_line();
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.first() == Some(&"end") || w.is_empty() {
                return out;
            }
            out.push((
                w[0].to_owned(),
                w[1].parse().expect("rx"),
                w[2].parse().expect("tx"),
                w[3].parse().ok(),
            ));
        }
    }

    /// Closes stdin (clean shutdown) and waits for the process to exit.
    pub fn stop(&mut self) -> bool {
        self.stdin = None;
        self.proc.wait_exit(Duration::from_secs(5))
    }
}

impl Drop for WgDev {
    fn drop(&mut self) {
        self.stdin = None;
        self.proc.wait_exit(Duration::from_secs(2));
        let _ = std::fs::remove_file(&self.config);
    }
}

/// `wg genkey` and its public key.
pub fn keypair() -> (String, String) {
    let private = run(&["wg", "genkey"]).trim().to_owned();
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wg pubkey");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(private.as_bytes())
        .expect("writing key to wg pubkey");
    let out = child.wait_with_output().expect("wg pubkey output");
    (
        private,
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// Polls `f` every 50 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
