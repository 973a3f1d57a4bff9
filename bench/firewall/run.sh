#!/usr/bin/env bash
# Firewall benchmark (not a test): how long one atomic apply of the `inet kawaii` table takes for
# 1k / 10k / 50k rules, and how long an API change takes to reach the kernel (p50/p99 over 100
# updates, from the API's answer to the rule being in the kernel, seen by `nft monitor`).
# Everything runs in a network namespace of its own, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
# KAWAII=path/to/kawaii compares another build (e.g. main's) under the same conditions.
if [ -n "${KAWAII:-}" ]; then
  K=$KAWAII
else
  cargo build --release -q -p kawaii
  K=${CARGO_TARGET_DIR:-$PWD/target}/release/kawaii
fi
NS=kbench-fw-$$
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"
X="ip netns exec $NS"
$X ip link set lo up
$X ip link add wan0 type veth peer name wan0p; $X ip link add lan0 type veth peer name lan0p
$X ip link set wan0 up; $X ip link set lan0 up
$X ip addr add 203.0.113.1/24 dev wan0

config() { # $1 = number of ingress rules
  one_zone_config 10.1.0.0/16
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    # distinct sources and ports so no two rules are alike
    print(f'[[ingress_rules]]\nsource = "198.{18 + i // 65536}.{(i // 256) % 256}.{i % 256}/32"\nports = "{1 + i % 65535}"')
PY
}

echo "== apply latency: one nft transaction replacing the whole table =="
printf "%8s %10s %10s\n" rules render_ms apply_ms
for n in 1000 10000 50000; do
  config "$n" > "$DIR/c$n.toml"
  t0=$(date +%s%N)
  $K render --config "$DIR/c$n.toml" --what nftables > "$DIR/c$n.nft"
  t1=$(date +%s%N)
  best=""
  for _ in 1 2 3; do
    a=$(date +%s%N); $X nft -f "$DIR/c$n.nft"; b=$(date +%s%N)
    ms=$(( (b - a) / 1000000 ))
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
  done
  printf "%8d %10d %10d\n" "$n" $(( (t1 - t0) / 1000000 )) "$best"
done
$X nft delete table inet kawaii

echo "== change -> converged: 100 API updates on a 1000-rule gateway =="
config 1000 > "$DIR/gw.toml"
$X env KAWAII_LOG=warn "$K" serve --config "$DIR/gw.toml" --state "$DIR/state" > "$DIR/kawaii.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do $X curl -sf localhost:7780/readyz >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN=$(cat "$DIR/state/admin.token")
$X python3 - "$TOKEN" <<'PY'
import json, socket, statistics, struct, subprocess, sys, threading, time, urllib.request
token = sys.argv[1]
seen = {}
pending = []  # the port being updated
# Every nftables commit ends with a NEWGEN message on the NFNLGRP_NFTABLES netlink group (what
# `nft monitor` prints as "# new generation"; nft 1.0.6's monitor itself crashes on elements of
# concatenated interval sets). At each commit the egress chain and set are listed once, and the
# commit's time is taken for every port that appeared with it.
NFT_MSG_NEWGEN = (10 << 8) | 15  # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN
mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
mon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
mon.bind((0, 1 << (7 - 1)))  # NFNLGRP_NFTABLES
# Both: an egress rule is a set element, or a rule when it overlaps another (or in builds
# before the sets).
LIST = [["nft", "list", "chain", "inet", "kawaii", "egress"],
        ["nft", "list", "set", "inet", "kawaii", "egress"]]
def watch():
    while True:
        data = mon.recv(1 << 20)
        t = time.monotonic()
        types, off = [], 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            types.append(kind)
            off += max(16, (length + 3) & ~3)
        if NFT_MSG_NEWGEN not in types or not pending:
            continue
        out = "".join(subprocess.run(c, capture_output=True, text=True).stdout for c in LIST)
        for word in out.replace("}", " ").replace(",", " ").split():
            if word.isdigit() and 20000 <= int(word) < 20100 and int(word) not in seen:
                seen[int(word)] = t
threading.Thread(target=watch, daemon=True).start()
time.sleep(0.5)
answered = {}
for i in range(100):
    port = 20000 + i
    pending[:] = [port]
    req = urllib.request.Request("http://127.0.0.1:7780/v1/egress-rules", method="POST",
        data=json.dumps({"protocol": "tcp", "ports": str(port)}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
    answered[port] = time.monotonic()
    deadline = time.monotonic() + 5
    while port not in seen and time.monotonic() < deadline:
        time.sleep(0.0005)
mon.close()
lat = sorted((seen[p] - answered[p]) * 1000 for p in answered if p in seen)
missing = 100 - len(lat)
# A rule can reach the kernel before the HTTP answer is read: that counts as 0 ms.
lat = [max(0.0, x) for x in lat]
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"updates: {len(lat)} converged, {missing} missing")
print(f"p50 {p(0.50):.1f} ms   p99 {p(0.99):.1f} ms   max {lat[-1]:.1f} ms")
PY
