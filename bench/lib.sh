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

# keepalived_zone_a PRIORITY ADVERT_INT: keepalived's config (VRRPv3) for the two-zone lab's
# zone A virtual router (VRID 51) moving 10.1.0.1 (lan0) and 203.0.113.10 (wan0), as an operator
# writes it without kawaii; both gateways start BACKUP and the higher priority wins.
keepalived_zone_a() {
  cat <<CONF
global_defs { vrrp_version 3 }
vrrp_instance zone_a {
  state BACKUP
  interface lan0
  virtual_router_id 51
  priority $1
  advert_int $2
  virtual_ipaddress {
    10.1.0.1/24 dev lan0
    203.0.113.10/24 dev wan0
  }
}
CONF
}

# The two-zone lab (`kawaii lab up --zones 2`), with $NS its namespace prefix (klab):
# nx HOST CMD... runs CMD in the lab host; has_vip/wait_vip HOST IP (up to 10 s) look for an
# IPv4 address there; fail_zone_a kills what runs in zone A's gateway (the lab's processes only,
# by pid) and cuts its links; gap_ms LOG is the longest gap (ms) between consecutive replies of a
# `ping -D` log.
nx() { local h=$1; shift; ip netns exec "$NS-$h" "$@"; }
has_vip() { nx "$1" ip -o -4 addr show | grep -q " $2/"; }
wait_vip() { for _ in $(seq 1 200); do has_vip "$1" "$2" && return 0; sleep 0.05; done; echo "timeout waiting for $2 on $1" >&2; return 1; }
gap_ms() { grep 'bytes from' "$1" | sed 's/^\[\([0-9.]*\)\].*/\1/' |
  awk 'NR>1 { d=($1-p)*1000; if (d>m) m=d } { p=$1 } END { printf "%.0f\n", m }'; }
fail_zone_a() {
  for p in $(ip netns pids "$NS-gw-a"); do kill -9 "$p" 2>/dev/null || true; done
  nx gw-a ip link set wan0 down; nx gw-a ip link set lan0 down
}
