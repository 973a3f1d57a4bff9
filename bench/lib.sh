# Shared by the benchmarks: source it from a bench/*/run.sh.

# one_zone_config SUBNET: a one-zone gateway "bench" whose zone "z" has wan0/lan0, the public
# VIP 203.0.113.10/24 (next hop .1) and the private VIP 10.1.0.1. Append sections after it.
one_zone_config() {
  cat <<CFG
[gateway]
name = "bench"
private_subnet = "$1"
[[zones]]
name = "z"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "203.0.113.10/24"
public_gateway = "203.0.113.1"
private_vip = "10.1.0.1"
CFG
}

# upstream_bridge: the namespace "$P-up" (already created) gets the bridge br0 with
# 203.0.113.1/24, the upstream next hop of one_zone_config. plug NS IFNAME: a veth from the
# namespace "$P-NS" (named IFNAME there, up) to that bridge. Both use the caller's $P, its
# namespace prefix.
upstream_bridge() {
  ip -n "$P-up" link add br0 type bridge
  ip -n "$P-up" link set br0 up
  ip -n "$P-up" addr add 203.0.113.1/24 dev br0
}
plug() {
  ip link add "$P-$1" type veth peer name "$2" netns "$P-$1"
  ip link set "$P-$1" netns "$P-up"
  ip -n "$P-up" link set "$P-$1" master br0 up
  ip -n "$P-$1" link set "$2" up
}
