#!/usr/bin/env bash
# Shared store benchmark (issue 15). Not a test. Prints, for two zones sharing one etcd 3.4
# (tmpfs, management switch) and for one instance on SQLite:
#   - write -> applied latency: from the API's acknowledgement of a write through zone-a to the
#     moment the other instance (etcd) / the same instance (SQLite) logs that its last driver
#     applied that revision; p50, p99, max over 2*N writes spaced 50 ms apart (N=100);
#   - sustained acknowledged writes per second through one instance (1 and 4 writers).
# The topologies are built by crates/kawaii/tests/store.rs::bench_store (uniquely named
# namespaces, removed afterwards; writer.py runs in the gateway namespace, applied.py joins the
# acknowledgements with the daemon's log). Needs root. Usage: [N=100] bench/store/run.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo test -p kawaii --test store "$@" -- --ignored --exact bench_store --nocapture --test-threads 1
