#!/usr/bin/env bash
# Shared store benchmark (issue 15). Not a test. Prints, for the two-zone lab on etcd
# (`kawaii lab up --zones 2`) and for the single-instance lab on SQLite (`kawaii lab up`):
#   - write -> applied latency: from the API's acknowledgement of a write through zone-a to the
#     moment the other instance (etcd) / the same instance (SQLite) logs its last driver applied
#     that revision; p50, p99, max over 200 writes spaced 50 ms apart;
#   - sustained acknowledged writes per second through one instance (1 and 4 writers).
# Needs root (network namespaces). Usage: bench/store/run.sh [path/to/kawaii]
set -euo pipefail
KAWAII=${1:-${CARGO_TARGET_DIR:-target}/debug/kawaii}
KAWAII=$(readlink -f "$KAWAII")
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=/run/kawaii-lab
if [ -e $LAB/lab.json ]; then echo "a lab is up already; kawaii lab down first" >&2; exit 1; fi
WORK=$(mktemp -d /tmp/kawaii-store-bench.XXXXXX)
trap '"$KAWAII" lab down >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
N=${N:-100}  # write pairs (add + remove): 2N writes

echo "== etcd: two zones, one shared store (etcd 3.4 on tmpfs, management switch)"
KAWAII_LOG=info "$KAWAII" lab up --zones 2 > /dev/null
TA=$(cat $LAB/state-zone-a/admin.token)
ip netns exec klab-gw-a python3 "$HERE/writer.py" latency "$TA" "$N" 50 > "$WORK/etcd.acks"
sleep 1
LOG_A=$(ls -t $LAB/kawaii-zone-a-*.log | head -1)
LOG_B=$(ls -t $LAB/kawaii-zone-b-*.log | head -1)
echo "write on A -> applied on B: $(python3 "$HERE/applied.py" "$WORK/etcd.acks" "$LOG_B")"
echo "write on A -> applied on A: $(python3 "$HERE/applied.py" "$WORK/etcd.acks" "$LOG_A")"
for c in 1 4; do
  read -r n s < <(ip netns exec klab-gw-a python3 "$HERE/writer.py" rate "$TA" 5 $c)
  echo "sustained writes, $c writer(s): $(python3 -c "print('%.0f/s' % ($n/$s))")"
done
"$KAWAII" lab down > /dev/null

echo "== sqlite: one instance (the single-zone lab)"
"$KAWAII" lab up > /dev/null
T=$(cat $LAB/state/admin.token)
ip netns exec klab-gw python3 "$HERE/writer.py" latency "$T" "$N" 50 > "$WORK/sqlite.acks"
sleep 1
echo "write -> applied (same instance): $(python3 "$HERE/applied.py" "$WORK/sqlite.acks" $LAB/kawaii.log)"
for c in 1 4; do
  read -r n s < <(ip netns exec klab-gw python3 "$HERE/writer.py" rate "$T" 5 $c)
  echo "sustained writes, $c writer(s): $(python3 -c "print('%.0f/s' % ($n/$s))")"
done
