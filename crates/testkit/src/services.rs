//! Real services for test hosts: nginx serving one page, and a kawaii node with a private
//! `/run/wireguard` (the directory is shared by every network namespace, so several nodes on
//! one machine would otherwise fight over `kawaii-wg0.sock`).

use crate::{Host, KitError, Result, Topology, wait_tcp};
use std::path::Path;
use std::time::Duration;

/// Starts nginx in `host` on port 80 serving `page` at `/`; waits until it listens on `ip`.
pub fn nginx(t: &mut Topology, host: &Host, ip: &str, page: &str) -> Result<usize> {
    let dir = t.dir().join(format!("nginx-{}", host.name));
    let www = dir.join("www");
    let err = |error| KitError::Spawn {
        cmd: "write nginx files".into(),
        error,
    };
    std::fs::create_dir_all(&www).map_err(err)?;
    std::fs::write(www.join("index.html"), page).map_err(err)?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{ listen 80; root {d}/www; location / {{ }} }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(err)?;
    let i = t.spawn(
        host,
        &format!("nginx-{}", host.name),
        &["nginx", "-c", &path.to_string_lossy()],
    )?;
    wait_tcp(
        host,
        format!("{ip}:80").parse().expect("an IPv4 address"),
        Duration::from_secs(10),
    )?;
    Ok(i)
}

/// Starts `kawaii serve` in `host` inside a private mount of `/run/wireguard` (`ip netns exec`
/// gives each command its own mount namespace; the tmpfs is mounted only there).
pub fn kawaii_node(
    t: &mut Topology,
    host: &Host,
    kawaii: &Path,
    config: &Path,
    state: &Path,
) -> Result<usize> {
    let script = format!(
        "mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 kawaii-wg /run/wireguard && exec {} serve --config {} --state {}",
        kawaii.display(),
        config.display(),
        state.display()
    );
    t.spawn(
        host,
        &format!("kawaii-{}", host.name),
        &["sh", "-c", &script],
    )
}

/// Starts wireguard-go in `host` as `ifname`, configured only from a `kawaii peer showconf`
/// text the way Kilo's guide does it: `wg setconf` with the file minus its `Address` line, the
/// peer's own private key, then the address and a route for each other `AllowedIPs` entry.
pub fn wireguard_go_client(
    t: &mut Topology,
    host: &Host,
    ifname: &str,
    showconf: &str,
    private_key: &str,
) -> Result<usize> {
    let i = t.spawn(
        host,
        &format!("wireguard-go-{ifname}"),
        &["wireguard-go", "-f", ifname],
    )?;
    let sock = format!("/var/run/wireguard/{ifname}.sock");
    let sys = format!("/sys/class/net/{ifname}");
    let h = host.clone();
    crate::wait_for(Duration::from_secs(5), "wireguard-go's interface", || {
        h.exec(&["test", "-e", &sys])
            .ok()
            .filter(|o| o.status.success() && Path::new(&sock).exists())
            .map(|_| ())
    })?;
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
    let err = |error| KitError::Spawn {
        cmd: format!("write {ifname}'s files"),
        error,
    };
    let conf = t.dir().join(format!("{ifname}.conf"));
    std::fs::write(&conf, stripped).map_err(err)?;
    let key = t.dir().join(format!("{ifname}.key"));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .map_err(err)?;
        f.write_all(format!("{private_key}\n").as_bytes())
            .map_err(err)?;
    }
    host.run(&["wg", "setconf", ifname, &conf.to_string_lossy()])?;
    host.run(&["wg", "set", ifname, "private-key", &key.to_string_lossy()])?;
    for a in &address {
        host.run(&["ip", "addr", "add", a, "dev", ifname])?;
    }
    host.run(&["ip", "link", "set", ifname, "up"])?;
    // A full tunnel (0.0.0.0/0) must not swallow the way to the endpoint itself: pin it to
    // the current route first (what wg-quick does with policy routing).
    let endpoint = showconf
        .lines()
        .find_map(|l| l.strip_prefix("Endpoint = "))
        .and_then(|e| e.rsplit_once(':'))
        .map(|(ip, _)| ip.to_string());
    if let Some(ep) = endpoint.filter(|_| allowed.iter().any(|n| n == "0.0.0.0/0")) {
        let via = host.run(&["ip", "-o", "route", "get", &ep])?;
        let words: Vec<&str> = via.split_whitespace().collect();
        let after = |k: &str| {
            words
                .iter()
                .position(|w| *w == k)
                .and_then(|i| words.get(i + 1))
        };
        if let (Some(gw), Some(dev)) = (after("via"), after("dev")) {
            host.run(&[
                "ip",
                "route",
                "replace",
                &format!("{ep}/32"),
                "via",
                gw,
                "dev",
                dev,
            ])?;
        }
    }
    for net in allowed.iter().filter(|n| !address.contains(n)) {
        let net = if net == "0.0.0.0/0" {
            "default"
        } else {
            net.as_str()
        };
        host.run(&["ip", "route", "replace", net, "dev", ifname])?;
    }
    Ok(i)
}
