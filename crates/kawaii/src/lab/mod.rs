//! `kawaii lab up|status|exec|down`: the demo topology in network namespaces, never touching the
//! root namespace. `up` leaves it running and records what it made in `/run/kawaii-lab/lab.json`
//! (`/run/kawaii-lab-NAME/` with `KAWAII_LAB=NAME`); `down` stops those processes (by pid) and
//! deletes those namespaces.

mod ha;

use anyhow::{Context, bail};
use kawaii_testkit::Topology;
use kawaii_testkit::lab::{self, LabOptions};
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Names a second lab beside the first (letters and digits, up to 8): its directory is
/// `/run/kawaii-lab-NAME` and its namespaces `klab-NAME-*`. The test suite's labs use it, so the
/// suite runs while an operator's lab is up.
const NAME_VAR: &str = "KAWAII_LAB";

/// This lab's name, from [`NAME_VAR`] (none: the default lab).
fn name() -> anyhow::Result<Option<String>> {
    lab_name(std::env::var(NAME_VAR).ok().as_deref())
}

/// A lab's name as [`NAME_VAR`] gives it (unset or empty: none).
fn lab_name(value: Option<&str>) -> anyhow::Result<Option<String>> {
    match value {
        None | Some("") => Ok(None),
        Some(n) if n.len() <= 8 && n.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(Some(n.to_string()))
        }
        Some(n) => bail!("{NAME_VAR}={n:?}: a lab's name is 1 to 8 letters or digits"),
    }
}

/// Where the lab keeps its record, configs, keys and logs.
fn dir() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(match name()? {
        Some(n) => format!("/run/kawaii-lab-{n}"),
        None => "/run/kawaii-lab".into(),
    }))
}

/// The lab's namespaces are `<prefix>-<host>`.
fn prefix() -> anyhow::Result<String> {
    Ok(match name()? {
        Some(n) => format!("klab-{n}"),
        None => "klab".into(),
    })
}

const DEFAULT_CONFIG: &str = lab::LAB_TOML;

#[derive(Debug, Serialize, Deserialize)]
struct LabRecord {
    namespaces: Vec<String>,
    pids: Vec<u32>,
    state: PathBuf,
    config: PathBuf,
    /// Per host running kawaii: the daemon's pid. Its `/run/wireguard` is private to it, so
    /// `exec` runs commands there in its mount namespace (`wg show` finds its socket).
    #[serde(default)]
    daemons: std::collections::BTreeMap<String, u32>,
    /// etcd data directories on tmpfs (`--zones 2`), removed by `down`.
    #[serde(default)]
    data_dirs: Vec<PathBuf>,
    /// Per host running kawaii: its state directory, where its bootstrap token is (`exec`
    /// points `KAWAII_STATE` there, so `kawaii` in that host uses that daemon's token).
    #[serde(default)]
    states: std::collections::BTreeMap<String, PathBuf>,
}

fn record_path() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("lab.json"))
}

fn read_record() -> anyhow::Result<LabRecord> {
    let text =
        std::fs::read_to_string(record_path()?).context("the lab is not up (kawaii lab up)")?;
    Ok(serde_json::from_str(&text)?)
}

fn ns(host: &str) -> anyhow::Result<String> {
    Ok(format!("{}-{host}", prefix()?))
}

/// Checks that a lab may be built, and writes and validates its gateway config (`config`, or
/// `default`) under the lab directory. Returns the start time, the directory and the config path.
fn prepare(config: Option<PathBuf>, default: &str) -> anyhow::Result<(Instant, PathBuf, PathBuf)> {
    if record_path()?.exists() {
        bail!("the lab is already up; `kawaii lab down` first");
    }
    if !kawaii_testkit::can_run() {
        bail!("the lab needs root and iproute2 (it builds network namespaces)");
    }
    let started = Instant::now();
    let dir = dir()?;
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("gateway.toml");
    match &config {
        Some(c) => std::fs::copy(c, &cfg)
            .with_context(|| format!("reading {}", c.display()))
            .map(|_| ())?,
        None => std::fs::write(&cfg, default)?,
    }
    if let Err(errors) = crate::config::load_valid(&cfg) {
        let _ = std::fs::remove_dir_all(&dir);
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bail!("{}", list.join("\n"));
    }
    Ok((started, dir, cfg))
}

/// A failed build: removes everything it made and reports why.
fn abandon<T>(topo: &mut Topology, dir: &Path, e: kawaii_testkit::KitError) -> anyhow::Result<T> {
    topo.teardown();
    let _ = std::fs::remove_dir_all(dir);
    bail!("building the lab failed (everything it made was removed): {e}")
}

/// The line that says the lab is up.
fn say_up(record: &LabRecord, what: &str, started: std::time::Instant) {
    println!(
        "Kawaii {what} is up in {:.1}s: namespaces {}.",
        started.elapsed().as_secs_f64(),
        record.namespaces.join(", ")
    );
}

/// What each daemon warned about when it loaded its file (`config warning`: a `via` or an office
/// it cannot reach, an IPv6 upstream without a route, strict reverse-path filtering ...), once
/// each: a lab on an operator's own config says at once what the machine lacks.
fn say_warnings(topo: &mut Topology, daemons: &[&kawaii_testkit::serve::Serve]) {
    for d in daemons {
        for w in config_warnings(&d.log(topo)) {
            println!("warning ({}): {w}", d.host.name);
        }
    }
}

/// The `w=` of every `config warning` line of a daemon's log, in order, without repeats (each
/// reload of the file logs them again).
fn config_warnings(log: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("config warning ") else {
            continue;
        };
        let w = rest.split_once(" w=").map_or(rest, |(_, w)| w);
        if !seen.iter().any(|s| s == w) {
            seen.push(w.to_string());
        }
    }
    seen
}

/// Records what the lab made, for `status`, `exec` and `down`.
fn record(
    topo: &mut Topology,
    state: PathBuf,
    cfg: &Path,
    daemons: &[&kawaii_testkit::serve::Serve],
    data_dirs: Vec<PathBuf>,
) -> anyhow::Result<LabRecord> {
    let record = LabRecord {
        namespaces: topo.hosts().map(|h| h.ns.clone()).collect(),
        pids: topo.pids(),
        state,
        config: cfg.to_path_buf(),
        daemons: daemons
            .iter()
            .map(|d| (d.host.name.clone(), d.pid(topo)))
            .collect(),
        data_dirs,
        states: daemons
            .iter()
            .map(|d| (d.host.name.clone(), d.state.clone()))
            .collect(),
    };
    std::fs::write(record_path()?, serde_json::to_string_pretty(&record)?)?;
    Ok(record)
}

pub fn up(config: Option<PathBuf>, zones: u8) -> anyhow::Result<ExitCode> {
    if zones == 2 {
        return ha::up(config);
    }
    // The default lab also shows a VPN peer (a laptop running wireguard-go) and a pipe.
    let laptop = config.is_none().then(crate::keys::keypair);
    let lab_dir = dir()?.display().to_string();
    let default = match &laptop {
        Some((_, laptop_pub)) => format!(
            "{DEFAULT_CONFIG}{vpn}
[[pipes]]
name = \"vm1-web\"
port = 8080
remote = \"{vm1}:80\"
{office}",
            vpn = vpn_toml(&lab_dir, laptop_pub, true),
            vm1 = lab::VM1,
            office = lab::twin_toml(&format!("pre_shared_key_file = \"{lab_dir}/office.psk\"")),
        ),
        None => DEFAULT_CONFIG.to_string(),
    };
    let (started, dir, cfg) = prepare(config, &default)?;
    // The office's pre-shared key: random, in a file of its own.
    let office_psk = crate::keys::keypair().0;
    if laptop.is_some() {
        crate::keys::write_private(&dir.join("wg.key"), &crate::keys::keypair().0)?;
        crate::keys::write_private(&dir.join("office.psk"), &office_psk)?;
    }
    let mut topo = Topology::persistent(&prefix()?, &dir)?;
    let opts = LabOptions {
        kawaii: std::env::current_exe()?,
        config: cfg.clone(),
        env: vec![],
    };
    let built = lab::build(&mut topo, &opts);
    let lab = built.or_else(|e| abandon(&mut topo, &dir, e))?;
    if let Some((laptop_key, _)) = &laptop {
        let kawaii = std::env::current_exe()?;
        if let Err(e) = lab::vpn_laptop(&mut topo, &lab, &kawaii, laptop_key) {
            return abandon(&mut topo, &dir, e);
        }
        if let Err(e) = lab::twin_office(&mut topo, (&lab.router, &lab.svc), &office_psk) {
            return abandon(&mut topo, &dir, e);
        }
        // The tunnel comes up in a few seconds: the commands below work once it has.
        let seen = format!("http://{}:8080/", lab::TWIN_SEEN);
        let up = kawaii_testkit::wait_for(Duration::from_secs(20), "the office's tunnel", || {
            lab.vm1
                .curl(&seen, "1")
                .filter(|b| b.contains("you are 10.73.0.10:"))
        });
        if let Err(e) = up {
            eprintln!("warning: {e}; see `kawaii lab exec gw kawaii status`");
        }
    }
    let record = record(&mut topo, lab.state.clone(), &cfg, &[&lab.kawaii], vec![])?;
    say_up(&record, "lab", started);
    say_warnings(&mut topo, &[&lab.kawaii]);
    println!(
        r#"
  internet 198.51.100.10 ── router ── gw (kawaii; public VIP 203.0.113.10, private VIP 10.1.0.1)
                                        └── lan ── vm1 10.1.0.10 (web :80), vm2 10.1.0.11 (udp echo :5353)
  laptop 192.0.2.2 (wireguard-go, VPN 10.8.0.2, fd00:8::2) ── router    (default lab only)
  office 198.51.100.8 (strongSwan; its LAN is 10.1.0.0/24 too: ohost 10.1.0.10) ── router   (default lab only)

Try:
  kawaii lab exec vm1 curl -s http://198.51.100.10/          # egress: the internet sees 203.0.113.10
  kawaii lab exec vm1 curl -s -m 3 http://198.51.100.10:25/  # blocked by the egress rule (times out)
  kawaii lab exec internet curl -s http://203.0.113.10/      # port forward tcp/80 -> vm1
  kawaii lab exec internet sh -c 'echo hi | socat -t2 - UDP:203.0.113.10:5353'   # udp/5353 -> vm2
  kawaii lab exec vm2 curl -s http://203.0.113.10/           # hairpin: vm2 -> public VIP -> vm1
  kawaii lab exec gw kawaii status                           # the daemon's view, rule counters
  kawaii lab exec gw kawaii get ingress-rules
  kawaii lab exec gw nft list table inet kawaii{vpn}{ipv6}
  edit {cfg} — kawaii applies it live
  kawaii lab down
{ui}"#,
        ui = ui_hint("gw", &lab.state.join("admin.token")),
        cfg = cfg.display(),
        ipv6 = if dual_stack(&cfg) { IPV6_TRY } else { "" },
        vpn = if laptop.is_some() {
            "
  kawaii lab exec laptop curl -s http://10.1.0.10/          # VPN: laptop -> WireGuard -> vm1
  kawaii lab exec laptop curl -gs http://[2001:db8:1::10]/  # VPN over IPv6, routed: vm1 sees the laptop's fd00:8::2
  kawaii lab exec laptop curl -s http://10.8.0.1:8080/      # a pipe on the gateway -> vm1, VPN side only
  kawaii lab exec laptop curl -gs http://[fd00:8::1]:8080/  # the same pipe over the VPN's IPv6 -> vm1
  kawaii lab exec internet curl -s -m 3 http://203.0.113.10:8080/   # the pipe is blocked from the internet
  kawaii lab exec gw wg show kawaii-wg0                     # the laptop's handshake and transfer
  kawaii lab exec gw kawaii peer showconf laptop            # what the laptop was configured from
  kawaii lab exec vm1 curl -s http://10.93.0.10:8080/       # IPsec to an office on our own subnet: ohost (10.1.0.10 too) sees vm1 as 10.73.0.10
  kawaii lab exec ohost curl -s http://10.73.0.10/          # the office's host -> vm1 through the tunnel: vm1 sees it as 10.93.0.10
  kawaii lab exec gw ip rule                                # the mark that steers the office's alias into the tunnel (proto 177)"
        } else {
            ""
        }
    );
    topo.keep();
    Ok(ExitCode::SUCCESS)
}

/// Whether the lab's config is dual-stack (the testkit then builds the IPv6 side too).
fn dual_stack(cfg: &Path) -> bool {
    std::fs::read_to_string(cfg).is_ok_and(|c| c.contains("private_subnet6"))
}

/// The dual-stack lab's IPv6 side and what to try on it (routed: no NAT66).
const IPV6_TRY: &str = "

IPv6 (routed, no NAT66): internet 2001:db8:64::10, gw public VIP 2001:db8:ff::10, gateway
2001:db8:1::1 and fe80::1 (router advertisements, SLAAC), vm1 2001:db8:1::10, vm2 2001:db8:1::11
  kawaii lab exec vm1 ip -6 route show default              # IPv6: default route from the gateway's RA
  kawaii lab exec vm1 curl -gs http://[2001:db8:64::10]/    # IPv6 egress: the internet sees vm1's own address
  kawaii lab exec vm1 curl -gs -m 3 http://[2001:db8:64::10]:25/   # IPv6 tcp/25 blocked by the egress rule (times out)
  kawaii lab exec internet curl -gs http://[2001:db8:1::10]/       # IPv6 opening tcp/80 -> vm1 (no DNAT)
  kawaii lab exec internet sh -c 'echo hi | socat -t2 - UDP6:[2001:db8:1::11]:5353'   # IPv6 opening udp/5353 -> vm2
  kawaii lab exec gw nft list chain inet kawaii ingress6";

pub fn status() -> anyhow::Result<ExitCode> {
    let r = read_record()?;
    let listed = Command::new("ip").args(["netns", "list"]).output()?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    for n in &r.namespaces {
        let present = listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(n.as_str()));
        println!("{n:<16} {}", if present { "up" } else { "MISSING" });
    }
    let alive = r
        .pids
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .count();
    println!("processes: {alive} of {} running", r.pids.len());
    // Each daemon's own view, with its own token.
    let mut hosts: Vec<(String, PathBuf)> = r.states.clone().into_iter().collect();
    if hosts.is_empty() {
        hosts.push(("gw".into(), r.state.clone()));
    }
    let mut ok = alive == r.pids.len();
    for (host, state) in hosts {
        if r.states.len() > 1 {
            println!("\n{host}:");
        }
        let out = Command::new("ip")
            .args(["netns", "exec", &ns(&host)?])
            .arg(std::env::current_exe()?)
            .arg("status")
            .env("KAWAII_STATE", &state)
            .status()?;
        ok &= out.success();
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn exec(host: &str, cmd: &[String]) -> anyhow::Result<ExitCode> {
    let r = read_record()?;
    let name = ns(host)?;
    if !r.namespaces.contains(&name) {
        let ours = format!("{}-", prefix()?);
        let hosts: Vec<&str> = r
            .namespaces
            .iter()
            .filter_map(|n| n.strip_prefix(&ours))
            .collect();
        bail!("no lab host {host:?}; hosts: {}", hosts.join(", "));
    }
    let Some((prog, args)) = cmd.split_first() else {
        bail!("give a command to run")
    };
    let prog = if prog == "kawaii" {
        std::env::current_exe()?.to_string_lossy().into_owned()
    } else {
        prog.clone()
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &name]);
    // Where the daemon still runs, in its mount namespace.
    if let Some(pid) = r
        .daemons
        .get(host)
        .filter(|pid| Path::new(&format!("/proc/{pid}/ns/mnt")).exists())
    {
        cmd.args(["nsenter", "-t", &pid.to_string(), "-m", "--"]);
    }
    // That host's daemon: its bootstrap token, and the API address the lab's config gives it
    // (in the host's own namespace).
    let state = r.states.get(host).unwrap_or(&r.state);
    cmd.arg(&prog).args(args).env("KAWAII_STATE", state);
    if std::env::var_os("KAWAII_API").is_none()
        && let Some(api) = api_url(&r.config)
    {
        cmd.env("KAWAII_API", api);
    }
    let err = cmd.exec();
    Err(err).context("running ip netns exec")
}

/// `http://ADDRESS` of the API as the lab's config sets `[api] listen` (a wildcard address is
/// reached on loopback); None when the config cannot be read.
fn api_url(config: &Path) -> Option<String> {
    let loaded = crate::config::load(config).ok()?;
    let listen: std::net::SocketAddr = loaded.gateway.api.listen.parse().ok()?;
    let ip = match listen.ip() {
        ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip => ip,
    };
    Some(format!(
        "http://{}",
        std::net::SocketAddr::new(ip, listen.port())
    ))
}

pub fn down() -> anyhow::Result<ExitCode> {
    let r = match read_record() {
        Ok(r) => r,
        Err(_) => {
            println!("the lab is not up");
            return Ok(ExitCode::SUCCESS);
        }
    };
    for pid in &r.pids {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while r
        .pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in &r.pids {
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    for n in &r.namespaces {
        kawaii_testkit::destroy_namespace(n);
    }
    for d in &r.data_dirs {
        // Only the lab's own etcd data (/dev/shm/<prefix>-etcdN).
        if d.starts_with("/dev/shm") && d.to_string_lossy().contains(&prefix()?) {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    std::fs::remove_dir_all(dir()?)?;
    println!(
        "lab down: {} namespaces and {} processes removed",
        r.namespaces.len(),
        r.pids.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The lab's VPN: the gateway's WireGuard device (its key in `lab_dir`) and the peer `laptop`,
/// with an IPv6 address in the tunnel too when the lab is dual-stack.
fn vpn_toml(lab_dir: &str, laptop_pub: &str, ipv6: bool) -> String {
    let address6 = if ipv6 {
        "address6 = \"fd00:8::1/64\"\n"
    } else {
        ""
    };
    format!(
        "
[wireguard]
listen_port = 51820
address = \"10.8.0.1/24\"
{address6}private_key_file = \"{lab_dir}/wg.key\"

[[wireguard.peers]]
name = \"laptop\"
public_key = \"{laptop_pub}\"
persistent_keepalive = 25
"
    )
}

/// How to open the status page of the lab's gateway `host`: a loopback port of this machine
/// forwarded into the namespace by socat (no link to the root namespace).
fn ui_hint(host: &str, token: &Path) -> String {
    format!(
        r#"
Status page (GET /ui, docs/ui.md): forward a loopback port into {host}'s namespace,
  socat TCP-LISTEN:7780,bind=127.0.0.1,reuseaddr,fork 'EXEC:kawaii lab exec {host} socat STDIO TCP\:127.0.0.1\:7780'
then open http://127.0.0.1:7780/ui on this machine and sign in with the token in
  {token}
"#,
        token = token.display()
    )
}

#[cfg(test)]
mod tests {
    use super::{config_warnings, lab_name};

    #[test]
    fn a_labs_name_is_short_letters_and_digits() {
        assert_eq!(lab_name(None).expect("unset"), None);
        assert_eq!(lab_name(Some("")).expect("empty"), None);
        assert_eq!(
            lab_name(Some("suite2")).expect("valid").as_deref(),
            Some("suite2")
        );
        for bad in ["../x", "a b", "toolongname", "klab-x"] {
            let e = lab_name(Some(bad)).expect_err(bad).to_string();
            assert!(
                e.contains("KAWAII_LAB") && e.contains("1 to 8 letters or digits"),
                "{e}"
            );
        }
    }

    #[test]
    fn config_warnings_are_read_from_the_log_once_each() {
        let log = "\
2026-12-08T00:40:00.1Z  INFO kawaii::serve: listening addr=127.0.0.1:7780
2026-12-08T00:40:00.2Z  WARN kawaii::serve::files: config warning file=/run/kawaii-lab/kawaii.toml w=zones[0].public_gateway6: 2001:db8::1 is on no attached IPv6 network of wan0
2026-12-08T00:40:00.3Z  WARN kawaii::serve::files: config warning file=/run/kawaii-lab/kawaii.toml w=ipsec[0].remote_peer: no route
2026-12-08T00:40:09.0Z  WARN kawaii::serve::files: config warning file=/run/kawaii-lab/kawaii.toml w=zones[0].public_gateway6: 2001:db8::1 is on no attached IPv6 network of wan0
";
        assert_eq!(
            config_warnings(log),
            [
                "zones[0].public_gateway6: 2001:db8::1 is on no attached IPv6 network of wan0",
                "ipsec[0].remote_peer: no route"
            ]
        );
        assert!(config_warnings("INFO applied revision=3").is_empty());
    }
}
