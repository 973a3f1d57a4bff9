#!/usr/bin/env bash
# Failover loss window, kawaii vs keepalived, in the two-zone lab (`kawaii lab up --zones 2`).
# Not a test: prints the longest gap between ping replies (vm-a -> internet, one echo per 10 ms)
# when zone-a's gateway is SIGKILLed and its links cut, for
#   1. kawaii (default advert interval 5 cs), and
#   2. keepalived (vrrp_version 3, stock advert_int 1) running in the same two gateways,
# and the ratio. Needs root. Usage: bench/failover/run.sh [path/to/kawaii]
set -euo pipefail
KAWAII=${1:-${CARGO_TARGET_DIR:-target}/debug/kawaii}
KAWAII=$(readlink -f "$KAWAII")
if [ -e /run/kawaii-lab/lab.json ]; then echo "a lab is up already; kawaii lab down first" >&2; exit 1; fi
WORK=$(mktemp -d /tmp/kawaii-failover.XXXXXX)
NS=klab
trap '"$KAWAII" lab down >/dev/null 2>&1 || true; for p in $(cat "$WORK"/*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

nx() { local h=$1; shift; ip netns exec "$NS-$h" "$@"; }
has_vip() { nx "$1" ip -o -4 addr show | grep -q " $2/"; }
wait_vip() { for _ in $(seq 1 200); do has_vip "$1" "$2" && return 0; sleep 0.05; done; echo "timeout waiting for $2 on $1" >&2; return 1; }

# Longest gap (ms) between consecutive "[epoch] 64 bytes from" lines.
gap_ms() { grep 'bytes from' "$1" | sed 's/^\[\([0-9.]*\)\].*/\1/' |
  awk 'NR>1 { d=($1-p)*1000; if (d>m) m=d } { p=$1 } END { printf "%.0f\n", m }'; }

# Kills what runs in zone-a's gateway (our lab's processes only, by pid) and cuts its links.
fail_zone_a() {
  for p in $(ip netns pids "$NS-gw-a"); do kill -9 "$p" 2>/dev/null || true; done
  nx gw-a ip link set wan0 down; nx gw-a ip link set lan0 down
}

measure() { # $1 = label, $2 = seconds to wait after the failure
  nx vm-a ping -n -D -i 0.01 -W 1 198.51.100.10 > "$WORK/$1.ping" 2>&1 &
  echo $! > "$WORK/ping.pid"
  sleep 2
  fail_zone_a
  wait_vip gw-b 10.1.0.1
  sleep "$2"
  kill -INT "$(cat "$WORK/ping.pid")"; sleep 0.3
  gap_ms "$WORK/$1.ping"
}

echo "== kawaii (advert_interval_cs = 5)"
"$KAWAII" lab up --zones 2 > /dev/null
K=$(measure kawaii 1)
echo "kawaii: longest gap ${K} ms"
"$KAWAII" lab down > /dev/null

echo "== keepalived (vrrp_version 3, advert_int 1)"
"$KAWAII" lab up --zones 2 > /dev/null
# Replace kawaii in both gateways by keepalived; a plain masquerade stands in for kawaii's SNAT.
for gw in gw-a gw-b; do
  for p in $(ip netns pids "$NS-$gw"); do kill -9 "$p" 2>/dev/null || true; done
  nx $gw nft delete table inet kawaii 2>/dev/null || true
  for a in 10.1.0.1/24:lan0 10.1.0.2/24:lan0 203.0.113.10/24:wan0 203.0.113.20/24:wan0; do
    nx $gw ip addr del "${a%%:*}" dev "${a##*:}" 2>/dev/null || true
  done
  nx $gw nft -f - <<NFT
table ip bench {
  chain post {
    type nat hook postrouting priority srcnat;
    oifname "wan0" masquerade
  }
}
NFT
done
for gw in gw-a:150 gw-b:100; do
  h=${gw%%:*}; prio=${gw##*:}
  cat > "$WORK/$h.conf" <<CONF
global_defs { vrrp_version 3 }
vrrp_instance zone_a {
  state BACKUP
  interface lan0
  virtual_router_id 51
  priority $prio
  advert_int 1
  virtual_ipaddress {
    10.1.0.1/24 dev lan0
    203.0.113.10/24 dev wan0
  }
}
CONF
  nx "$h" keepalived --dont-fork --log-console --vrrp -f "$WORK/$h.conf" \
    -p "$WORK/$h.kpid" -r "$WORK/$h.vpid" > "$WORK/$h.log" 2>&1 &
  echo $! > "$WORK/$h.pid"
done
wait_vip gw-a 10.1.0.1 || { sleep 5; wait_vip gw-a 10.1.0.1; }
sleep 1
KA=$(measure keepalived 2)
echo "keepalived: longest gap ${KA} ms"
"$KAWAII" lab down > /dev/null

echo
printf '%-12s %8s\n' "speaker" "loss ms"
printf '%-12s %8s\n' "kawaii" "$K" "keepalived" "$KA"
awk -v k="$K" -v ka="$KA" 'BEGIN { if (k > 0) printf "keepalived / kawaii loss window: %.1fx\n", ka / k }'
