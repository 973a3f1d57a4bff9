//! etcd for end-to-end tests and the lab: each member in its own namespace on a management
//! switch, its data on tmpfs (`/dev/shm/<topology prefix>-<member>`), stopped by pid. Dropping
//! the [`Etcd`] removes the data directories; the [`Topology`] kills the processes and deletes
//! the namespaces.

use crate::{Host, KitError, Result, Topology, wait_for};
use std::path::PathBuf;
use std::time::Duration;

pub const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub host: Host,
    /// Its address on the management switch.
    pub ip: String,
    data: PathBuf,
    /// Index of its process in the topology (`None` while stopped).
    pub proc: Option<usize>,
}

/// An etcd cluster of one or more members.
#[derive(Debug)]
pub struct Etcd {
    pub members: Vec<Member>,
    cluster: String,
    token: String,
    /// A persistent topology (the lab): the data outlives this value; `kawaii lab down`
    /// removes [`Etcd::data_dirs`].
    keep: bool,
}

/// Starts `ips.len()` members, each in its own namespace plugged into `switch` (interface
/// `mgmt0`, address `IP/24`), and waits until the cluster answers.
pub fn start(t: &mut Topology, switch: &Host, ips: &[&str]) -> Result<Etcd> {
    let mut members = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("etcd{}", i + 1);
        let host = t.host(&name)?;
        t.plug(&host, "mgmt0", switch)?;
        host.run(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "mgmt0"])?;
        let data = PathBuf::from(format!("/dev/shm/{}-{name}", t.prefix));
        members.push(Member {
            name,
            host,
            ip: ip.to_string(),
            data,
            proc: None,
        });
    }
    let cluster = members
        .iter()
        .map(|m| format!("{}=http://{}:{PEER_PORT}", m.name, m.ip))
        .collect::<Vec<_>>()
        .join(",");
    let mut etcd = Etcd {
        members,
        cluster,
        token: t.prefix.clone(),
        keep: t.is_kept(),
    };
    for i in 0..etcd.members.len() {
        etcd.spawn(t, i)?;
    }
    etcd.wait_healthy(Duration::from_secs(20))?;
    Ok(etcd)
}

impl Etcd {
    /// `HOST:PORT,HOST:PORT...` for a kawaii `etcd://` URL.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}:{CLIENT_PORT}", m.ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The members' data directories.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.members.iter().map(|m| m.data.clone()).collect()
    }

    /// `etcd://ENDPOINTS/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "etcd://{}/{}",
            self.endpoints(),
            prefix.trim_start_matches('/')
        )
    }

    fn spawn(&mut self, t: &mut Topology, i: usize) -> Result<()> {
        let m = &self.members[i];
        std::fs::create_dir_all(&m.data).map_err(|error| KitError::Spawn {
            cmd: format!("mkdir {}", m.data.display()),
            error,
        })?;
        let client = format!("http://{}:{CLIENT_PORT}", m.ip);
        let peer = format!("http://{}:{PEER_PORT}", m.ip);
        let args = [
            "etcd".to_string(),
            "--name".into(),
            m.name.clone(),
            "--data-dir".into(),
            m.data.to_string_lossy().into_owned(),
            "--listen-client-urls".into(),
            format!("{client},http://127.0.0.1:{CLIENT_PORT}"),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            self.cluster.clone(),
            "--initial-cluster-token".into(),
            self.token.clone(),
            "--initial-cluster-state".into(),
            "new".into(),
            "--logger".into(),
            "zap".into(),
            "--log-level".into(),
            "warn".into(),
            "--quota-backend-bytes".into(),
            (256u64 << 20).to_string(),
        ];
        let host = m.host.clone();
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{}-{n}", m.name);
        let proc = t.spawn(&host, &name, &args)?;
        self.members[i].proc = Some(proc);
        Ok(())
    }

    /// Kills member `i` (SIGKILL, by pid); its data stays for [`Etcd::restart`].
    pub fn kill(&mut self, t: &mut Topology, i: usize) {
        if let Some(p) = self.members[i].proc.take() {
            t.proc(p).kill();
        }
    }

    /// Starts member `i` again on its data and waits until the cluster answers.
    pub fn restart(&mut self, t: &mut Topology, i: usize) -> Result<()> {
        self.kill(t, i);
        self.spawn(t, i)?;
        self.wait_healthy(Duration::from_secs(20))
    }

    /// Cuts (`false`) or restores (`true`) member `i`'s management link.
    pub fn link(&self, i: usize, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.members[i]
            .host
            .run(&["ip", "link", "set", "mgmt0", state])
            .map(|_| ())
    }

    /// `etcdctl ARGS` against member `i`'s local listener.
    pub fn ctl(&self, i: usize, args: &[&str]) -> Result<String> {
        let mut full = vec![
            "env",
            "ETCDCTL_API=3",
            "etcdctl",
            "--endpoints",
            "http://127.0.0.1:2379",
            "--command-timeout=3s",
        ];
        full.extend_from_slice(args);
        self.members[i].host.run(&full)
    }

    /// Waits until some running member reports itself healthy (the cluster has a leader).
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        wait_for(timeout, "etcd to become healthy", || {
            (0..self.members.len()).find_map(|i| {
                self.members[i].proc?;
                self.ctl(i, &["endpoint", "health"]).ok().map(|_| ())
            })
        })
    }

    /// The index of the current leader.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].proc.is_some()
                && self
                    .ctl(i, &["endpoint", "status", "-w", "json"])
                    .ok()
                    .and_then(|out| {
                        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
                        let st = &v[0]["Status"];
                        Some(st["leader"] == st["header"]["member_id"])
                    })
                    .unwrap_or(false)
        })
    }

    /// The cluster's current revision (as member `i` sees it).
    pub fn revision(&self, i: usize) -> Result<i64> {
        let out = self.ctl(i, &["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| KitError::Command {
            cmd: "etcdctl endpoint status".into(),
            stderr: e.to_string(),
        })?;
        v[0]["Status"]["header"]["revision"]
            .as_i64()
            .ok_or_else(|| KitError::Command {
                cmd: "etcdctl endpoint status".into(),
                stderr: format!("no revision in {out}"),
            })
    }

    /// Compacts the history up to the current revision (through member `i`).
    pub fn compact(&self, i: usize) -> Result<i64> {
        let rev = self.revision(i)?;
        self.ctl(i, &["compact", &rev.to_string(), "--physical"])?;
        Ok(rev)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for m in &self.members {
            // Only our own directories: /dev/shm/<topology prefix>-etcdN.
            if m.data.starts_with("/dev/shm") && m.data.to_string_lossy().contains("-etcd") {
                let _ = std::fs::remove_dir_all(&m.data);
            }
        }
    }
}
