//! Network-namespace topologies for end-to-end tests and the lab: hosts (namespaces), switches
//! (a namespace holding a bridge), veth links created directly between namespaces, addresses,
//! routes, commands and long-lived processes inside a host.
//!
//! Nothing is ever attached to the root namespace: veth pairs are created inside one namespace
//! with their peer placed straight into the other. Names carry a per-topology prefix so tests run
//! in parallel. Dropping a [`Topology`] kills the processes it started (by pid) and deletes its
//! namespaces, also when the test panics.
//!
//! The one harness of the workspace's end-to-end tests: [`serve`] runs `kawaii serve` in a host,
//! [`api`] calls its API, [`wg`] drives WireGuard peers (our `kawaii-wgdev` and wireguard-go),
//! [`golden`] checks rendered files, [`keys`] makes WireGuard keys, [`ping`] measures loss.

pub mod api;
pub mod configs;
pub mod etcd;
pub mod golden;
pub mod keys;
pub mod lab;
pub mod office;
pub mod ping;
pub mod serve;
pub mod services;
pub mod three_zones;
pub mod tls;
pub mod webdriver;
pub mod wg;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("cannot run `{cmd}`: {error}")]
    Spawn { cmd: String, error: std::io::Error },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

pub type Result<T> = std::result::Result<T, KitError>;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A host: one network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The namespace name (`ip netns` name).
    pub ns: String,
    /// The short name given by the caller (`gw`, `vm1`).
    pub name: String,
}

impl Host {
    /// `ip netns exec NS <args>` as a Command, ready to spawn.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]);
        c.args(args);
        c
    }

    /// Runs a command inside the host and waits for it.
    pub fn exec<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Output> {
        let cmd = describe(args);
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| KitError::Spawn { cmd, error })
    }

    /// Runs a command inside the host; fails unless it exits 0. Returns stdout.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String> {
        let out = self.exec(args)?;
        if !out.status.success() {
            return Err(KitError::Command {
                cmd: format!("[{}] {}", self.name, describe(args)),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string()
                    + &String::from_utf8_lossy(&out.stdout),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `sh -c SCRIPT` inside the host.
    pub fn sh(&self, script: &str) -> Result<String> {
        self.run(&["sh", "-c", script])
    }

    /// Runs a command inside the host with `input` on its stdin; fails unless it exits 0.
    pub fn run_input<S: AsRef<std::ffi::OsStr>>(&self, args: &[S], input: &str) -> Result<String> {
        output(self.command(args), Some(input))
    }

    /// Runs a command inside the host and in the mount namespace of process `pid` (one started
    /// with a private `/run/wireguard`, see [`serve`] and [`wg::WireguardGo`]).
    pub fn run_in_mounts_of(&self, pid: u32, args: &[&str]) -> Result<String> {
        let pid = pid.to_string();
        let mut full = vec!["nsenter", "-t", &pid, "-m"];
        full.extend_from_slice(args);
        self.run(&full)
    }

    /// `ip addr add CIDR dev IFNAME`.
    pub fn addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        self.run(&["ip", "addr", "add", cidr, "dev", ifname])
            .map(drop)
    }

    /// `ip route add default via GATEWAY`.
    pub fn default_via(&self, gateway: &str) -> Result<()> {
        self.run(&["ip", "route", "add", "default", "via", gateway])
            .map(drop)
    }

    /// `cidr` (IPv6) on `ifname`, usable at once (no duplicate address detection).
    pub fn addr6(&self, ifname: &str, cidr: &str) -> Result<()> {
        self.run(&["ip", "addr", "add", cidr, "dev", ifname, "nodad"])
            .map(drop)
    }

    /// An IPv6 route to `dest` (a prefix or `default`) via `gateway`.
    pub fn route6(&self, dest: &str, gateway: &str) -> Result<()> {
        self.run(&["ip", "-6", "route", "add", dest, "via", gateway])
            .map(drop)
    }

    /// IPv4 only: no IPv6 chatter (router solicitations, MLD) on this host's links.
    pub fn ipv4_only(&self) -> Result<()> {
        self.run(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])
        .map(drop)
    }

    /// `curl -s -m TIMEOUT URL` from the host: the body on success, None on any failure.
    pub fn curl(&self, url: &str, timeout: &str) -> Option<String> {
        let out = self.exec(&["curl", "-s", "-m", timeout, url]).ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// One ping to `ip` answered within a second.
    pub fn pings(&self, ip: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "1", ip])
            .is_ok_and(|o| o.status.success())
    }
}

fn describe<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn ip(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    output(cmd, None).map(drop)
}

/// Runs `cmd` to its end, with `input` (if any) on its stdin; fails unless it exits 0 (the
/// error carries its stderr and stdout). Returns its stdout.
pub fn output(mut cmd: Command, input: Option<&str>) -> Result<String> {
    let what = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let spawn = |error| KitError::Spawn {
        cmd: what.clone(),
        error,
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn)?;
    // No input: stdin closes at once (end of file).
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.unwrap_or_default().as_bytes())
            .map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(KitError::Command {
            cmd: what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string()
                + &String::from_utf8_lossy(&out.stdout),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A long-lived process started inside a host; its output goes to a log file.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// The process's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Sends a signal (by pid, to this process only).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }
    /// SIGTERM, then SIGKILL after `grace`; reaps it.
    pub fn stop(&mut self, grace: Duration) {
        if !self.alive() {
            return;
        }
        self.signal("TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Waits up to `limit` for it to exit; true if it did (reaped).
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if !self.alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    /// Waits up to `timeout` for a line of its output to be exactly `line` (a readiness mark such
    /// as `ready`); the error carries the output so far.
    pub fn wait_line(&self, line: &str, timeout: Duration) -> Result<()> {
        wait_for(timeout, &format!("{} to print {line:?}", self.name), || {
            self.output().lines().any(|l| l == line).then_some(())
        })
        .map_err(|_| {
            let what = format!(
                "{} to print {line:?} (its output: {:?})",
                self.name,
                self.output()
            );
            KitError::Timeout(timeout, what)
        })
    }
    /// Whether it exited with status 0 (false while it runs).
    pub fn succeeded(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(s)) if s.success())
    }
    /// SIGKILL now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A set of namespaces and processes that belong together; cleaned up on drop.
#[derive(Debug)]
pub struct Topology {
    pub prefix: String,
    hosts: BTreeMap<String, Host>,
    procs: Vec<Proc>,
    dir: PathBuf,
    keep: bool,
}

impl Topology {
    /// A new topology; `tag` (a few letters) makes its names recognisable.
    pub fn new(tag: &str) -> Result<Topology> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("kt-{tag}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).map_err(|error| KitError::Spawn {
            cmd: format!("mkdir {}", dir.display()),
            error,
        })?;
        Ok(Topology {
            prefix,
            hosts: BTreeMap::new(),
            procs: Vec::new(),
            dir,
            keep: false,
        })
    }

    /// A topology with a fixed prefix that outlives this process (the lab).
    pub fn persistent(prefix: &str, dir: &Path) -> Result<Topology> {
        std::fs::create_dir_all(dir).map_err(|error| KitError::Spawn {
            cmd: format!("mkdir {}", dir.display()),
            error,
        })?;
        Ok(Topology {
            prefix: prefix.to_string(),
            hosts: BTreeMap::new(),
            procs: Vec::new(),
            dir: dir.to_path_buf(),
            keep: true,
        })
    }

    /// Scratch directory for logs and files of this topology.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `text` to `<dir>/<name>` (directories created) and returns the path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        let err = |error| KitError::Spawn {
            cmd: format!("write {}", path.display()),
            error,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::write(&path, text).map_err(err)?;
        Ok(path)
    }

    /// The test services script ([`lab::SVC_PY`]) in this topology's directory, written on first
    /// use: `python3 <svc> http|tcp-echo|udp-echo|digest|load|stream|scan ...`.
    pub fn svc(&self) -> Result<String> {
        let path = self.dir.join("svc.py");
        if !path.exists() {
            self.write("svc.py", lab::SVC_PY)?;
        }
        Ok(path.to_string_lossy().into_owned())
    }

    /// Creates a host (namespace) with loopback up.
    pub fn host(&mut self, name: &str) -> Result<Host> {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns])?;
        let host = Host {
            ns,
            name: name.to_string(),
        };
        self.hosts.insert(name.to_string(), host.clone());
        host.run(&["ip", "link", "set", "lo", "up"])?;
        // Namespaces start with forwarding off; hosts are not routers unless told.
        Ok(host)
    }

    pub fn get(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    /// Names that resolve inside `host` (one `IP name...` per line): written to
    /// `/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over `/etc/hosts` for the commands
    /// it starts afterwards. Removed with the namespace.
    pub fn hosts_file(&self, host: &Host, text: &str) -> Result<()> {
        let dir = Path::new("/etc/netns").join(&host.ns);
        let err = |error| KitError::Spawn {
            cmd: format!("write {}/hosts", dir.display()),
            error,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        std::fs::write(dir.join("hosts"), format!("127.0.0.1 localhost\n{text}\n")).map_err(err)
    }

    /// A switch: a host holding bridge `br0`. Connect hosts to it with [`Topology::plug`].
    pub fn switch(&mut self, name: &str) -> Result<Host> {
        let h = self.host(name)?;
        h.run(&["ip", "link", "add", "br0", "type", "bridge"])?;
        h.run(&["ip", "link", "set", "br0", "up"])?;
        Ok(h)
    }

    /// A veth pair between two hosts, named `a_if` in `a` and `b_if` in `b`, both up.
    pub fn link(&mut self, a: &Host, a_if: &str, b: &Host, b_if: &str) -> Result<()> {
        a.run(&[
            "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.ns,
        ])?;
        a.run(&["ip", "link", "set", a_if, "up"])?;
        b.run(&["ip", "link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Connects `host` to `switch` with interface `ifname` on the host side.
    pub fn plug(&mut self, host: &Host, ifname: &str, switch: &Host) -> Result<()> {
        let port = format!("p-{}", &host.name.chars().take(10).collect::<String>());
        self.link(switch, &port, host, ifname)?;
        switch.run(&["ip", "link", "set", &port, "master", "br0"])?;
        Ok(())
    }

    /// Starts a long-lived process inside `host`; output to `<dir>/<name>.log`.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(
        &mut self,
        host: &Host,
        name: &str,
        args: &[S],
    ) -> Result<usize> {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|error| KitError::Spawn {
            cmd: describe(args),
            error,
        })?;
        let err = file.try_clone().map_err(|error| KitError::Spawn {
            cmd: describe(args),
            error,
        })?;
        let child = host
            .command(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|error| KitError::Spawn {
                cmd: describe(args),
                error,
            })?;
        self.procs.push(Proc {
            name: name.to_string(),
            log,
            child,
        });
        Ok(self.procs.len() - 1)
    }

    pub fn proc(&mut self, index: usize) -> &mut Proc {
        &mut self.procs[index]
    }

    /// Pids of the processes this topology started and that still run.
    pub fn pids(&mut self) -> Vec<u32> {
        self.procs
            .iter_mut()
            .filter_map(|p| p.alive().then(|| p.pid()))
            .collect()
    }

    /// Whether this topology outlives this process (the lab).
    pub fn is_kept(&self) -> bool {
        self.keep
    }

    /// Stops following cleanup on drop (the lab keeps its namespaces after `lab up` exits).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Kills every process and deletes every namespace now.
    pub fn teardown(&mut self) {
        for p in &mut self.procs {
            p.stop(Duration::from_secs(2));
        }
        self.procs.clear();
        for h in std::mem::take(&mut self.hosts).into_values() {
            destroy_namespace(&h.ns);
        }
    }
}

/// Kills whatever still runs inside a namespace (only processes started there by us) and
/// deletes it.
pub fn destroy_namespace(ns: &str) {
    for _ in 0..3 {
        let pids = Command::new("ip").args(["netns", "pids", ns]).output();
        let pids = pids
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if pids.trim().is_empty() {
            break;
        }
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = ip(&["netns", "del", ns]);
    // Per-namespace files (`hosts_file`); only ever our own namespaces' directories.
    if !ns.is_empty() && !ns.contains('/') {
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if !self.keep {
            self.teardown();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls until `f` returns Some, or fails after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(KitError::Timeout(timeout, what.to_string()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a TCP port accepts connections from inside `host`.
pub fn wait_tcp(host: &Host, addr: SocketAddr, timeout: Duration) -> Result<()> {
    let script = format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port());
    wait_for(timeout, &format!("tcp {addr} in {}", host.name), || {
        host.command(&["bash", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    })
    .map(|_| ())
}

/// True when this process may build namespaces (root with `ip netns`).
pub fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    root && Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`can_run`], and every tool in `tools` is on the PATH (the failure names the missing ones).
pub fn can_run_with(tools: &[&str]) -> std::result::Result<(), String> {
    if !can_run() {
        return Err("end-to-end tests need root and iproute2".into());
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("end-to-end tests need {missing:?}"))
    }
}

/// Reads a whole small file, or an empty string.
pub fn slurp(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two hosts on a switch ping each other; everything is gone after drop.
    #[test]
    fn builds_and_cleans_up() {
        assert!(can_run(), "end-to-end tests need root and iproute2");
        let prefix;
        {
            let mut t = Topology::new("kit").expect("topology");
            prefix = t.prefix.clone();
            let sw = t.switch("sw").expect("switch");
            let a = t.host("a").expect("a");
            let b = t.host("b").expect("b");
            t.plug(&a, "eth0", &sw).expect("plug a");
            t.plug(&b, "eth0", &sw).expect("plug b");
            a.run(&["ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"])
                .expect("addr");
            b.run(&["ip", "addr", "add", "192.0.2.2/24", "dev", "eth0"])
                .expect("addr");
            a.run(&["ping", "-c", "1", "-W", "2", "192.0.2.2"])
                .expect("ping");
            let i = t.spawn(&b, "sleeper", &["sleep", "60"]).expect("spawn");
            assert!(t.proc(i).alive());
            let listed = Command::new("ip")
                .args(["netns", "list"])
                .output()
                .expect("ip");
            assert!(String::from_utf8_lossy(&listed.stdout).contains(&prefix));
        }
        let listed = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip");
        assert!(
            !String::from_utf8_lossy(&listed.stdout).contains(&prefix),
            "namespaces left behind"
        );
    }
}
