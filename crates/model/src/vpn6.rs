//! The VPN's IPv6 addresses, given when a document is committed: every peer without allowed IPs
//! gets one from `wireguard.address6`'s subnet (the one it asked for or had before if still
//! free, else the lowest free one) and keeps it for its life, as its IPv4 address.

use crate::spec::WireGuard;
use ipnet::Ipv6Net;
use std::net::Ipv6Addr;

/// Gives the peers of `wg` their IPv6 addresses; `old` is the stored section. Without
/// `address6` the peers have none (the subnet was removed); an unparsable one is left for
/// validation to report.
pub(crate) fn assign(wg: &mut WireGuard, old: Option<&WireGuard>) {
    let Some(text) = wg.address6.as_deref() else {
        wg.peers.iter_mut().for_each(|p| p.address6 = None);
        return;
    };
    let Ok(gw) = text.trim().parse::<Ipv6Net>() else {
        return;
    };
    let subnet = gw.trunc();
    let parse = |s: &str| -> Option<Ipv6Addr> {
        let s = s.trim();
        s.strip_suffix("/128").unwrap_or(s).parse().ok()
    };
    // Explicit allowed IPs of every peer are taken first.
    let mut taken: Vec<Ipv6Net> = wg
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter())
        .filter_map(|s| crate::valid::cidr6(s).ok())
        .collect();
    taken.push(Ipv6Net::from(gw.addr()));
    let free = |ip: Ipv6Addr, taken: &[Ipv6Net]| {
        subnet.contains(&ip) && ip != subnet.network() && !taken.iter().any(|n| n.contains(&ip))
    };
    let old_peers = old.map(|w| w.peers.as_slice());
    let mut pending = Vec::new();
    for (i, p) in wg.peers.iter_mut().enumerate() {
        if !p.allowed_ips.is_empty() {
            p.address6 = None;
            continue;
        }
        let before = old_peers
            .and_then(|o| o.iter().find(|o| o.name == p.name))
            .and_then(|o| o.address6.as_deref())
            .and_then(parse);
        let want = p.address6.as_deref().and_then(parse).or(before);
        match want.filter(|ip| free(*ip, &taken)) {
            Some(ip) => {
                taken.push(Ipv6Net::from(ip));
                p.address6 = Some(ip.to_string());
            }
            None if p.address6.as_deref().is_some_and(|a| parse(a).is_none()) => {}
            None => pending.push(i),
        }
    }
    for i in pending {
        let next = crate::valid::free_addresses(subnet, &taken).next();
        if let Some(ip) = next {
            taken.push(Ipv6Net::from(ip));
        }
        wg.peers[i].address6 = next.map(|ip| ip.to_string());
    }
}

#[cfg(test)]
mod tests {
    use crate::{Format, Gateway};

    fn vpn(address6: &str, peers: &[(&str, &str)]) -> Gateway {
        let mut text = format!(
            "[wireguard]\naddress = \"10.8.0.1/24\"\naddress6 = \"{address6}\"\nprivate_key = \"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\"\n"
        );
        let keys = [
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
            "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=",
            "gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=",
            "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
        ];
        for (i, (name, ips)) in peers.iter().enumerate() {
            text.push_str(&format!(
                "[[wireguard.peers]]\nname = \"{name}\"\npublic_key = \"{}\"\nallowed_ips = [{ips}]\n",
                keys[i]
            ));
        }
        Gateway::parse(&text, Format::Toml).expect("parses")
    }

    fn addr6(g: &Gateway, n: usize) -> Option<String> {
        g.wireguard.as_ref().expect("wg").peers[n].address6.clone()
    }

    #[test]
    fn ipv6_addresses_are_allocated_with_the_ipv4_ones_and_kept() {
        let mut first = vpn(
            "fd00:8::1/64",
            &[("a", ""), ("b", "\"fd00:8::2/128\""), ("c", "")],
        );
        first.prepare_commit(&Gateway::default());
        let v4 = |g: &Gateway, n: usize| g.wireguard.as_ref().expect("wg").peers[n].address.clone();
        assert_eq!(addr6(&first, 0).as_deref(), Some("fd00:8::3"));
        assert_eq!(v4(&first, 0).as_deref(), Some("10.8.0.2"));
        assert_eq!(addr6(&first, 1), None, "a peer with allowed_ips gets none");
        assert_eq!(v4(&first, 1), None, "an IPv6 allowed IP is an allowed IP");
        assert_eq!(addr6(&first, 2).as_deref(), Some("fd00:8::4"));
        crate::validate(&first).expect("valid");
        // Applied again with a new peer in front: the others keep theirs.
        let mut second = vpn("fd00:8::1/64", &[("d", ""), ("a", ""), ("c", "")]);
        second.prepare_commit(&first);
        assert_eq!(addr6(&second, 0).as_deref(), Some("fd00:8::2"));
        assert_eq!(addr6(&second, 1).as_deref(), Some("fd00:8::3"));
        assert_eq!(addr6(&second, 2).as_deref(), Some("fd00:8::4"));
        // The IPv6 subnet removed: the addresses go with it.
        let mut third = second.clone();
        third.wireguard.as_mut().expect("wg").address6 = None;
        third.prepare_commit(&second);
        assert_eq!(addr6(&third, 0), None);
        crate::validate(&third).expect("valid");
    }

    #[test]
    fn a_taken_half_of_the_subnet_is_skipped_at_once() {
        // A peer routes the upper half of a /64: the next free address is found without
        // walking 2^63 addresses.
        let mut g = vpn(
            "2001:db8:8::1/64",
            &[("site", "\"2001:db8:8::/65\""), ("a", "")],
        );
        g.prepare_commit(&Gateway::default());
        let e = crate::validate(&g).expect_err("the site covers the gateway's address");
        assert_eq!(e.0[0].path, "wireguard.peers[0].allowed_ips", "{e}");
        let mut g = vpn(
            "2001:db8:8:0:8000::1/64",
            &[("site", "\"2001:db8:8::/65\""), ("a", "")],
        );
        g.prepare_commit(&Gateway::default());
        assert_eq!(addr6(&g, 1).as_deref(), Some("2001:db8:8:0:8000::"));
        crate::validate(&g).expect("valid");
        let full = vpn("2001:db8:8::1/126", &[("a", ""), ("b", ""), ("c", "")]);
        let e = crate::validate(&full).expect_err("::0 anycast, ::1 gateway, two left");
        assert_eq!(e.0[0].path, "wireguard.peers[2]", "{e}");
    }
}
