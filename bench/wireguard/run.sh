#!/usr/bin/env bash
# iperf3 throughput through a WireGuard tunnel between two network namespaces, for the
# userspace implementations in one run: kawaii-wg (the `kawaii-wgdev` bin, with TUN offload
# and UDP GSO), kawaii-wg with them off (`kawaii-plain`, KAWAII_WG_OFFLOAD=off: the
# one-packet-per-syscall path), wireguard-go and boringtun-cli. Both ends of each tunnel run
# the implementation under test. Not a test: it prints Mbit/s and ratios against wireguard-go.
#
#   sudo bench/wireguard/run.sh [seconds] [rounds]     (default 10 s, 1 round)
#
# With several rounds the implementations are interleaved (the order rotates every round) so
# that a burst of load on the shared machine hits all of them; it prints every round, then the
# median, min and max per implementation and the ratio of the medians.
#
# Env: CARGO_TARGET_DIR (default /work/target-wg), BENCH_CACHE (where boringtun-cli is
# installed, default /tmp/kawaii-wg-bench-cache), IMPLS (default
# "kawaii kawaii-plain wireguard-go boringtun"), PARALLEL (iperf3 -P, default 1).
# Namespaces are named wgb-<pid>-*, interfaces kb<pid><n>: nothing touches the root namespace,
# and UAPI sockets in /run/wireguard do not collide with anything else.
set -euo pipefail
umask 077

SECS=${1:-10}
ROUNDS=${2:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-wg}
CACHE=${BENCH_CACHE:-/tmp/kawaii-wg-bench-cache}
IMPLS=${IMPLS:-"kawaii kawaii-plain wireguard-go boringtun"}
PARALLEL=${PARALLEL:-1}
TAG=$$
WORK=$(mktemp -d /tmp/wgbench.XXXXXX)
PIDS=()
NSS=()

# Stops what one measurement started (pids from index $1 on) and deletes its namespaces.
teardown() {
    local from=$1 ns pid
    for pid in "${PIDS[@]:$from}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in "${PIDS[@]:$from}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for ns in "${NSS[@]:$2}"; do ip netns del "$ns" 2>/dev/null || true; done
    # Forget them, so that cleanup never signals a pid the system has reused since.
    PIDS=("${PIDS[@]:0:$from}")
    NSS=("${NSS[@]:0:$2}")
}

cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -f /run/wireguard/kb"$TAG"*.sock
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }

echo "building wgdev (release)..." >&2
(cd "$ROOT" && cargo build -q -p kawaii-wg --release --bin kawaii-wgdev)
WGDEV=$CARGO_TARGET_DIR/release/kawaii-wgdev

if [[ " $IMPLS " == *" boringtun "* ]] && [ ! -x "$CACHE/bin/boringtun-cli" ]; then
    echo "installing boringtun-cli 0.7 into $CACHE ..." >&2
    cargo install -q boringtun-cli --version "^0.7" --root "$CACHE"
fi

# topo N -> namespaces wgb-$TAG-N-{a,b} joined by a veth, 192.0.2.1/.2
topo() {
    local a=wgb-$TAG-$1-a b=wgb-$TAG-$1-b
    ip netns add "$a"; NSS+=("$a")
    ip netns add "$b"; NSS+=("$b")
    ip -n "$a" link set lo up; ip -n "$b" link set lo up
    ip netns exec "$a" ip link add va type veth peer name vb netns "$b"
    ip -n "$a" addr add 192.0.2.1/24 dev va; ip -n "$a" link set va up
    ip -n "$b" addr add 192.0.2.2/24 dev vb; ip -n "$b" link set vb up
}

wait_sock() { for _ in $(seq 100); do [ -S "/run/wireguard/$1.sock" ] && return 0; sleep 0.05; done; echo "no UAPI socket for $1" >&2; return 1; }

# start_uapi_impl NS IFNAME KEYFILE PEERPUB PEERIP TUNIP ENDPOINT CMD...
start_uapi_impl() {
    local ns=$1 ifn=$2 keyf=$3 ppub=$4 pip=$5 tip=$6 ep=$7; shift 7
    ip netns exec "$ns" "$@" "$ifn" >"$WORK/$ifn.log" 2>&1 &
    PIDS+=($!)
    wait_sock "$ifn"
    ip netns exec "$ns" wg set "$ifn" listen-port 51820 private-key "$keyf" \
        peer "$ppub" allowed-ips "$pip/32" endpoint "$ep:51820"
    ip -n "$ns" addr add "$tip/24" dev "$ifn"
    ip -n "$ns" link set "$ifn" mtu 1420 up
}

# start_kawaii NS IFNAME KEYFILE PEERPUB PEERIP TUNIP ENDPOINT OFFLOAD(on|off)
start_kawaii() {
    local ns=$1 ifn=$2 keyf=$3 ppub=$4 pip=$5 tip=$6 ep=$7 off=$8
    cat >"$WORK/$ifn.conf" <<CONF
[Interface]
Name = $ifn
ListenPort = 51820
PrivateKey = $(cat "$keyf")
[Peer]
PublicKey = $ppub
AllowedIPs = $pip/32
Endpoint = $ep:51820
CONF
    mkfifo "$WORK/$ifn.in"
    # The fifo is held open by a sleeper we start, so wgdev keeps running until cleanup.
    sleep 100000 >"$WORK/$ifn.in" &
    PIDS+=($!)
    KAWAII_WG_OFFLOAD=$off ip netns exec "$ns" "$WGDEV" "$WORK/$ifn.conf" \
        <"$WORK/$ifn.in" >"$WORK/$ifn.log" 2>&1 &
    PIDS+=($!)
    wait_sock "$ifn"
    ip -n "$ns" addr add "$tip/24" dev "$ifn"
}

declare -A MBPS ALL
run_one() {
    local n=$1 impl=$2 pid0=${#PIDS[@]} ns0=${#NSS[@]}
    topo "$n"
    local a=wgb-$TAG-$n-a b=wgb-$TAG-$n-b ia=kb$TAG${n}a ib=kb$TAG${n}b
    wg genkey >"$WORK/$n.ka"; wg genkey >"$WORK/$n.kb"
    local pa pb; pa=$(wg pubkey <"$WORK/$n.ka"); pb=$(wg pubkey <"$WORK/$n.kb")
    case $impl in
        kawaii)
            start_kawaii "$a" "$ia" "$WORK/$n.ka" "$pb" 10.8.0.2 10.8.0.1 192.0.2.2 on
            start_kawaii "$b" "$ib" "$WORK/$n.kb" "$pa" 10.8.0.1 10.8.0.2 192.0.2.1 on ;;
        kawaii-plain)
            start_kawaii "$a" "$ia" "$WORK/$n.ka" "$pb" 10.8.0.2 10.8.0.1 192.0.2.2 off
            start_kawaii "$b" "$ib" "$WORK/$n.kb" "$pa" 10.8.0.1 10.8.0.2 192.0.2.1 off ;;
        wireguard-go)
            start_uapi_impl "$a" "$ia" "$WORK/$n.ka" "$pb" 10.8.0.2 10.8.0.1 192.0.2.2 wireguard-go -f
            start_uapi_impl "$b" "$ib" "$WORK/$n.kb" "$pa" 10.8.0.1 10.8.0.2 192.0.2.1 wireguard-go -f ;;
        boringtun)
            export WG_SUDO=1
            start_uapi_impl "$a" "$ia" "$WORK/$n.ka" "$pb" 10.8.0.2 10.8.0.1 192.0.2.2 \
                "$CACHE/bin/boringtun-cli" -f --disable-drop-privileges
            start_uapi_impl "$b" "$ib" "$WORK/$n.kb" "$pa" 10.8.0.1 10.8.0.2 192.0.2.1 \
                "$CACHE/bin/boringtun-cli" -f --disable-drop-privileges ;;
    esac
    ip netns exec "$a" ping -q -c 3 -i 0.2 -W 2 10.8.0.2 >/dev/null
    ip netns exec "$b" iperf3 -s -1 -B 10.8.0.2 >/dev/null 2>&1 &
    PIDS+=($!)
    sleep 0.3
    ip netns exec "$a" iperf3 -c 10.8.0.2 -t "$SECS" -P "$PARALLEL" -J >"$WORK/$n.json"
    MBPS[$impl]=$(python3 -c 'import json,sys; print("%.0f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e6))' "$WORK/$n.json")
    ALL[$impl]="${ALL[$impl]:-} ${MBPS[$impl]}"
    teardown "$pid0" "$ns0"
}

n=0
read -r -a ORDER <<<"$IMPLS"
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    for impl in "${ORDER[@]}"; do
        n=$((n + 1))
        echo "  measuring $impl (${SECS}s)..." >&2
        # Not in $(...): PIDS/NSS must stay in this shell for cleanup, and background children
        # would hold a command substitution's pipe open.
        run_one "$n" "$impl"
    done
    printf 'round %-3s' "$round"
    for impl in $IMPLS; do printf ' %s=%s' "$impl" "${MBPS[$impl]}"; done
    if [ -n "${MBPS[wireguard-go]:-}" ] && [ "${MBPS[kawaii]:-}" ]; then
        printf '  kawaii/wg-go=%s' "$(python3 -c "print('%.2fx' % (${MBPS[kawaii]}/max(1,${MBPS[wireguard-go]})))")"
    fi
    echo
    ORDER=("${ORDER[@]:1}" "${ORDER[0]}")
done

echo
printf '%-14s %8s %8s %8s %12s\n' implementation median min max "vs wg-go"
for impl in $IMPLS; do
    python3 - "$impl" "${ALL[$impl]}" "${ALL[wireguard-go]:-}" <<'PY'
import statistics, sys
impl, xs, gos = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
med = statistics.median(xs)
ratio = "%.2fx" % (med / statistics.median(gos)) if gos and statistics.median(gos) > 0 else "-"
print("%-14s %8.0f %8.0f %8.0f %12s" % (impl, med, min(xs), max(xs), ratio))
PY
done
echo "($(nproc) CPUs, iperf3 -P $PARALLEL, ${SECS}s x $ROUNDS rounds, both tunnel ends in one machine, load average now $(cut -d' ' -f1-3 /proc/loadavg))"
