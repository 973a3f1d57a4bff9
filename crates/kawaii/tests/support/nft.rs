//! The gateway's nftables counters, read straight from the kernel (`nft -j`), for the end-to-end
//! tests that count what a rule did. Shared by `#[path]` (it needs `kawaii-drivers`' parser,
//! which `kawaii-testkit` cannot depend on without a cycle through `kawaii-wg`).

use kawaii_testkit::Host;

/// The packets counted by the rules (or set elements) whose comment is `comment`, summed.
pub fn rule_packets(gw: &Host, comment: &str) -> u64 {
    let text = gw
        .run(&["nft", "-j", "list", "table", "inet", "kawaii"])
        .expect("nft list");
    kawaii_drivers::nftables::parse_counters(&text)
        .expect("counters")
        .iter()
        .filter(|r| r.rule == comment)
        .map(|r| r.packets)
        .sum()
}
