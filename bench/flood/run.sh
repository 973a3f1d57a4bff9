#!/usr/bin/env bash
# SYN-flood benchmark (not a test): protection on ([ingress] synproxy = true, the default) against
# off, side by side, at several flood rates. A spoofed-source SYN flood (hping3 --rand-source)
# hits a forwarded port while a legitimate client on another host opens 200 connections (HTTP
# GET through the forward, 25 a second). Per run: legitimate success, connect p99, the
# machine's softirq and busy CPU and kawaii's own CPU over the window, and the gateway's
# conntrack peak. Everything runs in network namespaces of its own, removed on exit; the
# spoofed SYN-ACKs die at the upstream namespace, which forwards nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
command -v hping3 >/dev/null || { echo "hping3 missing (scripts/setup installs it)" >&2; exit 1; }
if [ -n "${KAWAII:-}" ]; then
  K=$KAWAII
else
  cargo build --release -q -p kawaii
  K=${CARGO_TARGET_DIR:-$PWD/target}/release/kawaii
fi
# Flood rates (hping3 interval in µs; 0 = no flood, "flood" = as fast as hping3 can) and the
# window of each run.
RATES=${RATES:-"0 500 100 flood"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
P=kbf$$
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for n in gw up cli att vm; do
    ip netns pids "$P-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$P-$n" 2>/dev/null || true
  done
  rm -rf "$DIR"
}
trap cleanup EXIT
for n in gw up cli att vm; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
# "up": the upstream segment (a bridge) with the gateway's wan, the client and the attacker.
upstream_bridge
plug gw wan0; plug cli eth0; plug att eth0
ip -n "$P-cli" addr add 203.0.113.20/24 dev eth0
ip -n "$P-att" addr add 203.0.113.66/24 dev eth0
ip link add "$P-lan" type veth peer name eth0 netns "$P-vm"
ip link set "$P-lan" netns "$P-gw" name lan0
ip -n "$P-gw" link set lan0 up; ip -n "$P-vm" link set eth0 up
ip -n "$P-vm" addr add 10.1.0.10/24 dev eth0
ip -n "$P-vm" route add default via 10.1.0.1
ip netns exec "$P-vm" python3 crates/testkit/src/svc.py http vm 80 >/dev/null 2>&1 &
PIDS+=($!)

config() { # $1 = true|false
  one_zone_config 10.1.0.0/24
  cat <<CFG
[ingress]
synproxy = $1
[[ingress_rules]]
ports = "80"
[[nat_rules]]
destination = "10.1.0.10"
ports = "80"
CFG
}

cpu() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8, $8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

run() { # $1 = true|false, $2 = rate
  local on=$1 rate=$2
  config "$on" > "$DIR/gw.toml"
  rm -rf "$DIR/state"
  ip netns exec "$P-gw" env KAWAII_LOG=warn "$K" serve --config "$DIR/gw.toml" --state "$DIR/state" \
    > "$DIR/kawaii.log" 2>&1 &
  local kp=$!
  for _ in $(seq 100); do
    ip netns exec "$P-cli" curl -sf -m 1 http://203.0.113.10/ >/dev/null 2>&1 && break
    sleep 0.1
  done
  # Earlier runs' entries are gone with the table? No: conntrack outlives it. Start clean.
  ip netns exec "$P-gw" conntrack -F >/dev/null 2>&1 || true
  local fl=""
  if [ "$rate" != 0 ]; then
    local how="-i u$rate"; [ "$rate" = flood ] && how="--flood"
    ip netns exec "$P-att" timeout -s INT "$SECONDS_PER_RUN" hping3 -q -S --rand-source -p 80 $how \
      203.0.113.10 > "$DIR/hping.log" 2>&1 &
    fl=$!
    sleep 1
  fi
  read -r b0 s0 t0 < <(cpu); local k0; k0=$(proc_cpu "$kp")
  ip netns exec "$P-cli" python3 crates/kawaii/tests/flood_clients.py legit 203.0.113.10 80 200 0.04 \
    > "$DIR/legit.json" &
  local lp=$! peak=0
  while kill -0 "$lp" 2>/dev/null; do
    local c; c=$(ip netns exec "$P-gw" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0)
    [ "$c" -gt "$peak" ] && peak=$c
    sleep 0.2
  done
  read -r b1 s1 t1 < <(cpu); local k1; k1=$(proc_cpu "$kp")
  [ -n "$fl" ] && wait "$fl" 2>/dev/null || true
  local sent=0
  [ -n "$fl" ] && sent=$(grep -o '[0-9]* packets transmitted' "$DIR/hping.log" | awk '{print $1}' || echo 0)
  kill "$kp" 2>/dev/null || true; wait "$kp" 2>/dev/null || true
  python3 - "$on" "$rate" "${sent:-0}" "$peak" "$b0" "$b1" "$s0" "$s1" "$t0" "$t1" "$k0" "$k1" "$DIR/legit.json" <<'PY'
import json, sys
on, rate, sent, peak = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
b0, b1, s0, s1, t0, t1, k0, k1 = map(float, sys.argv[5:13])
r = json.load(open(sys.argv[13]))
total = max(1.0, t1 - t0)
row = {"synproxy": on, "rate": rate, "sent": sent, "ok": r["ok"] / r["count"],
       "p99_ms": r["p99_ms"] or float("nan"), "busy": (b1 - b0) / total, "softirq": (s1 - s0) / total,
       "kawaii_cpu": (k1 - k0) / total, "ct_peak": peak}
print(json.dumps(row))
PY
}

ROWS="$DIR/rows.jsonl"
: > "$ROWS"
for rate in $RATES; do
  for on in true false; do
    run "$on" "$rate" | tee -a "$ROWS" >&2
  done
done
python3 - "$ROWS" "$SECONDS_PER_RUN" <<'PY'
import json, sys
secs = float(sys.argv[2])
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["rate"], r["synproxy"]): r for r in rows}
print()
print("flood: hping3 -S --rand-source against the forwarded port; legitimate: 200 HTTP GETs at 25/s")
print(f"{'SYN rate':>8} {'SYNs':>8} | {'ok on':>7} {'ok off':>7} | {'p99 on':>8} {'p99 off':>8} {'ratio':>6} |"
      f" {'softirq on':>10} {'off':>6} | {'busy on':>7} {'off':>6} | {'ct on':>6} {'ct off':>7} {'ratio':>7}")
for rate in dict.fromkeys(r["rate"] for r in rows):
    on, off = by.get((rate, "true")), by.get((rate, "false"))
    if not on or not off:
        continue
    # The rate hping3 achieved (the window includes a second before the clients start).
    label = "none" if rate == "0" else f"{max(on['sent'], off['sent']) / secs:.0f}/s"
    p_ratio = off["p99_ms"] / on["p99_ms"] if on["p99_ms"] else float("nan")
    ct_ratio = off["ct_peak"] / max(1, on["ct_peak"])
    print(f"{label:>8} {max(on['sent'], off['sent']):>8} | {on['ok']:>7.1%} {off['ok']:>7.1%} |"
          f" {on['p99_ms']:>6.1f}ms {off['p99_ms']:>6.1f}ms {p_ratio:>6.2f} |"
          f" {on['softirq']:>10.1%} {off['softirq']:>6.1%} | {on['busy']:>7.1%} {off['busy']:>6.1%} |"
          f" {on['ct_peak']:>6} {off['ct_peak']:>7} {ct_ratio:>7.1f}")
print("ratio: off / on (p99: how much slower without protection; ct: how many more entries)")
PY
