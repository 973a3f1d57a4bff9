//! The gateway configs tests start from, so a test writes only what it adds.

/// A one-zone gateway named `name` on `10.1.0.0/24`: zone `zone-a` on `wan0`/`lan0` with the
/// public VIP `203.0.113.10/24` (next hop `.1`) and the private VIP `10.1.0.1`. `zone_extra`
/// goes into the zone's table (e.g. `private_address = "10.1.0.251"`); append the test's own
/// sections (`[ha]`, `[[ingress_rules]]`, ...) after it.
pub fn one_zone(name: &str, zone_extra: &str) -> String {
    format!(
        r#"[gateway]
name = "{name}"
private_subnet = "10.1.0.0/24"

[[zones]]
name = "zone-a"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "203.0.113.10/24"
public_gateway = "203.0.113.1"
private_vip = "10.1.0.1"
{zone_extra}
"#
    )
}

/// [`one_zone`] with a second zone, `zone-b` (public VIP `203.0.113.20/24`, private VIP
/// `10.1.0.2`), both with the instance addresses HA needs (`10.1.0.251`, `10.1.0.252`).
pub fn two_zones(name: &str) -> String {
    format!(
        r#"{}
[[zones]]
name = "zone-b"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "203.0.113.20/24"
public_gateway = "203.0.113.1"
private_vip = "10.1.0.2"
private_address = "10.1.0.252"
"#,
        one_zone(name, r#"private_address = "10.1.0.251""#)
    )
}

/// A gateway on `10.1.0.0/24` with `n` zones `z0`, `z1`, ...: zone `i` has the public VIP
/// `203.0.113.(10+i)/24`, the private VIP `10.1.0.(1+i)` and the instance address
/// `10.1.0.(100+i)`. `sections` (e.g. an `[ha]` table) come after `[gateway]`.
pub fn zones(n: usize, sections: &str) -> String {
    let mut toml = format!("[gateway]\nprivate_subnet = \"10.1.0.0/24\"\n{sections}\n");
    for i in 0..n {
        toml.push_str(&format!(
            "[[zones]]\nname = \"z{i}\"\npublic_interface = \"wan0\"\nprivate_interface = \"lan0\"\npublic_vip = \"203.0.113.{}/24\"\npublic_gateway = \"203.0.113.1\"\nprivate_vip = \"10.1.0.{}\"\nprivate_address = \"10.1.0.{}\"\n",
            10 + i,
            1 + i,
            100 + i
        ));
    }
    toml
}
