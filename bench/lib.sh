# Sourced by bench/run.sh and bench/compare.sh: a temporary directory whose
# processes are stopped at exit, bounded waits, and the figures' arithmetic.
# Before sourcing, set `prog` (the message prefix). Each process started
# goes into `pids`; the exit trap stops them all and removes $work.

work=$(mktemp -d "/tmp/iamtok-$prog.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for DESCRIPTION TRIES COMMAND...: retries every 20 ms.
wait_for() {
  local what=$1 tries=$2; shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.02
  done
  echo "$prog: timed out waiting for $what" >&2
  return 1
}

# field KEY LINE: a value from an iamtok-bench key=value line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
# median: of the numbers on stdin, one a line.
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
