#!/usr/bin/env bash
# Side-by-side benchmark of the kawaii domain router against HAProxy (tcp mode) and kiagateway
# 0.1.2, all in front of the same nginx, on loopback. Not a test: it prints numbers and ratios.
#
#   bench/domain-router/run.sh
#
# Env: DURATION (wrk, default 10s), CONNS (wrk connections, 50), THREADS (wrk threads, 2),
# IDLE (idle keep-alive connections, 5000), BULK_MB (bulk download size, 1024),
# CARGO_TARGET_DIR (default /work/target-proxy), SCRATCH (work dir), KIAGATEWAY (binary path),
# ROUTER (a prebuilt router example binary; default: build it), PHASES (default "rps bulk idle"),
# REPEAT (rounds of the rps and bulk phases, default 1: each round runs every target once, in
# turn, and the median of the rounds is reported, which is what to use on a shared, noisy box),
# BASELINE (another router binary, e.g. the previous commit's, run as target "baseline" on
# 127.0.0.1:29080/29443 to compare two builds side by side).
# Ports: nginx 127.0.0.1:18080/18443, kawaii 127.0.0.1:28080/28443, HAProxy 127.0.0.1:38080/38443,
# kiagateway 0.0.0.0:80/443 (hard-coded by kiagateway; only loopback traffic is sent to it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
IDLE=${IDLE:-5000}
BULK_MB=${BULK_MB:-1024}
TARGET=${CARGO_TARGET_DIR:-/work/target-proxy}
SCRATCH=${SCRATCH:-/work/scratch/bench-domain-router}
KIAGATEWAY=${KIAGATEWAY:-/work/scratch/kiagw/bin/kiagateway}
PHASES=${PHASES:-rps bulk idle}
has() { [[ " $PHASES " == *" $1 "* ]]; }

mkdir -p "$SCRATCH"/{www,logs,tmp}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "missing $1 (apt-get install $2)" >&2; exit 1; }; }
need nginx nginx-light; need haproxy haproxy; need wrk wrk; need openssl openssl; need curl curl
need python3 python3

if [ -z "${ROUTER:-}" ]; then
  echo "== building kawaii router example (release)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p kawaii-proxy --example router)
  ROUTER="$TARGET/release/examples/router"
fi
if [ ! -x "$KIAGATEWAY" ]; then
  echo "== installing kiagateway 0.1.2"
  cargo install -q kiagateway --version 0.1.2 --root "$(dirname "$(dirname "$KIAGATEWAY")")"
fi

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }

# --- nginx backend -------------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -keyout "$SCRATCH/key.pem" -out "$SCRATCH/cert.pem" >/dev/null 2>&1
printf 'ok\n' > "$SCRATCH/www/small.txt"
printf '<html>kawaii bench</html>\n' > "$SCRATCH/www/index.html"
[ "$(stat -c %s "$SCRATCH/www/big.bin" 2>/dev/null || echo 0)" = $((BULK_MB * 1024 * 1024)) ] ||
  head -c $((BULK_MB * 1024 * 1024)) /dev/zero > "$SCRATCH/www/big.bin"
cat > "$SCRATCH/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 20000;
pid $SCRATCH/tmp/nginx.pid;
error_log $SCRATCH/logs/nginx-error.log warn;
daemon off;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path $SCRATCH/tmp; proxy_temp_path $SCRATCH/tmp; fastcgi_temp_path $SCRATCH/tmp;
  uwsgi_temp_path $SCRATCH/tmp; scgi_temp_path $SCRATCH/tmp;
  keepalive_timeout 600s; keepalive_requests 1000000;
  sendfile on;
  server {
    listen 127.0.0.1:18080;
    listen 127.0.0.1:18443 ssl;
    ssl_certificate $SCRATCH/cert.pem; ssl_certificate_key $SCRATCH/key.pem;
    root $SCRATCH/www;
  }
}
NGINX
nginx -c "$SCRATCH/nginx.conf" -p "$SCRATCH" & PIDS+=($!); NGINX_PID=$!

# --- kawaii router -------------------------------------------------------------------------
cat > "$SCRATCH/router.toml" <<TOML
[[listeners]]
name = "http"
bind = "127.0.0.1:28080"
protocol = "http"
[[listeners]]
name = "tls"
bind = "127.0.0.1:28443"
protocol = "tls"
[[routes]]
domain = "localhost"
https = ["127.0.0.1:18443"]
http = ["127.0.0.1:18080"]
TOML
RUST_LOG=warn "$ROUTER" "$SCRATCH/router.toml" > "$SCRATCH/logs/router.log" 2>&1 & PIDS+=($!); KAWAII_PID=$!
REPEAT=${REPEAT:-1}
BASELINE=${BASELINE:-}
if [ -n "$BASELINE" ]; then
  sed -e 's/28080/29080/; s/28443/29443/' "$SCRATCH/router.toml" > "$SCRATCH/baseline.toml"
  RUST_LOG=warn "$BASELINE" "$SCRATCH/baseline.toml" > "$SCRATCH/logs/baseline.log" 2>&1 & PIDS+=($!); BASE_PID=$!
fi

# --- HAProxy, tcp mode -----------------------------------------------------------------------
cat > "$SCRATCH/haproxy.cfg" <<HAP
global
  maxconn 9000
  nbthread 2
defaults
  mode tcp
  timeout connect 3s
  timeout client 600s
  timeout server 600s
frontend fe_http
  bind 127.0.0.1:38080
  tcp-request inspect-delay 5s
  tcp-request content accept if HTTP
  use_backend be_http if { req.hdr(host),field(1,:) -i localhost }
backend be_http
  server nginx 127.0.0.1:18080
frontend fe_tls
  bind 127.0.0.1:38443
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend be_tls if { req.ssl_sni -i localhost }
backend be_tls
  server nginx 127.0.0.1:18443
HAP
haproxy -f "$SCRATCH/haproxy.cfg" -db > "$SCRATCH/logs/haproxy.log" 2>&1 & PIDS+=($!); HAPROXY_PID=$!

# --- kiagateway (ports 80/443 are hard-coded) -------------------------------------------------
cat > "$SCRATCH/servers.toml" <<KIA
[https_backends]
"localhost" = "127.0.0.1:18443"
[http_backends]
"localhost" = "127.0.0.1:18080"
"localhost:80" = "127.0.0.1:18080"
KIA
(cd "$SCRATCH" && exec "$KIAGATEWAY" "$SCRATCH/servers.toml" > "$SCRATCH/logs/kiagateway.log" 2>&1) & PIDS+=($!); KIA_PID=$!

for p in 18080 18443 28080 28443 38080 38443 80 443; do wait_port "$p"; done
[ -n "$BASELINE" ] && { wait_port 29080; wait_port 29443; }
sleep 0.5

declare -A HTTP_PORT=([none]=18080 [kawaii]=28080 [haproxy]=38080 [kiagateway]=80 [baseline]=29080)
declare -A TLS_PORT=([none]=18443 [kawaii]=28443 [haproxy]=38443 [kiagateway]=443 [baseline]=29443)
declare -A PID_OF=([kawaii]=$KAWAII_PID [haproxy]=$HAPROXY_PID [kiagateway]=$KIA_PID)
[ -n "$BASELINE" ] && PID_OF[baseline]=$BASE_PID
TARGETS=(none kawaii haproxy kiagateway)
[ -n "$BASELINE" ] && TARGETS+=(baseline)
declare -A R
for t in "${TARGETS[@]}"; do for m in http https bulk bulktls idlehttp idlehttps; do R[$t.$m]=0; done; done

cpu_ticks() { if [ -n "${1:-}" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }
wrk_rps() { # url [proxy pid] -> "rps|proxy CPU us per request|errors"
  local t0; t0=$(cpu_ticks "${2:-}")
  local out; out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "Connection: close" "$1" 2>&1)
  local t1; t1=$(cpu_ticks "${2:-}")
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  local n; n=$(awk '/requests in/ {print $1}' <<<"$out")
  local us; us=$(awk -v a="$t0" -v b="$t1" -v n="${n:-0}" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { if (n == 0 || b == 0) print "-"; else printf "%.1f", (b - a) / hz * 1e6 / n }')
  local errs; errs=$(awk '/Socket errors/ {e=$0} /Non-2xx/ {n=$0} END {print (e n == "" ? "-" : e " " n)}' <<<"$out")
  echo "${rps:-0}|$us|$errs"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A RUNS CPU C
url_of() { # target proto path
  local host=localhost port
  if [ "$2" = http ]; then port=${HTTP_PORT[$1]}; else port=${TLS_PORT[$1]}; fi
  if [ "$1" = kiagateway ]; then echo "$2://$host$3"; else echo "$2://$host:$port$3"; fi
}

has rps && echo "== new connection per request (wrk -t$THREADS -c$CONNS -d$DURATION, Connection: close; $REPEAT round(s), targets in turn)"
has rps && for round in $(seq 1 "$REPEAT"); do
  for t in "${TARGETS[@]}"; do
    for proto in http https; do
      res=$(wrk_rps "$(url_of "$t" "$proto" /index.html)" "${PID_OF[$t]:-}")
      IFS='|' read -r rps us errs <<<"$res"
      RUNS[$t.$proto]+=" $rps"; [ "$us" != - ] && CPU[$t.$proto]+=" $us"
      printf '  [%s/%s] %-11s %-5s %10s req/s   proxy CPU %6s us/req   errors: %s\n' "$round" "$REPEAT" "$t" "$proto" "$rps" "$us" "$errs"
    done
  done
done
has rps && [ "$REPEAT" -gt 1 ] && echo "== medians of $REPEAT rounds"
has rps && for t in "${TARGETS[@]}"; do
  for proto in http https; do
    R[$t.$proto]=$(median <<<"${RUNS[$t.$proto]}")
    C[$t.$proto]=$( [ -n "${CPU[$t.$proto]:-}" ] && median <<<"${CPU[$t.$proto]}" || echo 0)
    printf '  %-11s %-5s %10s req/s   proxy CPU %6s us/req   (rounds:%s)\n' "$t" "$proto" "${R[$t.$proto]}" "${C[$t.$proto]}" "${RUNS[$t.$proto]}"
  done
done

has bulk && echo "== bulk download of ${BULK_MB} MiB (curl, one connection; $REPEAT round(s))"
has bulk && for round in $(seq 1 "$REPEAT"); do
  for t in "${TARGETS[@]}"; do
    bps=$(curl -s -o /dev/null -w '%{speed_download}' "$(url_of "$t" http /big.bin)")
    RUNS[$t.bulk]+=" $(awk -v b="$bps" 'BEGIN {printf "%.0f", b/1048576}')"
    bps=$(curl -sk -o /dev/null -w '%{speed_download}' "$(url_of "$t" https /big.bin)")
    RUNS[$t.bulktls]+=" $(awk -v b="$bps" 'BEGIN {printf "%.0f", b/1048576}')"
  done
done
has bulk && for t in "${TARGETS[@]}"; do
  R[$t.bulk]=$(median <<<"${RUNS[$t.bulk]}"); R[$t.bulktls]=$(median <<<"${RUNS[$t.bulktls]}")
  printf '  %-11s http %6s MiB/s   https %6s MiB/s   (rounds http:%s, https:%s)\n' "$t" "${R[$t.bulk]}" "${R[$t.bulktls]}" "${RUNS[$t.bulk]}" "${RUNS[$t.bulktls]}"
done

has idle && echo "== $IDLE idle keep-alive connections: proxy RSS growth per connection"
has idle && for t in kawaii haproxy kiagateway; do
  for proto in http https; do
    port=${HTTP_PORT[$t]}; flag=""; [ "$proto" = https ] && { port=${TLS_PORT[$t]}; flag="--tls"; }
    read -r per ok failed < <(python3 "$HERE/idle_conns.py" --port "$port" --n "$IDLE" --pid "${PID_OF[$t]}" $flag)
    R[$t.idle$proto]=$per
    printf '  %-11s %-5s %7s bytes/conn   (%s open, %s failed)\n' "$t" "$proto" "$per" "$ok" "$failed"
    sleep 1
  done
done

ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
echo
echo "== ratios (kawaii / peer; > 1 is better for throughput, < 1 is better for CPU and memory)"
printf '  %-26s %10s %10s %12s %10s\n' metric "vs none" "vs haproxy" "vs kiagateway" "vs baseline"
for m in http https bulk bulktls; do
  printf '  %-26s %10s %10s %12s %10s\n' "$m" "$(ratio "${R[kawaii.$m]}" "${R[none.$m]}")" \
    "$(ratio "${R[kawaii.$m]}" "${R[haproxy.$m]}")" "$(ratio "${R[kawaii.$m]}" "${R[kiagateway.$m]}")" \
    "$( [ -n "$BASELINE" ] && ratio "${R[kawaii.$m]}" "${R[baseline.$m]}" || echo -)"
done
for m in http https; do
  printf '  %-26s %10s %10s %12s %10s\n' "$m proxy CPU/req" "-" "$(ratio "${C[kawaii.$m]:-0}" "${C[haproxy.$m]:-0}")" \
    "$(ratio "${C[kawaii.$m]:-0}" "${C[kiagateway.$m]:-0}")" \
    "$( [ -n "$BASELINE" ] && ratio "${C[kawaii.$m]:-0}" "${C[baseline.$m]:-0}" || echo -)"
done
for m in idlehttp idlehttps; do
  printf '  %-26s %10s %10s %12s\n' "$m bytes/conn" "-" "$(ratio "${R[kawaii.$m]}" "${R[haproxy.$m]}")" \
    "$(ratio "${R[kawaii.$m]}" "${R[kiagateway.$m]}")"
done
