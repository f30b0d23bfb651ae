#!/usr/bin/env bash
# The 64-connection cached-token row of bench/run.sh for two builds, run
# alternately (A B A B ...) so that other load on a shared machine falls on
# both alike; prints each run and the medians (docs/benchmarks.md).
#
#   bench/compare.sh BUILD_A BUILD_B [RUNS (default 5)] [CONNECTIONS (default 64)]
#
# BUILD_x is a release build directory holding bench/iamtok-bench,
# sim/iamtoken-sim, daemon/iamtokend and client/iamtoken-get. Every wait is
# bounded; every process it starts is stopped on exit.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 BUILD_A BUILD_B [RUNS] [CONNECTIONS]" >&2; exit 64; }
builds=("$1" "$2")
runs=${3:-5}
conns=${4:-64}
duration_ms=${BENCH_DURATION_MS:-3000}
for b in "${builds[@]}"; do
  for f in bench/iamtok-bench sim/iamtoken-sim daemon/iamtokend client/iamtoken-get; do
    [ -x "$b/$f" ] || { echo "compare.sh: $b/$f missing" >&2; exit 1; }
  done
done

prog=compare
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# one BUILD TAG: starts sim + daemon of BUILD, runs the load, prints throughput and p99.
one() {
  local b=$1 tag=$2 sock=$work/$2.sock
  rm -f "$work/$tag.port" "$sock"
  "$b/sim/iamtoken-sim" --port-file "$work/$tag.port" --quiet >/dev/null 2>&1 &
  local sim_pid=$!
  pids+=("$sim_pid")
  wait_for "the simulator" 250 test -s "$work/$tag.port"
  local url="http://127.0.0.1:$(cat "$work/$tag.port")"
  cat >"$work/$tag.json" <<JSON
{ "socket": { "path": "$sock", "max_connections": 4096 },
  "source": { "type": "imds", "imds": { "endpoint": "$url" } }, "iam": { "endpoint": "$url" },
  "profiles": [ { "name": "reader", "profile_id": "Profile-00000000-0000-4000-8000-000000000001" } ] }
JSON
  "$b/daemon/iamtokend" --config "$work/$tag.json" --log-level warn 2>"$work/$tag.log" &
  local daemon_pid=$!
  pids+=("$daemon_pid")
  wait_for "the daemon socket" 500 test -S "$sock"
  wait_for "a first token" 500 "$b/client/iamtoken-get" -p reader --socket "$sock"
  local out
  out=$("$b/bench/iamtok-bench" --socket "$sock" --connections "$conns" --requests 50000000 \
          --duration-ms "$duration_ms" --request '{"op":"token","profile":"reader"}')
  kill -TERM "$daemon_pid" "$sim_pid" 2>/dev/null || true
  wait "$daemon_pid" "$sim_pid" 2>/dev/null || true
  echo "$(field throughput "$out") $(field p99_us "$out") $(field errors "$out")"
}


: >"$work/a.txt"; : >"$work/b.txt"
for ((r = 1; r <= runs; r++)); do
  for side in a b; do
    b=${builds[0]}; [ "$side" = b ] && b=${builds[1]}
    result=$(one "$b" "$side$r")
    echo "run $r $side: req/s p99_us errors = $result" >&2
    echo "$result" >>"$work/$side.txt"
  done
done
for side in a b; do
  b=${builds[0]}; [ "$side" = b ] && b=${builds[1]}
  t=$(awk '{ print $1 }' "$work/$side.txt" | median)
  p=$(awk '{ print $2 }' "$work/$side.txt" | median)
  e=$(awk '{ n += $3 } END { print n + 0 }' "$work/$side.txt")
  echo "$side ($b): median req/s $t, median p99 µs $p, errors $e ($runs runs, $conns connections, ${duration_ms} ms each)"
done
