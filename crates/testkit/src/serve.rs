//! `kawaii serve` as a test fixture: the config written into the topology's directory, the
//! daemon spawned inside a host with its own state directory, stopped (by pid) and reaped when
//! the topology drops. The binary is passed in (`env!("CARGO_BIN_EXE_kawaii")` in the tests):
//! the testkit does not depend on the kawaii crate.
//!
//! With `private_run` the daemon gets a private tmpfs on `/run/wireguard` (the directory is shared
//! by every namespace, so two nodes' `kawaii-wg0.sock` would collide); `ip netns exec` already
//! gives each command its own mount namespace, so the mount is seen only by the daemon, and
//! [`Serve::run_in_mounts`] runs a command (e.g. `wg show`) where the daemon sees it.

use crate::api::Api;
use crate::{Host, Result, Topology, wait_for};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to start a daemon.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The kawaii binary.
    pub kawaii: PathBuf,
    /// `--zone` (None: the config has one zone or none).
    pub zone: Option<String>,
    /// Extra environment (e.g. `KAWAII_LOG`).
    pub env: Vec<(String, String)>,
    /// A private `/run/wireguard` for this daemon.
    pub private_run: bool,
}

impl ServeOptions {
    /// The binary, no zone, no extra environment, a private `/run/wireguard`.
    pub fn new(kawaii: impl Into<PathBuf>) -> ServeOptions {
        ServeOptions {
            kawaii: kawaii.into(),
            zone: None,
            env: Vec::new(),
            private_run: true,
        }
    }
}

/// One `kawaii serve` in a host.
#[derive(Debug, Clone)]
pub struct Serve {
    pub host: Host,
    pub config: PathBuf,
    pub state: PathBuf,
    /// Index of the running process in the topology.
    pub proc: usize,
    opts: ServeOptions,
}

/// Names each start's log apart (a restarted daemon logs to a new file).
static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Serve {
    /// Writes `text` to `<dir>/<host>/<file>` and starts the daemon on it, with its state in
    /// `<dir>/<host>/state`. Does not wait: see [`Serve::wait_ready`].
    pub fn start(
        t: &mut Topology,
        host: &Host,
        file: &str,
        text: &str,
        opts: &ServeOptions,
    ) -> Result<Serve> {
        let config = t.write(&format!("{}/{file}", host.name), text)?;
        let state = t.dir().join(&host.name).join("state");
        Serve::start_with(t, host, &config, &state, opts)
    }

    /// Starts the daemon on an existing config file and state directory.
    pub fn start_with(
        t: &mut Topology,
        host: &Host,
        config: &Path,
        state: &Path,
        opts: &ServeOptions,
    ) -> Result<Serve> {
        let mut serve = Serve {
            host: host.clone(),
            config: config.to_path_buf(),
            state: state.to_path_buf(),
            proc: 0,
            opts: opts.clone(),
        };
        serve.proc = serve.spawn(t)?;
        Ok(serve)
    }

    fn spawn(&self, t: &mut Topology) -> Result<usize> {
        let mut cmd: Vec<String> = Vec::new();
        if self.opts.private_run {
            cmd.extend(
                [
                    "sh",
                    "-c",
                    "mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 kawaii-wg /run/wireguard && exec \"$@\"",
                    "sh",
                ]
                .map(String::from),
            );
        }
        cmd.push("env".into());
        cmd.extend(self.opts.env.iter().map(|(k, v)| format!("{k}={v}")));
        cmd.extend([
            self.opts.kawaii.to_string_lossy().into_owned(),
            "serve".into(),
            "--config".into(),
            self.config.to_string_lossy().into_owned(),
            "--state".into(),
            self.state.to_string_lossy().into_owned(),
        ]);
        if let Some(zone) = &self.opts.zone {
            cmd.extend(["--zone".into(), zone.clone()]);
        }
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        t.spawn(&self.host, &format!("kawaii-{}-{n}", self.host.name), &cmd)
    }

    /// Starts it again (after a kill or a stop), on the same config and state.
    pub fn restart(&mut self, t: &mut Topology) -> Result<()> {
        self.proc = self.spawn(t)?;
        Ok(())
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let api = Api::new(&self.host, None);
        wait_for(
            timeout,
            &format!("kawaii API in {}", self.host.name),
            || (api.get("/readyz").status == 200).then_some(()),
        )
    }

    /// The admin token the daemon's bootstrap wrote (when its config configures none).
    pub fn token(&self) -> Option<String> {
        crate::lab::admin_token(&self.state)
    }

    /// The API as the bootstrap admin (no token if there is none yet).
    pub fn api(&self) -> Api {
        Api::new(&self.host, self.token().as_deref())
    }

    /// What the daemon wrote so far.
    pub fn log(&self, t: &mut Topology) -> String {
        t.proc(self.proc).output()
    }

    /// The daemon's pid.
    pub fn pid(&self, t: &mut Topology) -> u32 {
        t.proc(self.proc).pid()
    }

    /// Runs a command in the daemon's host and mount namespace (its private `/run/wireguard`).
    pub fn run_in_mounts(&self, t: &mut Topology, args: &[&str]) -> Result<String> {
        let pid = self.pid(t);
        self.host.run_in_mounts_of(pid, args)
    }

    /// The kawaii CLI run in the daemon's host with `token` (`KAWAII_TOKEN`).
    pub fn cli(&self, token: &str, args: &[&str]) -> Result<std::process::Output> {
        let kawaii = self.opts.kawaii.to_string_lossy().into_owned();
        let mut full = vec![kawaii.as_str()];
        full.extend_from_slice(args);
        self.host
            .command(&full)
            .env("KAWAII_TOKEN", token)
            .output()
            .map_err(|error| crate::KitError::Spawn {
                cmd: format!("kawaii {}", args.join(" ")),
                error,
            })
    }
}

/// A lone gateway: its own topology with one host, `gw`, running one daemon. Dropping it stops
/// the daemon and deletes the namespace.
#[derive(Debug)]
pub struct Node {
    pub topo: Topology,
    pub host: Host,
    pub serve: Serve,
}

impl Node {
    /// Writes `config` (as `gateway.toml`) and starts the daemon on it; waits for `/readyz`.
    pub fn start(tag: &str, config: &str, opts: &ServeOptions) -> Result<Node> {
        if !crate::can_run() {
            return Err(crate::KitError::Command {
                cmd: "ip netns".into(),
                stderr: "end-to-end tests need root and iproute2".into(),
            });
        }
        let mut topo = Topology::new(tag)?;
        let host = topo.host("gw")?;
        let serve = Serve::start(&mut topo, &host, "gateway.toml", config, opts)?;
        let mut node = Node { topo, host, serve };
        if let Err(e) = node.serve.wait_ready(Duration::from_secs(10)) {
            return Err(crate::KitError::Command {
                cmd: "kawaii serve".into(),
                stderr: format!("{e}\n{}", node.log()),
            });
        }
        Ok(node)
    }

    /// SIGKILL the daemon, then start it again on the same config and state; waits for
    /// `/readyz`.
    pub fn kill9_and_restart(&mut self) -> Result<()> {
        self.topo.proc(self.serve.proc).kill();
        self.serve.restart(&mut self.topo)?;
        self.serve.wait_ready(Duration::from_secs(10))
    }

    /// What the daemon wrote so far.
    pub fn log(&mut self) -> String {
        self.serve.log(&mut self.topo)
    }
}
