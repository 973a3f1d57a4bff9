#!/usr/bin/env bash
# VPN (WireGuard) failover loss window, kawaii vs keepalived + wireguard-go, in the two-zone lab
# (`kawaii lab up --zones 2`). Not a test: a laptop (namespace kvf-laptop, 192.0.2.2, on a link
# of its own to the lab's router) pings vm-a (10.1.0.10) through WireGuard every 10 ms, its
# endpoint zone A's public VIP 203.0.113.10:51820; zone A's gateway is then SIGKILLed and cut
# off as in bench/failover; we print the longest gap between replies for
#   1. kawaii (`[wireguard]` in both zones with the same key; advert_interval_cs = 5), and
#   2. keepalived (vrrp_version 3; advert_int 1, then 0.05) moving zone A's VIPs between two
#      wireguard-go gateways with the same key and peer, the way one builds it without kawaii,
# and the ratios. Needs root.
# Usage: bench/vpn-failover/run.sh [path/to/kawaii]
#   ROUNDS=N  rounds (default 1; several print the medians too)
#   WINDOW=S  seconds to wait for replies to come back after the failure (default 30)
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"
shopt -s inherit_errexit   # a failure inside $(...) stops the run too
KAWAII=${1:-${CARGO_TARGET_DIR:-target}/debug/kawaii}
KAWAII=$(readlink -f "$KAWAII")
ROUNDS=${ROUNDS:-1} WINDOW=${WINDOW:-30}
NS=klab LAPTOP=kvf-laptop   # the lab's namespace prefix; the laptop's namespace (ours)
if [ -e /run/kawaii-lab/lab.json ]; then echo "a lab is up already; kawaii lab down first" >&2; exit 1; fi
if [ -e "/run/netns/$LAPTOP" ]; then echo "namespace $LAPTOP exists; ip netns del $LAPTOP first" >&2; exit 1; fi
WORK=$(mktemp -d /tmp/kawaii-vpn-failover.XXXXXX)

# Every process we start leaves its pid in $WORK/*.pid; only those are killed.
stop_ours() {
  local f p
  for f in "$WORK"/*.pid; do
    [ -e "$f" ] || continue
    while read -r p; do kill -9 "$p" 2>/dev/null || true; done < "$f"
    rm -f "$f"
  done
}
# The lab on config $1; $WORK/lab says it is ours to take down (never another one's lab).
lab_up() { "$KAWAII" lab up --zones 2 --config "$1" >/dev/null; touch "$WORK/lab"; }
# Between runs and on exit: our processes, our lab (its own namespaces and recorded pids), the
# laptop's namespace (its veth goes with it). wireguard-go's sockets live on private tmpfs mounts
# (start_wg) that vanish with their last process.
teardown() {
  stop_ours
  if [ -e "$WORK/lab" ]; then "$KAWAII" lab down >/dev/null 2>&1 || true; rm -f "$WORK/lab"; fi
  ip netns del "$LAPTOP" 2>/dev/null || true
}
trap 'teardown; rm -rf "$WORK"' EXIT

lx() { ip netns exec "$LAPTOP" "$@"; }
now() { date +%s.%N; }

# `wg` on our wireguard-go instance $1 (its mount namespace holds its UAPI socket).
wgx() { local pid; pid=$(cat "$WORK/$1-wg.pid"); shift; nsenter -t "$pid" -m -n wg "$@"; }
# wireguard-go as wg0 in namespace $1 (instance name $2). `ip netns exec` gives it a mount
# namespace of its own; a tmpfs on /run/wireguard there keeps its socket from every other run.
start_wg() {
  ip netns exec "$1" sh -c 'mount -t tmpfs -o mode=0700 kvf /run/wireguard && exec wireguard-go -f wg0' \
    > "$WORK/$2-wg.log" 2>&1 &
  echo $! > "$WORK/$2-wg.pid"
  disown   # we kill it ourselves; no "Killed" notice from bash
  for _ in $(seq 1 100); do wgx "$2" show wg0 >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "wireguard-go in $1 did not start" >&2; cat "$WORK/$2-wg.log" >&2; return 1
}

# The laptop: 192.0.2.2 on a veth to the router (192.0.2.1 on its kvf0), wireguard-go set up
# from $WORK/showconf (kawaii's `peer showconf laptop`) and its own key, as an operator would.
laptop_up() {
  ip netns add "$LAPTOP"
  lx ip link set lo up
  ip link add kvf0 netns "$NS-router" type veth peer name eth0 netns "$LAPTOP"
  nx router ip addr add 192.0.2.1/24 dev kvf0
  nx router ip link set kvf0 up
  lx ip addr add 192.0.2.2/24 dev eth0
  lx ip link set eth0 up
  lx ip route add default via 192.0.2.1
  start_wg "$LAPTOP" laptop
  grep -v '^Address = ' "$WORK/showconf" > "$WORK/laptop.conf"   # wg-quick's line; wg rejects it
  wgx laptop setconf wg0 "$WORK/laptop.conf"
  wgx laptop set wg0 private-key "$WORK/laptop.key"
  lx ip addr add "$LAPTOP_ADDR" dev wg0
  lx ip link set wg0 up
  for net in $(sed -n 's/^AllowedIPs = //p' "$WORK/showconf" | tr ',' ' '); do
    lx ip route replace "$net" dev wg0
  done
  # The first ping makes the handshake; give it a few tries.
  for _ in $(seq 1 20); do lx ping -c1 -W1 10.1.0.10 >/dev/null 2>&1 && return 0; done
  echo "the laptop does not reach vm-a through WireGuard" >&2; return 1
}


# Epoch of the latest reply in ping log $1 (0 if none).
last_reply() { sed -n 's/^\[\([0-9.]*\)\].*bytes from.*/\1/p' "$1" | tail -1 | grep . || echo 0; }

# The laptop pings vm-a; zone A fails after 2 s. We wait until replies flow again (one within
# the last 0.3 s, at least 1.5 s after the failure) or WINDOW s pass, then 1 s more. Prints the
# longest gap in ms, or "none" if replies had not come back when we stopped.
measure() { # $1 = label
  local log="$WORK/$1.ping" t0 t stop
  # Line-buffered: we read the log while ping runs. Started without a shell function in between,
  # so that $! is ping itself (a function would run in a subshell of its own, and killing that
  # would leave ping behind).
  ip netns exec "$LAPTOP" stdbuf -oL ping -n -D -i 0.01 -W 1 10.1.0.10 > "$log" 2>&1 &
  local ping=$!
  echo "$ping" > "$WORK/ping.pid"
  sleep 2
  t0=$(now)
  fail_zone_a
  while :; do
    t=$(now)
    awk -v n="$t" -v t0="$t0" -v l="$(last_reply "$log")" -v w="$WINDOW" \
      'BEGIN { exit !((n - t0 > 1.5 && n - l < 0.3) || n - t0 > w) }' && break
    sleep 0.1
  done
  sleep 1
  kill "$ping"; wait "$ping" || true; rm -f "$WORK/ping.pid"
  stop=$(now)
  if awk -v s="$stop" -v l="$(last_reply "$log")" 'BEGIN { exit !(s - l < 1) }'; then gap_ms "$log"; else echo none; fi
}

# Zone A's VIPs moved by keepalived (advert_int $1) between two wireguard-go gateways.
keepalived_run() {
  # Our config, without [wireguard]: no kawaii device to remove, and no laptop of the lab's own
  # (the default HA lab brings one, on 192.0.2.2 like ours).
  lab_up "$WORK/base.toml"
  for gw in gw-a:150 gw-b:100; do
    local h=${gw%%:*} prio=${gw##*:}
    # Out goes kawaii (as in bench/failover): its processes, rules and VIPs.
    for p in $(ip netns pids "$NS-$h"); do kill -9 "$p" 2>/dev/null || true; done
    nx "$h" nft flush ruleset
    for a in 10.1.0.1/24:lan0 10.1.0.2/24:lan0 203.0.113.10/24:wan0 203.0.113.20/24:wan0; do
      nx "$h" ip addr del "${a%%:*}" dev "${a##*:}" 2>/dev/null || true
    done
    # All a gateway needs for laptop -> vm-a: forwarding and a way back to the laptop (vm-a
    # answers 10.8.0.2 through its gateway, the private VIP, which routes it into wg0). No NAT.
    nx "$h" sysctl -qw net.ipv4.ip_forward=1
    nx "$h" ip route replace default via 203.0.113.1 dev wan0
    # The same key and peer on both; wireguard-go answers from the address it was reached at.
    start_wg "$NS-$h" "$h"
    wgx "$h" set wg0 listen-port 51820 private-key "$WORK/gw.key" \
      peer "$LAPTOP_PUB" allowed-ips "$LAPTOP_ADDR"
    nx "$h" ip addr add 10.8.0.1/24 dev wg0
    nx "$h" ip link set wg0 up
    keepalived_zone_a "$prio" "$1" > "$WORK/$h.conf"
    ip netns exec "$NS-$h" keepalived --dont-fork --log-console --vrrp -f "$WORK/$h.conf" \
      -p "$WORK/$h-ka.pid" -r "$WORK/$h-vrrp.pid" > "$WORK/$h-ka.log" 2>&1 &
    echo $! > "$WORK/$h-keepalived.pid"
    disown
  done
  wait_vip gw-a 10.1.0.1 || { sleep 5; wait_vip gw-a 10.1.0.1; }
  wait_vip gw-a 203.0.113.10
  laptop_up
  measure "keepalived-$1-r$2"
  teardown
}

# Keys: the gateways' (shared by both zones) and the laptop's.
(umask 077; wg genkey > "$WORK/gw.key"; wg genkey > "$WORK/laptop.key")
LAPTOP_PUB=$(wg pubkey < "$WORK/laptop.key")
cat > "$WORK/base.toml" <<CFG
[gateway]
name = "lab-ha"
private_subnet = "10.1.0.0/24"
[ha]
advert_interval_cs = 5
preempt_delay = "0s"
[[zones]]
name = "zone-a"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "203.0.113.10/24"
public_gateway = "203.0.113.1"
private_vip = "10.1.0.1"
public_address = "203.0.113.11"
private_address = "10.1.0.251"
private_hosts = "10.1.0.0/27"
[[zones]]
name = "zone-b"
public_interface = "wan0"
private_interface = "lan0"
public_vip = "203.0.113.20/24"
public_gateway = "203.0.113.1"
private_vip = "10.1.0.2"
public_address = "203.0.113.21"
private_address = "10.1.0.252"
private_hosts = "10.1.0.32/27"
CFG
cat "$WORK/base.toml" - > "$WORK/kawaii.toml" <<CFG
[wireguard]
listen_port = 51820
address = "10.8.0.1/24"
private_key_file = "$WORK/gw.key"
[[wireguard.peers]]
name = "laptop"
public_key = "$LAPTOP_PUB"
CFG

declare -a K KA1 KA005
T_START=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  lab_up "$WORK/kawaii.toml"
  # The laptop's config, from zone A's kawaii (kept for the keepalived runs: the same laptop).
  nx gw-a env KAWAII_TOKEN="$(cat /run/kawaii-lab/state-zone-a/admin.token)" \
    "$KAWAII" peer showconf laptop > "$WORK/showconf"
  grep -q '^Endpoint = 203.0.113.10:51820' "$WORK/showconf" || { cat "$WORK/showconf" >&2; exit 1; }
  LAPTOP_ADDR=$(sed -n 's/^Address = //p' "$WORK/showconf")
  laptop_up
  sleep 1.5   # zone B hears of the laptop's session (sync every 0.5 s)
  K[r]=$(measure "kawaii-r$r")
  teardown
  echo "kawaii (advert_interval_cs = 5): longest gap ${K[r]} ms"
  KA1[r]=$(keepalived_run 1 "$r")
  echo "keepalived (advert_int 1): longest gap ${KA1[r]} ms"
  KA005[r]=$(keepalived_run 0.05 "$r")
  echo "keepalived (advert_int 0.05): longest gap ${KA005[r]} ms"
done

# "none" (no reply within WINDOW s) sorts last in the median.
show() { if [ "$1" = none ]; then echo "none in ${WINDOW}s"; else echo "$1"; fi; }
median() { printf '%s\n' "$@" | sed 's/^none$/inf/' | sort -g | awk '{ v[NR]=$1 } END { print v[int((NR+1)/2)] }' | sed 's/^inf$/none/'; }
ratio() { if [ "$2" = none ]; then echo -; elif [ "$1" = none ]; then echo "> $(awk -v w="$WINDOW" -v k="$2" 'BEGIN { printf "%.0f", w*1000/k }')x"; else awk -v a="$1" -v k="$2" 'BEGIN { printf "%.1fx", a/k }'; fi; }
echo
printf '%-6s %12s %22s %8s %25s %8s\n' round "kawaii ms" "keepalived adv 1 ms" ratio "keepalived adv 0.05 ms" ratio
for r in $(seq 1 "$ROUNDS"); do
  printf '%-6s %12s %22s %8s %25s %8s\n' "$r" "$(show "${K[r]}")" "$(show "${KA1[r]}")" "$(ratio "${KA1[r]}" "${K[r]}")" \
    "$(show "${KA005[r]}")" "$(ratio "${KA005[r]}" "${K[r]}")"
done
if [ "$ROUNDS" -gt 1 ]; then
  mk=$(median "${K[@]}"); m1=$(median "${KA1[@]}"); m2=$(median "${KA005[@]}")
  printf '%-6s %12s %22s %8s %25s %8s\n' median "$(show "$mk")" "$(show "$m1")" "$(ratio "$m1" "$mk")" "$(show "$m2")" "$(ratio "$m2" "$mk")"
fi
echo "($(( $(date +%s) - T_START )) s for $ROUNDS round(s))"
