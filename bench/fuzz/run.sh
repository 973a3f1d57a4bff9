#!/usr/bin/env bash
# Runs every cargo-fuzz target of kawaii-fuzz (ClientHello, HTTP head, PROXY v1/v2, VRRP advert,
# endpoint sync, consent hello, TUN offload, TOML config, drop-ins, API bodies) for a fixed number
# of iterations and prints one summary line per target. The suite runs the same targets for a
# bounded time on stable (crates/fuzz/tests/bounded.rs); this is the long run.
#
#   bench/fuzz/run.sh                 # every target, 10M runs each
#   RUNS=100000 bench/fuzz/run.sh http_host
#
# Env: RUNS (iterations per target, default 10000000), SANITIZER (address | none, default address),
# MAX_LEN (libFuzzer -max_len, default 4096), CARGO_TARGET_DIR (default /work/target-fuzz),
# WORK (corpus/artifact/log dir, default /work/scratch/fuzz).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The toolchain is stable; cargo-fuzz passes
# nightly-only flags (-Zsanitizer, -Cpasses=sancov-module), so the build runs with
# RUSTC_BOOTSTRAP=1. The seed corpus in crates/fuzz/corpus/<target> (captured packets, example
# configs and bodies) is only read: new inputs go to $WORK/corpus/<target>, crashes to
# $WORK/artifacts/<target>/. Exit status is non-zero if any target crashed or did not finish.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FUZZ="$ROOT/crates/fuzz/fuzz"
CORPUS="$ROOT/crates/fuzz/corpus"
RUNS=${RUNS:-10000000}
SANITIZER=${SANITIZER:-address}
MAX_LEN=${MAX_LEN:-4096}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-fuzz}
export RUSTC_BOOTSTRAP=1
WORK=${WORK:-/work/scratch/fuzz}

command -v cargo-fuzz >/dev/null || { echo "missing cargo-fuzz (cargo install cargo-fuzz)" >&2; exit 1; }
cd "$FUZZ"
if [ $# -gt 0 ]; then TARGETS=("$@"); else mapfile -t TARGETS < <(cargo fuzz list); fi

echo "== building ${TARGETS[*]} (release, sanitizer $SANITIZER)"
for t in "${TARGETS[@]}"; do
  cargo fuzz build -O --sanitizer "$SANITIZER" "$t" 2>&1 | grep -v '^ *\(Compiling\|Downloaded\|Downloading\)' || true
done

declare -A SUMMARY
FAILED=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/corpus/$t" "$WORK/artifacts/$t"
  log="$WORK/$t.log"
  echo "== $t: $RUNS runs (log $log)"
  touch "$WORK/$t.stamp"
  start=$(date +%s.%N)
  set +e
  cargo fuzz run -O --sanitizer "$SANITIZER" "$t" "$WORK/corpus/$t" "$CORPUS/$t" -- \
    -runs="$RUNS" -max_len="$MAX_LEN" -print_final_stats=1 \
    -artifact_prefix="$WORK/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  done_runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  cov=$(awk '{ for (i = 1; i < NF; i++) if ($i == "cov:") c = $(i + 1) } END { print c }' "$log")
  corp=$(awk '{ for (i = 1; i < NF; i++) if ($i == "corp:") { c = $(i + 1); sub("/.*", "", c) } } END { print c }' "$log")
  rate=$(awk -v n="${done_runs:-0}" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print 0 }')
  crashes=$(find "$WORK/artifacts/$t" -type f -newer "$WORK/$t.stamp" | wc -l)
  if [ "$rc" -eq 0 ] && [ "${done_runs:-0}" -ge "$RUNS" ]; then result=ok; else result="FAILED (rc $rc)"; FAILED=1; fi
  SUMMARY[$t]=$(printf '%-18s %10s %8ss %10s/s %6s %6s %8s  %s' "$t" "${done_runs:-0}" "$secs" "$rate" \
    "${cov:--}" "${corp:--}" "$crashes" "$result")
  echo "${SUMMARY[$t]}"
done

echo
echo "== summary (sanitizer $SANITIZER, max_len $MAX_LEN; artifacts under $WORK/artifacts)"
printf '%-18s %10s %9s %12s %6s %6s %8s  %s\n' target runs time rate cov corpus crashes result
for t in "${TARGETS[@]}"; do echo "${SUMMARY[$t]}"; done
exit "$FAILED"
