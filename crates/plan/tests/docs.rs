//! The operator guides' overlapping-networks examples (and VPC peering's IPv6 ones) run: every
//! complete gateway document (a ```toml block with a `[gateway]` table) in those sections
//! validates, plans, passes the real `nft -c`, and renders the rules the guide quotes.

use kawaii_model::{Format, Gateway, validate};
use kawaii_testkit::golden::nft_check;
use std::path::Path;

/// The ```toml blocks of `doc`'s section `heading` that are whole gateway documents.
fn examples(doc: &str, heading: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("{doc} has no section {heading:?}"));
    section
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("[gateway]"))
        .map(String::from)
        .collect()
}

/// Each example's rendered ruleset (its peerings consented), checked by `nft -c`.
fn rendered(doc: &str) -> Vec<String> {
    rendered_in(doc, "Overlapping networks")
}

/// [`rendered`] for the examples of section `heading`.
fn rendered_in(doc: &str, heading: &str) -> Vec<String> {
    let blocks = examples(doc, heading);
    assert!(!blocks.is_empty(), "{doc}: no example");
    blocks
        .iter()
        .map(|b| {
            let g = Gateway::parse(b, Format::Toml).unwrap_or_else(|e| panic!("{doc}: {e}\n{b}"));
            let d = validate(&g)
                .unwrap_or_else(|e| panic!("{doc}: {e:?}\n{b}"))
                .desired;
            // As once both gateways run: every peering consented.
            let observed = kawaii_plan::Observed {
                consented_peerings: d.vpc_peerings.iter().map(|p| p.name.clone()).collect(),
                ..Default::default()
            };
            let nft = kawaii_plan::plan_with(&d, None, &observed)
                .expect("plan")
                .nftables
                .expect("a zone has a table")
                .render();
            nft_check(&nft).unwrap_or_else(|e| panic!("{doc}: nft -c: {e}"));
            nft
        })
        .collect()
}

#[test]
fn vpc_peering_overlap_example_runs() {
    let nft = rendered("vpc-peering.md");
    assert_eq!(nft.len(), 2, "acme and marvelous");
    for (doc, want) in [
        (
            &nft[0],
            "ip saddr 10.1.0.0/24 ip daddr 10.202.0.0/24 snat ip prefix to 10.201.0.0/24",
        ),
        (
            &nft[0],
            "ip saddr 10.202.0.0/24 ip daddr 10.201.0.0/24 dnat ip prefix to 10.1.0.0/24",
        ),
        (
            &nft[1],
            "ip saddr 10.201.0.10/32 tcp dport 443 counter accept",
        ),
    ] {
        assert!(doc.contains(want), "missing {want:?} in\n{doc}");
    }
}

#[test]
fn ipsec_overlap_example_runs() {
    let nft = rendered("ipsec.md");
    assert_eq!(nft.len(), 2, "Paris and Lyon; the office on our own subnet");
    for want in [
        "chain steer {\n\t\ttype filter hook prerouting priority mangle; policy accept;",
        "iifname \"lan0\" ip daddr { 10.93.0.0/24 } meta mark set 0x6b61 comment \"twin-steer\"",
        "ip saddr 10.1.0.0/24 ip daddr 10.93.0.0/24 dnat ip prefix to 10.1.0.0/24",
        "oifname \"lan0\" counter drop comment \"ipsec-twin-2a2393-no-sa-lan\"",
    ] {
        assert!(nft[1].contains(want), "missing {want:?} in\n{}", nft[1]);
    }
    for want in [
        "ip saddr 10.1.0.0/24 ip daddr 10.92.1.0/24 dnat ip prefix to 192.168.1.0/24",
        "ip saddr 192.168.1.0/24 ct original ip daddr 10.72.0.0/24 snat ip prefix to 10.92.1.0/24",
        "ip saddr 192.168.1.0/24 ct original ip daddr 10.72.0.0/24 tcp dport { 22, 80 } counter accept",
    ] {
        assert!(nft[0].contains(want), "missing {want:?} in\n{}", nft[0]);
    }
}

#[test]
fn vpc_peering_ipv6_example_runs() {
    let nft = rendered_in("vpc-peering.md", "IPv6");
    assert_eq!(nft.len(), 2, "acme and marvelous");
    for (doc, want) in [
        (
            &nft[0],
            "ip6 saddr 2001:db8:1::/64 ip6 daddr 2001:db8:2::/64 jump peering-marvelous-5c3003-out",
        ),
        (
            &nft[0],
            "ip6 saddr 2001:db8:ff::2 udp dport 7781 counter accept comment \"peering-marvelous-5c3003-hello6\"",
        ),
        (
            &nft[1],
            "ip6 saddr 2001:db8:1::10/128 tcp dport 443 counter accept",
        ),
        (
            &nft[1],
            "ip6 saddr != { 2001:db8:1::/64 } icmpv6 type echo-request",
        ),
    ] {
        assert!(doc.contains(want), "missing {want:?} in\n{doc}");
    }
}
