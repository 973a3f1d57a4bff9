#!/usr/bin/env bash
# Pipes through the WireGuard tunnel, side by side in one run: a kawaii pipe pair
# (client node -> tunnel -> server node -> service), the same two hops made of socat over the
# same tunnel, and a direct connection over the tunnel without any proxy. Not a test: prints
# iperf3 throughput (one stream and 8 streams) and HTTP connections/s (wrk, a new connection per
# request, against nginx), with ratios against socat and against direct.
#
#   sudo bench/pipes/run.sh [seconds]        (default 8)
#
# Two namespaces pipb-<pid>-{server,client} joined by a veth (192.0.2.1/.2); kawaii edge nodes
# in both, each with its own /run/wireguard (a tmpfs in its own mount namespace). The services
# (iperf3, nginx) run in the server namespace on 127.0.0.1 and on its VPN address. Nothing
# touches the root namespace; everything started is stopped by pid on exit.
set -euo pipefail
umask 077

SECS=${1:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TAG=$$
WORK=$(mktemp -d /tmp/pipebench.XXXXXX)
S=pipb-$TAG-server
C=pipb-$TAG-client
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for ns in "$S" "$C"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in iperf3 socat wrk nginx wg; do command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }; done

echo "building kawaii (release)..." >&2
(cd "$ROOT" && cargo build -q --release -p kawaii)
KAWAII=$TARGET/release/kawaii

ip netns add "$S"; ip netns add "$C"
ip -n "$S" link set lo up; ip -n "$C" link set lo up
ip netns exec "$S" ip link add eth0 type veth peer name eth0 netns "$C"
ip -n "$S" addr add 192.0.2.1/24 dev eth0; ip -n "$S" link set eth0 up
ip -n "$C" addr add 192.0.2.2/24 dev eth0; ip -n "$C" link set eth0 up

SKEY=$("$KAWAII" wg genkey); SPUB=$(echo "$SKEY" | "$KAWAII" wg pubkey)
CKEY=$("$KAWAII" wg genkey); CPUB=$(echo "$CKEY" | "$KAWAII" wg pubkey)

# An edge node: NAME PORT VPN-IP KEY, its peer PEER-NAME PEER-PUB PEER-IP, and, for a client,
# the peer's ENDPOINT (its pipes then dial through that peer).
node_toml() {
  cat <<EOF
[gateway]
name = "$1"
[wireguard]
listen_port = $2
address = "$3/24"
private_key = "$4"
[[wireguard.peers]]
name = "$5"
public_key = "$6"
allowed_ips = ["$7/32"]
EOF
  if [ -n "${8:-}" ]; then
    printf 'endpoint = "%s"\npersistent_keepalive = 25\n' "$8"
  fi
  for pipe in iperf:6201:5201 web:6080:80; do
    IFS=: read -r name port remote <<<"$pipe"
    printf '[[pipes]]\nname = "%s"\nport = %s\nremote = "127.0.0.1:%s"\n' "$name" "$port" "$remote"
    if [ -n "${8:-}" ]; then
      printf 'peer = "%s"\n' "$5"
    fi
  done
}
node_toml server 8765 10.192.0.1 "$SKEY" client "$CPUB" 10.192.0.2 >"$WORK/server.toml"
node_toml client 8766 10.192.0.2 "$CKEY" server "$SPUB" 10.192.0.1 192.0.2.1:8765 >"$WORK/client.toml"

node() { # NS NAME
    ip netns exec "$1" sh -c "mkdir -p /run/wireguard && mount -t tmpfs kawaii-wg /run/wireguard && exec $KAWAII serve --config $WORK/$2.toml --state $WORK/$2-state" \
        >"$WORK/$2.log" 2>&1 &
    PIDS+=($!)
}
node "$S" server
node "$C" client

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom | base64 >"$WORK/www/index.html"
cat >"$WORK/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy;
  fastcgi_temp_path $WORK/fcgi; uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  server { listen 80; root $WORK/www; location / { } }
}
EOF
ip netns exec "$S" nginx -c "$WORK/nginx.conf" &
PIDS+=($!)
ip netns exec "$S" iperf3 -s -p 5201 >/dev/null 2>&1 &
PIDS+=($!)
# socat: the same two hops as the pipe pair (client 7201 -> tunnel -> server 7301 -> service).
ip netns exec "$S" socat TCP-LISTEN:7301,fork,reuseaddr TCP:127.0.0.1:5201 &
PIDS+=($!)
ip netns exec "$C" socat TCP-LISTEN:7201,fork,reuseaddr TCP:10.192.0.1:7301 &
PIDS+=($!)
ip netns exec "$S" socat TCP-LISTEN:7380,fork,reuseaddr TCP:127.0.0.1:80 &
PIDS+=($!)
ip netns exec "$C" socat TCP-LISTEN:7080,fork,reuseaddr TCP:10.192.0.1:7380 &
PIDS+=($!)

for _ in $(seq 100); do
    ip netns exec "$C" curl -s -m 1 -o /dev/null http://127.0.0.1:6080/ && break
    sleep 0.2
done
ip netns exec "$C" curl -sf -m 2 -o /dev/null http://127.0.0.1:6080/ || { echo "the pipe does not answer" >&2; cat "$WORK"/*.log >&2; exit 1; }

iperf() { # PORT HOST STREAMS -> Mbit/s
    ip netns exec "$C" iperf3 -c "$2" -p "$1" -t "$SECS" -P "$3" -J 2>/dev/null |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))'
}
rate() { # URL -> requests/s with a new connection each
    ip netns exec "$C" wrk -t2 -c32 -d"${SECS}s" -H "Connection: close" "$1" 2>/dev/null |
        awk '/Requests\/sec/ {printf "%d\n", $2}'
}
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x' if b else '-')" "$1" "$2"; }

printf "%-28s %12s %12s %12s\n" "" "kawaii pipe" "socat" "direct"
p1=$(iperf 6201 127.0.0.1 1); s1=$(iperf 7201 127.0.0.1 1); d1=$(iperf 5201 10.192.0.1 1)
printf "%-28s %12s %12s %12s\n" "iperf3 1 stream (Mbit/s)" "$p1" "$s1" "$d1"
p8=$(iperf 6201 127.0.0.1 8); s8=$(iperf 7201 127.0.0.1 8); d8=$(iperf 5201 10.192.0.1 8)
printf "%-28s %12s %12s %12s\n" "iperf3 8 streams (Mbit/s)" "$p8" "$s8" "$d8"
pc=$(rate http://127.0.0.1:6080/); sc=$(rate http://127.0.0.1:7080/); dc=$(rate http://10.192.0.1:80/)
printf "%-28s %12s %12s %12s\n" "new connections/s (wrk)" "$pc" "$sc" "$dc"
echo
echo "pipe vs socat:  1 stream $(ratio "$p1" "$s1"), 8 streams $(ratio "$p8" "$s8"), connections/s $(ratio "$pc" "$sc")"
echo "pipe vs direct: 1 stream $(ratio "$p1" "$d1"), 8 streams $(ratio "$p8" "$d8"), connections/s $(ratio "$pc" "$dc")"
echo "(machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
