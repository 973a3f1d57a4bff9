//! Reads the machine's [`Environment`] (interfaces, IPv4 connected prefixes, main-table routes)
//! through `ip -j`, for `check --local` and `serve`'s environment warnings. Read only; the
//! judgement is the model's (`kawaii_model::environment::check`).

use crate::DriverError;
use ipnet::Ipv4Net;
use kawaii_model::environment::{EnvRoute, Environment};
use std::net::Ipv4Addr;
use std::process::Command;

/// The current network namespace's interfaces, addresses and routes.
pub fn read() -> Result<Environment, DriverError> {
    let addrs = ip(&["-j", "addr", "show"])?;
    let routes = ip(&["-j", "-4", "route", "show", "table", "main"])?;
    from_json(&addrs, &routes)
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

/// `ip -j addr show` and `ip -j -4 route show` output, typed.
pub fn from_json(addrs: &str, routes: &str) -> Result<Environment, DriverError> {
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
                && let (Ok(ip), Ok(len)) = (ip.parse::<Ipv4Addr>(), u8::try_from(len))
                && let Ok(net) = Ipv4Net::new(ip, len)
            {
                env.connected.push(net.trunc());
            }
        }
    }
    for r in parse(routes)?.as_array().into_iter().flatten() {
        let dst = match r["dst"].as_str() {
            Some("default") => Some(Ipv4Net::default()),
            Some(d) if d.contains('/') => d.parse().ok(),
            Some(d) => d.parse::<Ipv4Addr>().ok().map(Ipv4Net::from),
            None => None,
        };
        if let Some(dst) = dst {
            env.routes.push(EnvRoute {
                dst,
                on_link: r.get("gateway").is_none(),
            });
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iproute2_json() {
        let addrs = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"backbone0","addr_info":[{"family":"inet","local":"192.168.100.1","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let routes = r#"[{"dst":"default","gateway":"192.168.100.254","dev":"backbone0"},
            {"dst":"192.168.100.0/24","dev":"backbone0","protocol":"kernel","scope":"link"},
            {"dst":"10.9.9.9","dev":"backbone0","scope":"link"}]"#;
        let env = from_json(addrs, routes).expect("parses");
        assert_eq!(
            env.interfaces.iter().collect::<Vec<_>>(),
            ["backbone0", "lo"]
        );
        assert_eq!(
            env.connected,
            [
                "127.0.0.0/8".parse::<Ipv4Net>().expect("net"),
                "192.168.100.0/24".parse().expect("net")
            ]
        );
        assert_eq!(env.routes.len(), 3);
        assert!(!env.routes[0].on_link && env.routes[0].dst.prefix_len() == 0);
        assert!(env.routes[2].on_link && env.routes[2].dst.prefix_len() == 32);
    }
}
