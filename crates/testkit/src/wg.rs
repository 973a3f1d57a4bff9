//! WireGuard peers for tests: [`WgDev`], our device (the `kawaii-wgdev` binary, driven over
//! stdin/stdout), and [`WireguardGo`], the reference implementation configured with `wg`.
//!
//! wireguard-go keeps its UAPI socket in `/run/wireguard`, a directory every namespace shares:
//! each instance gets a private tmpfs there (in the mount namespace `ip netns exec` made for it),
//! and `wg` runs in that mount namespace, so two runs never meet.

use crate::{Host, KitError, Result, Topology, wait_for};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

fn io(cmd: String) -> impl FnOnce(std::io::Error) -> KitError {
    move |error| KitError::Spawn { cmd, error }
}

fn protocol(what: &str, line: &str) -> KitError {
    KitError::Command {
        cmd: format!("kawaii-wgdev {what}"),
        stderr: format!("unexpected answer {line:?}"),
    }
}

/// Writes a private key to a 0600 file.
fn key_file(path: &Path, key: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("write {}", path.display())))?;
    f.write_all(format!("{key}\n").as_bytes())
        .map_err(io(format!("write {}", path.display())))
}

/// Per-peer readings of a [`WgDev`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub public_key: String,
    pub rx: u64,
    pub tx: u64,
    /// Seconds since the last handshake.
    pub handshake_secs: Option<u64>,
}

/// Our device in a host: `kawaii-wgdev CONFIG` answers `ready <public key>`, then `reload` and
/// `stats` on stdin. Stopped by closing its stdin (then SIGKILL by pid) on drop.
#[derive(Debug)]
pub struct WgDev {
    pub ifname: String,
    pub public_key: String,
    pub config: PathBuf,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    child: Child,
}

impl WgDev {
    /// Writes `config` to `<dir>/<ifname>.conf` and starts `bin` on it in `host`; waits for
    /// `ready`.
    pub fn start(
        t: &Topology,
        host: &Host,
        bin: &Path,
        ifname: &str,
        config: &str,
    ) -> Result<WgDev> {
        let path = t.write(&format!("{ifname}.conf"), config)?;
        let cmd = format!("{} {}", bin.display(), path.display());
        let mut child = host
            .command(&[bin.as_os_str(), path.as_os_str()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io(cmd.clone()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(KitError::Command {
                cmd,
                stderr: "no stdin/stdout pipe".into(),
            });
        };
        let mut dev = WgDev {
            ifname: ifname.to_owned(),
            public_key: String::new(),
            config: path,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            child,
        };
        let line = dev.read_line()?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("ready"), Some(key)) => dev.public_key = key.to_owned(),
            _ => return Err(protocol("start", &line)),
        }
        Ok(dev)
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(io("read kawaii-wgdev stdout".into()))?;
        Ok(line)
    }

    fn send(&mut self, cmd: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| protocol(cmd, "stdin closed"))?;
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .map_err(io(format!("kawaii-wgdev {cmd}")))
    }

    /// Rewrites the config file and tells the device to converge to its peers.
    pub fn reload(&mut self, config: &str) -> Result<()> {
        std::fs::write(&self.config, config)
            .map_err(io(format!("write {}", self.config.display())))?;
        self.send("reload")?;
        let reply = self.read_line()?;
        if reply.trim() == "ok" {
            Ok(())
        } else {
            Err(protocol("reload", &reply))
        }
    }

    /// The device's per-peer readings (`peer_stats()`).
    pub fn stats(&mut self) -> Result<Vec<PeerStats>> {
        self.send("stats")?;
        let mut out = Vec::new();
        loop {
            let line = self.read_line()?;
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                [] | ["end", ..] => return Ok(out),
                [key, rx, tx, hs, ..] => out.push(PeerStats {
                    public_key: (*key).to_owned(),
                    rx: rx.parse().map_err(|_| protocol("stats", &line))?,
                    tx: tx.parse().map_err(|_| protocol("stats", &line))?,
                    handshake_secs: hs.parse().ok(),
                }),
                _ => return Err(protocol("stats", &line)),
            }
        }
    }

    /// Closes stdin (a clean shutdown) and waits up to 5 s for the exit; true if it exited.
    pub fn stop(&mut self) -> bool {
        self.stdin = None;
        self.wait_exit(Duration::from_secs(5))
    }

    fn wait_exit(&mut self, limit: Duration) -> bool {
        wait_for(limit, "kawaii-wgdev to exit", || {
            matches!(self.child.try_wait(), Ok(Some(_))).then_some(())
        })
        .is_ok()
    }
}

impl Drop for WgDev {
    fn drop(&mut self) {
        self.stdin = None;
        if !self.wait_exit(Duration::from_secs(2)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A killed device leaves its UAPI socket behind (ours: named after the interface).
        let _ = std::fs::remove_file(format!("/run/wireguard/{}.sock", self.ifname));
    }
}

/// wireguard-go (`-f`, a child of the topology) as interface `ifname` in a host, with a private
/// `/run/wireguard`.
#[derive(Debug, Clone)]
pub struct WireguardGo {
    pub host: Host,
    pub ifname: String,
    /// Index of the process in the topology.
    pub proc: usize,
    pid: u32,
    dir: PathBuf,
}

impl WireguardGo {
    /// Starts it and waits for its interface and UAPI socket.
    pub fn start(t: &mut Topology, host: &Host, ifname: &str) -> Result<WireguardGo> {
        let proc = t.spawn(
            host,
            &format!("wireguard-go-{ifname}"),
            &[
                "sh",
                "-c",
                "mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 kawaii-wg-go /run/wireguard && exec wireguard-go -f \"$0\"",
                ifname,
            ],
        )?;
        let go = WireguardGo {
            host: host.clone(),
            ifname: ifname.to_owned(),
            proc,
            pid: t.proc(proc).pid(),
            dir: t.dir().to_path_buf(),
        };
        let sock = format!("/run/wireguard/{ifname}.sock");
        let sys = format!("/sys/class/net/{ifname}");
        wait_for(
            Duration::from_secs(5),
            "wireguard-go's interface and socket",
            || {
                go.host
                    .run_in_mounts_of(go.pid, &["test", "-S", &sock, "-a", "-e", &sys])
                    .ok()
            },
        )
        .map_err(|e| KitError::Command {
            cmd: format!("wireguard-go -f {ifname}"),
            stderr: format!("{e}\n{}", t.proc(proc).output()),
        })?;
        Ok(go)
    }

    /// `wg ARGS` on this instance.
    pub fn wg(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["wg"];
        full.extend_from_slice(args);
        self.host.run_in_mounts_of(self.pid, &full)
    }

    /// Sets the private key (through a 0600 file, as `wg` wants it).
    pub fn set_private_key(&self, key: &str) -> Result<()> {
        let file = self.dir.join(format!("{}.key", self.ifname));
        key_file(&file, key)?;
        let set = self.wg(&["set", &self.ifname, "private-key", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(&file);
        set.map(drop)
    }

    /// Configured from a `kawaii peer showconf` text only, the way Kilo's guide does it:
    /// `wg setconf` with the file minus its `Address` line, the peer's own private key, then
    /// the addresses and a route for each other `AllowedIPs` entry, of either family (an
    /// IPv6 `Endpoint` is `[addr]:port`).
    pub fn from_showconf(
        t: &mut Topology,
        host: &Host,
        ifname: &str,
        showconf: &str,
        private_key: &str,
    ) -> Result<WireguardGo> {
        let go = WireguardGo::start(t, host, ifname)?;
        let field = |name: &str| {
            showconf
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split(", ").map(String::from).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let address = field("Address = ");
        let allowed = field("AllowedIPs = ");
        let stripped: String = showconf
            .lines()
            .filter(|l| !l.starts_with("Address = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let conf = t.write(&format!("{ifname}.conf"), &stripped)?;
        go.wg(&["setconf", ifname, &conf.to_string_lossy()])?;
        go.set_private_key(private_key)?;
        if address.iter().any(|a| a.contains(':')) {
            // A host that is IPv4-only outside still speaks IPv6 inside the tunnel.
            let on = format!("net.ipv6.conf.{ifname}.disable_ipv6=0");
            host.run(&["sysctl", "-qw", &on])?;
        }
        for a in &address {
            let mut args = vec!["ip", "addr", "add", a.as_str(), "dev", ifname];
            if a.contains(':') {
                args.push("nodad");
            }
            host.run(&args)?;
        }
        host.run(&["ip", "link", "set", ifname, "up"])?;
        // A full tunnel (0.0.0.0/0, ::/0) must not swallow the way to the endpoint itself: pin
        // it to the current route first (what wg-quick does with policy routing).
        let endpoint = showconf
            .lines()
            .find_map(|l| l.strip_prefix("Endpoint = "))
            .and_then(|e| e.rsplit_once(':'))
            .map(|(ip, _)| ip.trim_start_matches('[').trim_end_matches(']').to_string());
        let everything = |ep: &String| {
            if ep.contains(':') {
                "::/0"
            } else {
                "0.0.0.0/0"
            }
        };
        if let Some(ep) = endpoint.filter(|ep| allowed.iter().any(|n| n == everything(ep))) {
            let via = host.run(&["ip", "-o", "route", "get", &ep])?;
            let words: Vec<&str> = via.split_whitespace().collect();
            let after = |k: &str| {
                words
                    .iter()
                    .position(|w| *w == k)
                    .and_then(|i| words.get(i + 1))
            };
            if let (Some(gw), Some(dev)) = (after("via"), after("dev")) {
                let ep = format!("{ep}/{}", if ep.contains(':') { 128 } else { 32 });
                host.run(&["ip", "route", "replace", &ep, "via", gw, "dev", dev])?;
            }
        }
        for net in allowed.iter().filter(|n| !address.contains(n)) {
            let (family, net) = match net.as_str() {
                "0.0.0.0/0" => ("-4", "default"),
                "::/0" => ("-6", "default"),
                n if n.contains(':') => ("-6", n),
                n => ("-4", n),
            };
            host.run(&["ip", family, "route", "replace", net, "dev", ifname])?;
        }
        Ok(go)
    }
}

/// The path of a binary cargo built for this test (`env!("CARGO_BIN_EXE_...")`), unless the
/// environment variable `var` names another.
pub fn bin_path(var: &str, built: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(built), PathBuf::from)
}

/// Two hosts joined by a veth pair, `a` (192.0.2.1 on `va`) running our device and `b`
/// (192.0.2.2 on `vb`) running wireguard-go, each the other's only peer on port 51820:
/// 10.8.0.1 and 10.8.0.2 (and, with `ipv6`, fd00:8::1 and fd00:8::2) inside the tunnel.
#[derive(Debug)]
pub struct GoPair {
    pub a: Host,
    pub b: Host,
    pub dev: WgDev,
    pub go: WireguardGo,
    /// The public keys `wg pubkey` gives for `a`'s and `b`'s private keys.
    pub public_a: String,
    pub public_b: String,
}

impl GoPair {
    /// Builds it in `t`; `wgdev` is the `kawaii-wgdev` binary.
    pub fn build(t: &mut Topology, wgdev: &Path, ipv6: bool) -> Result<GoPair> {
        let a = t.host("a")?;
        let b = t.host("b")?;
        t.link(&a, "va", &b, "vb")?;
        a.addr("va", "192.0.2.1/24")?;
        b.addr("vb", "192.0.2.2/24")?;
        let (key_a, public_a) = crate::keys::keypair()?;
        let (key_b, pub_b) = crate::keys::keypair()?;
        let pid = std::process::id();
        let (if_a, if_b) = (format!("kw{pid}a"), format!("kg{pid}b"));
        let (ips_a, ips_b) = if ipv6 {
            ("10.8.0.1/32,fd00:8::1/128", "10.8.0.2/32, fd00:8::2/128")
        } else {
            ("10.8.0.1/32", "10.8.0.2/32")
        };
        let dev = WgDev::start(
            t,
            &a,
            wgdev,
            &if_a,
            &format!(
                "[Interface]\nName = {if_a}\nListenPort = 51820\nPrivateKey = {key_a}\n\
                 [Peer]\nPublicKey = {pub_b}\nAllowedIPs = {ips_b}\nEndpoint = 192.0.2.2:51820\n"
            ),
        )?;
        let go = WireguardGo::start(t, &b, &if_b)?;
        go.set_private_key(&key_b)?;
        go.wg(&[
            "set",
            &if_b,
            "listen-port",
            "51820",
            "peer",
            &dev.public_key,
            "allowed-ips",
            ips_a,
            "endpoint",
            "192.0.2.1:51820",
        ])?;
        let mut inside = vec![(&a, &if_a, "10.8.0.1/24"), (&b, &if_b, "10.8.0.2/24")];
        if ipv6 {
            inside.extend([(&a, &if_a, "fd00:8::1/64"), (&b, &if_b, "fd00:8::2/64")]);
        }
        for (h, ifname, cidr) in inside {
            let mut args = vec!["ip", "addr", "add", cidr, "dev", ifname.as_str()];
            if cidr.contains(':') {
                args.push("nodad");
            }
            h.run(&args)?;
        }
        b.run(&["ip", "link", "set", &if_b, "up"])?;
        Ok(GoPair {
            a,
            b,
            dev,
            go,
            public_a,
            public_b: pub_b,
        })
    }
}
