#!/usr/bin/env bash
# Runs scripts/test.sh N times in a fresh clone of this repository's
# committed HEAD while stress-ng keeps every core busy: what a newcomer sees
# on a loaded machine. Not part of CI; run it before calling the suite
# reliable.
#
#   scripts/stress-test.sh [-n N | N] [--keep]
#
#   -n N, N   runs of scripts/test.sh (default 3)
#   --keep    keep the clone (its build trees) after the last run
#
# The clone is made in a new `mktemp -d` directory (mode 0700, as Debian's
# adduser makes a home directory), so the tests that act as another user
# must cope with a build tree that user cannot reach. Uncommitted changes
# are not tested: commit first. Runs reuse the clone, so the first one
# builds and later ones only test. stress-ng runs `--cpu $(nproc)` for the
# whole time and is stopped when the script ends, however it ends.
#
# Prints one line per run (PASS or FAIL, its duration, its log file) and a
# summary; each run's whole output is kept in a log directory it names.
# Exit: 0 if every run passed, 1 if any failed, 2 if the clone or stress-ng
# could not be set up, 64 on a usage error.
set -euo pipefail

runs=3
keep=0
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    -n|--runs) runs=${2:?"-n needs a number"}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    [0-9]*) runs=$1; shift ;;
    *) echo "stress-test: unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ $runs =~ ^[0-9]+$ && $runs -ge 1 ]] || { echo "stress-test: the number of runs must be a positive integer" >&2; exit 64; }

repo=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
"$repo/scripts/deps.sh" stress
head=$(git -C "$repo" rev-parse HEAD)
short=$(git -C "$repo" rev-parse --short HEAD)
if [[ -n $(git -C "$repo" status --porcelain --untracked-files=no) ]]; then
  echo "stress-test: note: uncommitted changes in $repo are not part of the test (HEAD $short is)" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/iamtok-stress-XXXXXX")
chmod 0700 "$work"
logs=$(mktemp -d "${TMPDIR:-/tmp}/iamtok-stress-logs-XXXXXX")
stress_pid=

cleanup() {
  if [[ -n $stress_pid ]] && kill -0 "$stress_pid" 2>/dev/null; then
    # Its own process group (setsid): the parent and every worker it forked.
    kill -TERM -- "-$stress_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$stress_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$stress_pid" 2>/dev/null || true
    wait "$stress_pid" 2>/dev/null || true
  fi
  if ((keep)); then
    echo "stress-test: kept the clone in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

clone=$work/iamtokend
if ! git clone --quiet --no-hardlinks "$repo" "$clone" >"$logs/clone.log" 2>&1 ||
   ! git -C "$clone" checkout --quiet --detach "$head" >>"$logs/clone.log" 2>&1; then
  echo "stress-test: cannot clone $repo at $short:" >&2
  cat "$logs/clone.log" >&2
  exit 2
fi

# ccache hashes the build directory into objects with debug information
# unless told not to: without this every fresh clone would rebuild from
# nothing (the cost is a wrong directory in the clone's debug info).
export CCACHE_NOHASHDIR=1

cores=$(nproc)
# A timeout well past any run, in case this script is killed without its trap.
setsid stress-ng --cpu "$cores" --timeout "$((runs * 4))h" --quiet >"$logs/stress-ng.log" 2>&1 &
stress_pid=$!
sleep 1
if ! kill -0 "$stress_pid" 2>/dev/null; then
  echo "stress-test: stress-ng did not start:" >&2
  cat "$logs/stress-ng.log" >&2
  exit 2
fi

echo "stress-test: $runs run(s) of scripts/test.sh at $short in $clone (mode $(stat -c %a "$work"), $(id -un))," \
     "stress-ng --cpu $cores running; logs in $logs"
passed=0
for ((run = 1; run <= runs; run++)); do
  log=$logs/run-$run.log
  started=$(date +%s)
  rc=0
  (cd "$clone" && scripts/test.sh) >"$log" 2>&1 || rc=$?
  took=$(($(date +%s) - started))
  duration=$(printf '%dm%02ds' $((took / 60)) $((took % 60)))
  if ((rc == 0)); then
    passed=$((passed + 1))
    echo "run $run/$runs: PASS in $duration ($log)"
  else
    echo "run $run/$runs: FAIL (exit $rc) after $duration ($log)"
    # What failed, as ctest lists it, else the end of the log.
    if grep -q 'The following tests FAILED' "$log"; then
      sed -n '/The following tests FAILED/,/^Errors while running/p' "$log" | sed 's/^/  /'
    else
      tail -n 15 "$log" | sed 's/^/  /'
    fi
  fi
done
echo "stress-test: $passed/$runs passed at $short with stress-ng --cpu $cores; logs in $logs"
((passed == runs))
