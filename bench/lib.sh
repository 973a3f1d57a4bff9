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
