#!/usr/bin/env bash
# Soak benchmark (issue 17; not a test): one gateway (`kawaii serve`, release build) under three
# concurrent loads, with its RSS and open fds sampled every INTERVAL seconds:
#   - API writes: WRITERS threads cycling POST / PUT / DELETE of an ingress rule, at least WRITES
#     writes answered (bench/soak/writer.py, in the gateway's namespace);
#   - proxied connections: at least CONNS short HTTP requests through the domain router, one connection
#     each ("Connection: close"), HTTPS_SHARE % of them TLS routed by SNI and the rest HTTP routed
#     by Host, from CLIENTS "internet" hosts, each running two wrk (HTTP and TLS) with WRK_CONNS
#     connections in flight each;
#   - VPN traffic: iperf3 at VPN_RATE from a laptop (wireguard-go) through the gateway's
#     WireGuard to a private host, for the whole run.
# Every load goes on until all of them have reached their count, so the load is the same over
# the whole window; then they stop together. The pass line (bench/soak/analyze.py): after
# warm-up (the first WARMUP % of the load window) RSS is flat within +-TOLERANCE % (the drift of
# a least-squares line over the span, relative to the mean), and the fd count once the loads
# have stopped and SETTLE seconds passed is within +-TOLERANCE % of the idle count before the
# load (under load it is mostly the connections in flight at that instant; its drift is
# printed too).
#
#   sudo bench/soak/run.sh                                  # the issue's numbers: 100k writes, 1M connections
#   sudo WRITES=10000 CONNS=100000 bench/soak/run.sh        # a short run (a few minutes)
#
# Env: WRITES (100000), WRITERS (4), CONNS (1000000), HTTPS_SHARE (20), CLIENTS (4), WRK_CONNS (16),
# VPN_RATE (iperf3 -b, 20M), INTERVAL (10), WARMUP (20), TOLERANCE (5), SETTLE (20),
# MAX_SECONDS (7200: the loads are stopped there and the run is reported incomplete),
# KAWAII (a kawaii binary; default: build the release one), CSV (where the samples are kept,
# default /tmp/kawaii-soak-<pid>.csv), KEEP (non-empty: keep the work directory with the logs),
# KAWAII_LOG (the gateway's log filter, default warn; e.g. warn,kawaii_proxy=debug).
# Namespaces ksk<pid>-{gw,up,c1..cN,lap,vm}: nothing touches the root namespace; all of them and
# every process started here are removed on exit, by pid.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
for c in wrk iperf3 wireguard-go wg nginx openssl curl python3; do
  command -v "$c" >/dev/null || { echo "$c missing" >&2; exit 1; }
done

WRITES=${WRITES:-100000}
WRITERS=${WRITERS:-4}
CONNS=${CONNS:-1000000}
HTTPS_SHARE=${HTTPS_SHARE:-20}
CLIENTS=${CLIENTS:-4}
WRK_CONNS=${WRK_CONNS:-16}
VPN_RATE=${VPN_RATE:-20M}
INTERVAL=${INTERVAL:-10}
WARMUP=${WARMUP:-20}
TOLERANCE=${TOLERANCE:-5}
SETTLE=${SETTLE:-20}
MAX_SECONDS=${MAX_SECONDS:-7200}
SYNPROXY=${SYNPROXY:-false}
CSV=${CSV:-/tmp/kawaii-soak-$$.csv}
if [ -n "${KAWAII:-}" ]; then
  K=$KAWAII
else
  echo "== building kawaii (release)" >&2
  cargo build --release -q -p kawaii
  K=${CARGO_TARGET_DIR:-$PWD/target}/release/kawaii
fi

P=ksk$$
WGIF=ks$$g   # the gateway's WireGuard interface (its UAPI socket is /run/wireguard/$WGIF.sock)
LAPIF=ks$$l  # the laptop's wireguard-go interface
DOMAIN=app.soak.test
DIR=$(mktemp -d /tmp/kawaii-soak.XXXXXX)
NSS=(gw up lap vm)
for i in $(seq "$CLIENTS"); do NSS+=("c$i"); done
PIDS=()
cleanup() {
  local p n
  # a second INT or TERM (an impatient Ctrl-C, a timeout's kill) must not cut the clean-up short
  trap '' INT TERM
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # SIGTERM: kawaii drains for up to 10 s
  for _ in $(seq 60); do
    local alive=""
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -n "$alive" ] || break
    sleep 0.2
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in "${NSS[@]}"; do
    # what a process started here left behind in its namespace (nginx's worker)
    ip netns pids "$P-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$P-$n" 2>/dev/null || true
  done
  rm -f "/run/wireguard/$WGIF.sock" "/run/wireguard/$LAPIF.sock"
  for i in $(seq "$CLIENTS"); do rm -rf "/etc/netns/$P-c$i"; done
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
x() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }

# --- topology: gw (wan0 on the "up" bridge, lan0 to vm), the clients and lap on the bridge -------
for n in "${NSS[@]}"; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
upstream_bridge
plug gw wan0; plug lap eth0
ip -n "$P-lap" addr add 203.0.113.30/24 dev eth0
ip link add "$P-lan" type veth peer name eth0 netns "$P-vm"
ip link set "$P-lan" netns "$P-gw" name lan0
ip -n "$P-gw" link set lan0 up
ip -n "$P-vm" link set eth0 up
ip -n "$P-vm" addr add 10.1.0.10/24 dev eth0
ip -n "$P-vm" route add default via 10.1.0.1
# wrk closes first, so each client's ports wait 60 s in TIME_WAIT: 64k ports make ~1000
# connections/s per client address, hence several clients. (Not tcp_tw_reuse: it hung through
# the SYN proxy before that was fixed, see README; kept off so runs compare with earlier ones.)
# `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts: a client resolves the
# routed name to the public VIP, and wrk sends it as SNI and Host.
for i in $(seq "$CLIENTS"); do
  plug "c$i" eth0
  ip -n "$P-c$i" addr add "203.0.113.$((20 + i))/24" dev eth0
  x "c$i" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=0
  mkdir -p "/etc/netns/$P-c$i"
  echo "203.0.113.10 $DOMAIN" > "/etc/netns/$P-c$i/hosts"
done

# --- the private host: nginx (HTTP and HTTPS, a two-byte answer) and the iperf3 server ----------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=$DOMAIN" -keyout "$DIR/key.pem" -out "$DIR/cert.pem" >/dev/null 2>&1
cat > "$DIR/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 20000;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log warn;
daemon off;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path $DIR; proxy_temp_path $DIR; fastcgi_temp_path $DIR;
  uwsgi_temp_path $DIR; scgi_temp_path $DIR;
  server {
    listen 10.1.0.10:80;
    listen 10.1.0.10:443 ssl;
    ssl_certificate $DIR/cert.pem; ssl_certificate_key $DIR/key.pem;
    location / { return 200 "ok\n"; }
  }
}
NGINX
ip netns exec "$P-vm" nginx -c "$DIR/nginx.conf" -p "$DIR" & PIDS+=($!)
ip netns exec "$P-vm" iperf3 -s -B 10.1.0.10 > "$DIR/iperf3-server.log" 2>&1 & PIDS+=($!)

# --- the gateway --------------------------------------------------------------------------------
(umask 077; "$K" wg genkey > "$DIR/wg.key")
GW_PUB=$("$K" wg pubkey < "$DIR/wg.key")
LAP_KEY=$(wg genkey)
LAP_PUB=$(wg pubkey <<<"$LAP_KEY")
{
  one_zone_config 10.1.0.0/24
  cat <<CFG
[ingress]
synproxy = $SYNPROXY

[router]
max_connections = 10000
max_connections_per_source = 1000

[[routes]]
domain = "$DOMAIN"
https = ["10.1.0.10:443"]
http = ["10.1.0.10:80"]

[wireguard]
interface = "$WGIF"
listen_port = 51820
address = "10.8.0.1/24"
private_key_file = "$DIR/wg.key"

[[wireguard.peers]]
name = "laptop"
public_key = "$LAP_PUB"
allowed_ips = ["10.8.0.2/32"]
CFG
} > "$DIR/gw.toml"
ip netns exec "$P-gw" env KAWAII_LOG="${KAWAII_LOG:-warn}" "$K" serve --config "$DIR/gw.toml" --state "$DIR/state" > "$DIR/kawaii.log" 2>&1 &
KP=$!
PIDS+=($KP)
up=""
for _ in $(seq 300); do
  if x gw curl -sf -m 1 http://127.0.0.1:7780/readyz >/dev/null 2>&1 &&
     x c1 curl -sf -m 1 "http://$DOMAIN/" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$KP" 2>/dev/null || break
  sleep 0.1
done
[ -n "$up" ] || { echo "gateway not ready; its log:" >&2; tail -20 "$DIR/kawaii.log" >&2; exit 1; }
TOKEN=$(cat "$DIR/state/admin.token")
# Two conntrack entries per proxied connection stay 120 s in TIME_WAIT by default: over a
# million connections that fills the table. A shorter TIME_WAIT timeout, in this namespace only.
x gw sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=5 net.netfilter.nf_conntrack_tcp_timeout_fin_wait=5 net.netfilter.nf_conntrack_tcp_timeout_close_wait=5 net.netfilter.nf_conntrack_tcp_timeout_last_ack=5

# --- the laptop: wireguard-go, its peer the gateway --------------------------------------------
ip netns exec "$P-lap" wireguard-go -f "$LAPIF" > "$DIR/wireguard-go.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do [ -S "/run/wireguard/$LAPIF.sock" ] && break; sleep 0.05; done
x lap wg set "$LAPIF" private-key <(echo "$LAP_KEY") peer "$GW_PUB" \
  endpoint 203.0.113.10:51820 allowed-ips 10.8.0.0/24,10.1.0.0/24
x lap ip addr add 10.8.0.2/24 dev "$LAPIF"
x lap ip link set "$LAPIF" mtu 1420 up
x lap ip route add 10.1.0.0/24 dev "$LAPIF"
x lap ping -q -c 5 -i 0.2 -w 10 10.1.0.10 >/dev/null ||
  { echo "no ping through the tunnel" >&2; exit 1; }

# --- sampling -------------------------------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$KP/status"; }
# anonymous (heap) and file-backed (mapped files: binary, SQLite's shared memory) parts of RSS
rss_parts() { awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} END {print a "," f}' "/proc/$KP/status"; }
fd_count() { find "/proc/$KP/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# fds by kind: socket, pipe, anon_inode:<kind>, file
fd_kinds() {
  find "/proc/$KP/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
    sed -E 's/^(socket|pipe):.*/\1/; s/^anon_inode:\[?([a-z_]+).*/\1/; s/^\/.*/file/' |
    sort | uniq -c | awk '{printf "%s%s=%s", (NR > 1 ? " " : ""), $2, $1}'
}
router_conns() {
  x gw curl -s -m 5 http://127.0.0.1:7780/metrics |
    awk '/^kawaii_router_connections_total/ {s += $NF} END {printf "%.0f", s}'
}
vpn_bytes() { x lap wg show "$LAPIF" transfer | awk '{s += $2 + $3} END {printf "%.0f", s}'; }
writes_done() { cut -d' ' -f1 "$DIR/writes.progress" 2>/dev/null || echo 0; }

echo "phase,t,rss_kib,fds,writes,conns,vpn_mib,anon_kib,file_kib" > "$CSV"
C0=$(router_conns)
V0=$(vpn_bytes)
T0=$(date +%s.%N)
sample() { # phase
  local t r f w c v
  t=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  r=$(rss_kib); f=$(fd_count); w=$(writes_done)
  c=$(( $(router_conns) - C0 )); v=$(( ($(vpn_bytes) - V0) / 1048576 ))
  echo "$1,$t,$r,$f,$w,$c,$v,$(rss_parts)" >> "$CSV"
  printf '%-6s t=%6ss  RSS %7s KiB  fds %5s  | writes %7s/%s  conns %8s/%s  vpn %6s MiB  | %s\n' \
    "$1" "$t" "$r" "$f" "$w" "$WRITES" "$c" "$CONNS" "$v" "$(fd_kinds)"
}
sample idle
IDLE_RSS=$(rss_kib); IDLE_FDS=$(fd_count); IDLE_KINDS=$(fd_kinds)
echo "== idle before the load: RSS $IDLE_RSS KiB, $IDLE_FDS fds ($IDLE_KINDS)"

# --- the loads ------------------------------------------------------------------------------------
N_TLS=$(( CONNS * HTTPS_SHARE / 100 ))
N_HTTP=$(( CONNS - N_TLS ))
echo "== load: $WRITES API writes ($WRITERS writers), $N_HTTP HTTP + $N_TLS TLS connections" \
     "from $CLIENTS clients ($WRK_CONNS in flight per wrk), iperf3 -b $VPN_RATE through WireGuard; a sample every ${INTERVAL}s"
ip netns exec "$P-lap" iperf3 -c 10.1.0.10 -b "$VPN_RATE" -t 86400 -i 0 > "$DIR/iperf3.log" 2>&1 & IPERF=$!
PIDS+=($IPERF)
ip netns exec "$P-gw" python3 bench/soak/writer.py "$TOKEN" "$WRITES" "$WRITERS" "$DIR/writes.progress" "$DIR/writes.stop" \
  > "$DIR/writer.out" 2> "$DIR/writer.err" & WRITER=$!
PIDS+=($WRITER)
LOADS=($WRITER)
declare -A WRK
wrk_run() { # name count url client
  if [ "$2" -gt 0 ]; then
    ip netns exec "$P-$4" wrk -t1 -c"$WRK_CONNS" -d24h -H "Connection: close" -s bench/soak/count.lua \
      "$3" -- "$2" "$DIR/wrk-$1.done" > "$DIR/wrk-$1.out" 2>&1 &
    PIDS+=($!); LOADS+=($!); WRK[$1]=$!
  fi
}
for i in $(seq "$CLIENTS"); do
  # the first client takes the remainders
  wrk_run "http-c$i" $(( N_HTTP / CLIENTS + (i == 1 ? N_HTTP % CLIENTS : 0) )) "http://$DOMAIN/" "c$i"
  wrk_run "https-c$i" $(( N_TLS / CLIENTS + (i == 1 ? N_TLS % CLIENTS : 0) )) "https://$DOMAIN/" "c$i"
done

# Every load runs until all of them have their counts (so the load stays the same over the
# window), then they are stopped together: the writer by its stop file, wrk by SIGINT.
all_done() {
  [ -f "$DIR/writes.progress.done" ] || return 1
  local n
  for n in "${!WRK[@]}"; do [ -f "$DIR/wrk-$n.done" ] || return 1; done
}
next=$INTERVAL
incomplete=""
while ! all_done; do
  for p in "${LOADS[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "a load exited early (pid $p); see KEEP=1 $DIR" >&2; incomplete=1; }
  done
  [ -z "$incomplete" ] || break
  kill -0 "$KP" 2>/dev/null || { echo "kawaii exited; its log:" >&2; tail -20 "$DIR/kawaii.log" >&2; exit 1; }
  now=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
  if awk -v n="$now" -v m="$MAX_SECONDS" 'BEGIN {exit !(n >= m)}'; then incomplete=1; break; fi
  if awk -v n="$now" -v t="$next" 'BEGIN {exit !(n >= t)}'; then
    sample load
    next=$(( next + INTERVAL ))
  fi
  sleep 0.2
done
T_LOAD=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')
touch "$DIR/writes.stop"
for n in "${!WRK[@]}"; do kill -INT "${WRK[$n]}" 2>/dev/null || true; done
kill "$IPERF" 2>/dev/null || true
for p in "${LOADS[@]}" "$IPERF"; do wait "$p" 2>/dev/null || true; done

echo "== loads done in ${T_LOAD}s${incomplete:+ (stopped at MAX_SECONDS=$MAX_SECONDS: INCOMPLETE)}"
read -r w_ok w_failed w_secs w_status w_wrong < "$DIR/writer.out" || true
echo "  API writes: ${w_ok:-?} answered, ${w_failed:-?} not 2xx, ${w_secs:-?} s" \
     "($(awk -v n="${w_ok:-0}" -v s="${w_secs:-0}" 'BEGIN {printf "%.0f", (s > 0 ? n / s : 0)}') writes/s; statuses ${w_status:-?}; POSTs answered with another or no rule: ${w_wrong:-?})"
[ -s "$DIR/writer.err" ] && { echo "  writer stderr:"; tail -5 "$DIR/writer.err" | sed 's/^/    /'; }
for n in $(printf '%s\n' "${!WRK[@]}" | sort); do
  awk -v n="$n" '/requests in/ {r = $1; d = $5} /Requests\/sec/ {s = $2}
    /Socket errors|Non-2xx/ {e = e " " $0}
    END {printf "  wrk %-9s %8s requests in %s, %8s req/s; errors:%s\n", n, r, d, s, (e == "" ? " none" : e)}' "$DIR/wrk-$n.out"
done
echo "  router: $(( $(router_conns) - C0 )) connections proxied; VPN: $(( ($(vpn_bytes) - V0) / 1048576 )) MiB through the tunnel"
errs=$(x gw curl -s -m 5 http://127.0.0.1:7780/metrics | awk '/^kawaii_router_errors_total/ && $NF > 0' | tr '\n' ' ')
echo "  router errors: ${errs:-none}"

echo "== settling ${SETTLE}s with no load"
sleep "$SETTLE"
sample after
END_RSS=$(rss_kib); END_FDS=$(fd_count)
echo "== idle after the load: RSS $END_RSS KiB ($(awk -v a="$IDLE_RSS" -v b="$END_RSS" 'BEGIN {printf "%+.1f", 100 * (b - a) / a}') % of idle before)," \
     "$END_FDS fds ($(( END_FDS - IDLE_FDS )) vs before; before: $IDLE_KINDS; after: $(fd_kinds))"
echo "  samples: $CSV"
status=0
python3 bench/soak/analyze.py "$CSV" "$WARMUP" "$TOLERANCE" || status=1
[ -z "$incomplete" ] || status=1
exit "$status"
