#!/usr/bin/env bash
# Failover loss window, kawaii vs keepalived, in the two-zone lab (`kawaii lab up --zones 2`).
# Not a test: prints the longest gap between ping replies (vm-a -> internet, one echo per 10 ms)
# when zone-a's gateway is SIGKILLed and its links cut, for
#   1. kawaii (default advert interval 5 cs), and
#   2. keepalived (vrrp_version 3, stock advert_int 1) running in the same two gateways,
# and the ratio; then, for connection-state sync (conntrackd): how many of N open downloads
# survive the same failure with conntrack_sync on and off, and how long the sync of 10k and 100k
# entries takes (live, and as a resync after a conntrackd restart). Needs root.
# Usage: bench/failover/run.sh [path/to/kawaii]   (FLOWS=N sets the number of downloads)
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"
KAWAII=${1:-${CARGO_TARGET_DIR:-target}/debug/kawaii}
KAWAII=$(readlink -f "$KAWAII")
if [ -e /run/kawaii-lab/lab.json ]; then echo "a lab is up already; kawaii lab down first" >&2; exit 1; fi
WORK=$(mktemp -d /tmp/kawaii-failover.XXXXXX)
NS=klab
trap '"$KAWAII" lab down >/dev/null 2>&1 || true; for p in $(cat "$WORK"/*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT




measure() { # $1 = label, $2 = seconds to wait after the failure
  # Not through nx: a function runs in a subshell, and $! would be that shell, not ping.
  ip netns exec "$NS-vm-a" ping -n -D -i 0.01 -W 1 198.51.100.10 > "$WORK/$1.ping" 2>&1 &
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

# --- Connection-state sync (conntrackd) --------------------------------------------------------
# Flows surviving a zone kill: N slow downloads (a line every 0.1 s from the lab's stream server
# on the internet host, port 9000) from vm-a through zone A; zone A killed and cut; 4 s later a
# flow survived if it is open and its longest silence is under 1 s. With sync and without.
N=${FLOWS:-200}
survivors() { # $1 = label; prints "survived max_stall_ms"
  ip netns exec "$NS-vm-a" python3 /run/kawaii-lab/flows.py client --tcp "198.51.100.10:9000:$N" > "$WORK/$1.flows" 2>&1 &
  local c=$!; echo $c > "$WORK/client.pid"
  for _ in $(seq 1 300); do grep -q '^ready' "$WORK/$1.flows" && break; sleep 0.1; done
  sleep 1; kill -USR1 $c; sleep 0.5
  fail_zone_a
  wait_vip gw-b 10.1.0.1
  sleep 4
  kill -TERM $c 2>/dev/null; wait $c 2>/dev/null || true
  grep '^{' "$WORK/$1.flows" | tail -1 | python3 -c '
import json, sys
w = json.loads(sys.stdin.read())
print(sum(1 for s in w["tcp"] if s < 1000), max(w["tcp"], default=0))'
}
SYNC_CFG="$WORK/nosync.toml"
"$KAWAII" lab up --zones 2 > /dev/null
sed 's/^\[ha\]$/[ha]\nconntrack_sync = false/' /run/kawaii-lab/gateway.toml > "$SYNC_CFG"
read -r S_ON S_ON_MAX < <(survivors sync-on)
echo "conntrack_sync on: $S_ON of $N flows survived (longest stall $S_ON_MAX ms)"
"$KAWAII" lab down > /dev/null
"$KAWAII" lab up --zones 2 --config "$SYNC_CFG" > /dev/null
read -r S_OFF S_OFF_MAX < <(survivors sync-off)
echo "conntrack_sync off: $S_OFF of $N flows survived"
"$KAWAII" lab down > /dev/null

# Resync time: E entries NAT'd to zone A's VIP are loaded into gw-a's kernel at once
# (conntrack -R). With reliable netlink events the kernel refuses the inserts whose event
# conntrackd cannot take in time (a real flow's packet would be dropped and retransmitted), so
# gw-a may hold fewer than E: the target is what gw-a holds. We time (1) until gw-b's kernel
# holds as many (live sync), and (2) after flushing gw-b's table and killing its conntrackd
# (kawaii restarts it; it asks gw-a for a bulk update), until it holds them again (resync), and
# print kawaii's own figure (last_resync_ms, which includes its 1 s settle window).
count() { nx "$1" conntrack -C; }
ms_now() { date +%s%3N; }
wait_count() { # $1 host, $2 target; prints ms waited (or "timeout")
  local t0; t0=$(ms_now)
  for _ in $(seq 1 1200); do [ "$(count "$1")" -ge "$2" ] && { echo $(( $(ms_now) - t0 )); return; }; sleep 0.05; done
  echo timeout
}
conntrackd_pid() { for p in $(ip netns pids "$NS-$1"); do [ "$(cat /proc/$p/comm 2>/dev/null)" = conntrackd ] && echo $p; done; true; }
resync_ms() { # kawaii's view, from gw-b's status
  local tok; tok=$(cat /run/kawaii-lab/state-zone-b/admin.token)
  nx gw-b curl -s -H "Authorization: Bearer $tok" http://127.0.0.1:7780/v1/status |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["details"]["conntrack_sync"].get("last_resync_ms"))'
}
declare -A INSERT HELD LIVE RESYNC KRESYNC
for E in 10000 100000; do
  "$KAWAII" lab up --zones 2 > /dev/null
  # Sources in zone A's hosts (10.1.0.3-31: never a VIP, which the sync ignores).
  python3 - "$E" > "$WORK/entries.txt" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    host, port = i % 29 + 3, 10000 + i // 29
    print(f"-I -p tcp -s 10.1.0.{host} -d 198.51.100.10 --sport {port} --dport 443 "
          f"--state ESTABLISHED -t 3600 -u ASSURED,SEEN_REPLY --src-nat 203.0.113.10")
PY
  base_a=$(count gw-a); base_b=$(count gw-b)
  # In slices of 10k, 0.2 s apart, so that the kernel takes them all.
  split -l 10000 "$WORK/entries.txt" "$WORK/slice."
  t0=$(ms_now)
  for f in "$WORK"/slice.*; do nx gw-a conntrack -R "$f" >/dev/null 2>&1 || true; sleep 0.2; done
  INSERT[$E]=$(( $(ms_now) - t0 ))
  rm -f "$WORK"/slice.*
  HELD[$E]=$(( $(count gw-a) - base_a ))
  LIVE[$E]=$(wait_count gw-b $((base_b + HELD[$E])))
  old=$(conntrackd_pid gw-b)
  nx gw-b conntrack -F >/dev/null 2>&1 || true
  [ -n "$old" ] && kill -9 $old
  RESYNC[$E]=$(wait_count gw-b "${HELD[$E]}")
  sleep 3
  KRESYNC[$E]=$(resync_ms)
  echo "$E entries (gw-a took ${HELD[$E]} in ${INSERT[$E]} ms): gw-b had them all ${LIVE[$E]} ms after the insert; resync after a restart ${RESYNC[$E]} ms (kawaii's last_resync_ms ${KRESYNC[$E]})"
  "$KAWAII" lab down > /dev/null
done

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
  keepalived_zone_a "$prio" 1 > "$WORK/$h.conf"
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
echo
echo "flows surviving a zone kill: $S_ON of $N with conntrack_sync (longest stall $S_ON_MAX ms), $S_OFF of $N without"
printf '%-10s %10s %10s %18s %12s %22s\n' "entries" "gw-a took" "insert ms" "live lag after ms" "resync ms" "kawaii last_resync_ms"
for E in 10000 100000; do printf '%-10s %10s %10s %18s %12s %22s\n' "$E" "${HELD[$E]}" "${INSERT[$E]}" "${LIVE[$E]}" "${RESYNC[$E]}" "${KRESYNC[$E]}"; done
