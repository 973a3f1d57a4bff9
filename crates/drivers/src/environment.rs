//! Reads the machine's [`Environment`] (interfaces, connected prefixes and main-table routes of
//! both families through `ip -j`, reverse-path filtering from `/proc/sys`), for `check --local` and `serve`'s environment warnings. Read only; the
//! judgement is the model's (`kawaii_model::environment::check`).

use crate::DriverError;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kawaii_model::environment::{EnvRoute, Environment};
use std::net::IpAddr;
use std::process::Command;

/// The current network namespace's interfaces, addresses and routes.
pub fn read() -> Result<Environment, DriverError> {
    let addrs = ip(&["-j", "addr", "show"])?;
    let routes4 = ip(&["-j", "-4", "route", "show", "table", "main"])?;
    let routes6 = ip(&["-j", "-6", "route", "show", "table", "main"])?;
    let mut env = from_json(&addrs, &routes4, &routes6)?;
    let names = ["all", "default"].into_iter().map(String::from);
    for name in names
        .chain(env.interfaces.iter().cloned())
        .collect::<Vec<_>>()
    {
        let path = format!("/proc/sys/net/ipv4/conf/{name}/rp_filter");
        if let Some(v) = std::fs::read_to_string(path)
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            env.rp_filter.insert(name, v);
        }
    }
    Ok(env)
}

fn ip(args: &[&str]) -> Result<String, DriverError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| DriverError::transient_from("cannot run ip", e))?;
    if !out.status.success() {
        return Err(DriverError::transient(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -j addr show`, `ip -j -4 route show` and `ip -j -6 route show` output, typed.
pub fn from_json(addrs: &str, routes4: &str, routes6: &str) -> Result<Environment, DriverError> {
    let parse = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| DriverError::transient_from("ip -j", e))
    };
    let mut env = Environment::default();
    for link in parse(addrs)?.as_array().into_iter().flatten() {
        if let Some(name) = link["ifname"].as_str() {
            env.interfaces.insert(name.to_string());
        }
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64())
                && let (Ok(ip), Ok(len)) = (ip.parse::<IpAddr>(), u8::try_from(len))
                && let Ok(net) = IpNet::new(ip, len)
                && a["scope"].as_str() != Some("link")
            {
                env.connected.push(net.trunc());
            }
        }
    }
    for (text, default) in [
        (routes4, IpNet::V4(Ipv4Net::default())),
        (routes6, IpNet::V6(Ipv6Net::default())),
    ] {
        for r in parse(text)?.as_array().into_iter().flatten() {
            let dst = match r["dst"].as_str() {
                Some("default") => Some(default),
                Some(d) if d.contains('/') => d.parse().ok(),
                Some(d) => d.parse::<IpAddr>().ok().map(IpNet::from),
                None => None,
            };
            if let Some(dst) = dst {
                env.routes.push(EnvRoute {
                    dst,
                    on_link: r.get("gateway").is_none(),
                });
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iproute2_json() {
        let addrs = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
            {"ifindex":2,"ifname":"backbone0","addr_info":[{"family":"inet","local":"192.168.100.1","prefixlen":24,"scope":"global"},{"family":"inet6","local":"2001:db8:bb::1","prefixlen":64,"scope":"global"},{"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}]"#;
        let routes4 = r#"[{"dst":"default","gateway":"192.168.100.254","dev":"backbone0"},
            {"dst":"192.168.100.0/24","dev":"backbone0","protocol":"kernel","scope":"link"},
            {"dst":"10.9.9.9","dev":"backbone0","scope":"link"}]"#;
        let routes6 = r#"[{"dst":"2001:db8:bb::/64","dev":"backbone0","protocol":"kernel"},
            {"dst":"default","gateway":"2001:db8:bb::fe","dev":"backbone0"}]"#;
        let env = from_json(addrs, routes4, routes6).expect("parses");
        assert_eq!(
            env.interfaces.iter().collect::<Vec<_>>(),
            ["backbone0", "lo"]
        );
        let nets = |list: &[&str]| -> Vec<IpNet> {
            list.iter().map(|n| n.parse().expect("net")).collect()
        };
        // The link-local address is left out: it is on every link.
        assert_eq!(
            env.connected,
            nets(&["127.0.0.0/8", "192.168.100.0/24", "2001:db8:bb::/64"])
        );
        assert_eq!(env.routes.len(), 5);
        assert!(!env.routes[0].on_link && env.routes[0].dst == nets(&["0.0.0.0/0"])[0]);
        assert!(env.routes[2].on_link && env.routes[2].dst.prefix_len() == 32);
        assert!(env.routes[3].on_link && env.routes[3].dst == nets(&["2001:db8:bb::/64"])[0]);
        assert!(!env.routes[4].on_link && env.routes[4].dst == nets(&["::/0"])[0]);
    }
}
