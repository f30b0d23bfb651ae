#!/usr/bin/env bash
# Upstream chaos: iamtoken-sim (--iam-lifetime 6) and iamtokend (at_fraction 0.5)
# in a temporary directory, random upstream faults injected through
# POST /sim/faults while clients fetch tokens with iamtoken-get without pause.
#
#   scripts/chaos.sh [--smoke] [--seconds N] [--clients K]   (N >= 20)
#
# Phases: random faults (5xx, 429 + Retry-After, hang, reset, garbage, slow;
# random durations with clear periods), a short clear period, an outage of
# every upstream endpoint (503 with Retry-After), then recovery. Default:
# N=120 s in all, a 12 s outage. --smoke: N=20, an 8 s outage; about 30 s in
# all (the recovery waits as long as the engine's own schedule says, at
# worst the 60 s backoff cap).
#
# Binaries: $IAMTOKEND, $IAMTOKEN_GET, $IAMTOKEN_SIM (default build/asan/...);
# this script builds nothing. CHAOS_SEED=N repeats a fault sequence;
# CHAOS_KEEP=1 keeps the temporary directory's logs (not the token file).
#
# Fails (exit 1, one "chaos: VIOLATION" line each) if
#  - a client got an error although a token it could have had was still
#    valid when the error came (clients ask --min-valid 0: any unexpired
#    token qualifies; 1 s margin for whole-second expires_at), or an error
#    other than `unavailable`;
#  - a client was handed a token that had already expired;
#  - during the outage, from 2 s into it to its end, a profile was tried
#    more often than its Retry-After (R s) allows: at most floor(W/R)+1
#    upstream calls per profile in a window of W s. The engine must honour
#    Retry-After and callers must not bring retries forward. (The backoff's
#    full jitter gives no lower bound on a delay; unit tests check it.)
#  - no token reached a client within the bound the engine's own schedule
#    gives after the faults clear: the retry it has scheduled (status
#    refresh_at, at most the 60 s backoff cap away) plus the time that
#    attempt may take (a CR token and an exchange, refresh.timeout_s each)
#    plus a 20 s margin for a loaded machine;
#  - any token handed out (or its payload or signature) is in the daemon's log;
#  - the daemon died, did not stop cleanly, or a sanitizer reported an error;
#  - the socket file's mode is not the configured 0600.
# Exit 2: setup problem (missing binary, sim or daemon did not start).
# Tokens are never printed: they are kept in a 0600 file in the temporary
# directory, which is removed at exit with everything this script started.

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
total=120
smoke=0
clients=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --smoke) smoke=1; total=20; shift ;;
    --seconds) total=${2:?--seconds needs a value}; shift 2 ;;
    --clients) clients=${2:?--clients needs a value}; shift 2 ;;
    -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos: unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ $total =~ ^[0-9]+$ && $total -ge 20 ]] || { echo "chaos: --seconds must be an integer >= 20" >&2; exit 64; }

daemon_bin=${IAMTOKEND:-$root/build/asan/daemon/iamtokend}
get_bin=${IAMTOKEN_GET:-$root/build/asan/client/iamtoken-get}
sim_bin=${IAMTOKEN_SIM:-$root/build/asan/sim/iamtoken-sim}
for bin in "$daemon_bin" "$get_bin" "$sim_bin"; do
  [[ -x $bin ]] || { echo "chaos: not built: $bin (cmake --preset asan && cmake --build --preset asan, or set IAMTOKEND/IAMTOKEN_GET/IAMTOKEN_SIM)" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "chaos: curl is required" >&2; exit 2; }
command -v jq >/dev/null || { echo "chaos: jq is required" >&2; exit 2; }

if ((smoke)); then
  clear_s=2; outage_s=8; outage_retry_after=2
else
  clear_s=3; outage_s=12; outage_retry_after=3
fi
random_seconds=$((total - clear_s - outage_s))
profiles=2
timeout_s=3 # refresh.timeout_s below
# How long a process may take to start or stop, and to react to what needs
# no upstream: scheduling on a loaded machine only, so generous; every wait
# ends as soon as its condition holds.
start_limit_s=30
react_limit_s=20

work=$(mktemp -d "${TMPDIR:-/tmp}/iamtok-chaos-XXXXXX")
chmod 0700 "$work"
prog=chaos
# shellcheck source=lib/harness.sh
source "$root/scripts/lib/harness.sh"

cleanup() {
  stop_started
  remove_work "${CHAOS_KEEP:-0}" "$work/tokens" "$work/patterns"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the simulator --------------------------------------------------------
start_sim "$sim_bin" --iam-lifetime 6
upstream_calls() { sim_curl GET /sim/stats | jq '.imds_token + .imds_iam_token + .iam'; }

# --- the daemon -----------------------------------------------------------
socket=$work/d.sock
cat >"$work/config.json" <<EOF
{
  "socket": { "path": "$socket", "mode": "0600" },
  "source": { "type": "imds", "imds": { "endpoint": "$url" } },
  "iam": { "endpoint": "$url" },
  "refresh": { "at_fraction": 0.5, "timeout_s": $timeout_s },
  "profiles": [
    { "name": "reader", "profile_id": "Profile-00000000-0000-4000-8000-000000000001" },
    { "name": "deployer", "profile_id": "Profile-00000000-0000-4000-8000-000000000002" }
  ]
}
EOF
env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u WATCHDOG_USEC -u JOURNAL_STREAM \
  "$daemon_bin" --config "$work/config.json" --log-level debug >"$work/daemon.out" 2>"$work/daemon.log" &
daemon_pid=$!

touch "$work/tokens"
chmod 0600 "$work/tokens"

# get_token CLIENT: one iamtoken-get call; appends "t0 t1 rc expires_at code"
# to $work/client-CLIENT.log and the token to $work/tokens.
get_token() {
  local log=$work/client-$1.log out rc t0 t1 exp=0 code=ok
  t0=$(now_ms)
  rc=0
  out=$("$get_bin" --profile reader --format json --min-valid 0 --timeout 10 --socket "$socket" \
        2>"$work/client-$1.err") || rc=$?
  t1=$(now_ms)
  if ((rc == 0)); then
    if [[ $out =~ \"expires_at\":([0-9]+) ]]; then exp=${BASH_REMATCH[1]}; else code=no_expires_at; fi
    if [[ $out =~ \"access_token\":\"([^\"]+)\" ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}" >>"$work/tokens"
    else
      code=no_token
    fi
  else
    [[ -z $out ]] || code=stdout_on_error
    if [[ $(head -c 300 "$work/client-$1.err") =~ ^iamtoken-get:\ ([a-z_]+): ]]; then
      [[ $code == ok ]] && code=${BASH_REMATCH[1]}
    else
      [[ $code == ok ]] && code=unparsed_error
    fi
  fi
  out=
  echo "$t0 $t1 $rc $exp $code" >>"$log"
  [[ $rc == 0 ]]
}

# Start-up, then the first token: a CR token and an exchange.
start_bound_s=$((start_limit_s + 2 * timeout_s))
deadline=$(($(now_ms) + start_bound_s * 1000))
until get_token start 2>/dev/null; do
  kill -0 "$daemon_pid" 2>/dev/null || { echo "chaos: iamtokend exited at start:" >&2; tail -n 20 "$work/daemon.log" >&2; exit 2; }
  (($(now_ms) < deadline)) || { echo "chaos: iamtokend served no token within $start_bound_s s" >&2; tail -n 20 "$work/daemon.log" >&2; exit 2; }
  sleep 0.2
done
mode=$(stat -c %a "$socket")
[[ $mode == 600 ]] || violation "socket mode is $mode, configured 0600"

# --- clients --------------------------------------------------------------
echo 1 >"$work/running"
for ((c = 0; c < clients; c++)); do
  (
    trap - EXIT INT TERM
    n=0
    while [[ -s $work/running ]] && ((n < 100000)); do
      get_token "$c" || true
      n=$((n + 1))
      sleep 0.05
    done
  ) &
  client_pids+=($!)
done

# --- random faults --------------------------------------------------------
faults=0
RANDOM=${CHAOS_SEED:-$$}
echo "chaos: ${random_seconds}s of random faults, ${clients} clients, seed ${CHAOS_SEED:-$$}" >&2
if ((smoke)); then max_fault=3; max_clear=3; else max_fault=8; max_clear=6; fi
phase_end=$(($(now_ms) + random_seconds * 1000))
while (($(now_ms) < phase_end)); do
  targets=(imds_iam_token imds_iam_token all imds_token)
  target=${targets[RANDOM % ${#targets[@]}]}
  case $((RANDOM % 8)) in
    0) rule="{\"target\":\"$target\",\"mode\":\"status\",\"status\":$((500 + RANDOM % 5))}" ;;
    1) rule="{\"target\":\"$target\",\"mode\":\"status\",\"status\":503,\"retry_after_s\":$((1 + RANDOM % 3))}" ;;
    2) rule="{\"target\":\"$target\",\"mode\":\"status\",\"status\":429,\"retry_after_s\":$((1 + RANDOM % 4))}" ;;
    3) rule="{\"target\":\"$target\",\"mode\":\"hang\"}" ;;
    4) rule="{\"target\":\"$target\",\"mode\":\"reset\"}" ;;
    5) rule="{\"target\":\"$target\",\"mode\":\"garbage\"}" ;;
    6) rule="{\"target\":\"$target\",\"mode\":\"slow\",\"delay_ms\":$((200 + RANDOM % 4000))}" ;;
    7) rule="{\"target\":\"$target\",\"mode\":\"status\",\"status\":500,\"count\":$((1 + RANDOM % 3))}" ;;
  esac
  sim_curl POST /sim/faults "$rule" >/dev/null || { echo "chaos: the simulator refused a fault rule" >&2; exit 2; }
  faults=$((faults + 1))
  sleep "$((1 + RANDOM % max_fault)).$((RANDOM % 10))"
  sim_curl DELETE /sim/faults >/dev/null
  sleep "$((1 + RANDOM % max_clear)).$((RANDOM % 10))"
done

# --- a clear period, then an outage of every endpoint ----------------------
sleep "$clear_s"
echo "chaos: ${outage_s}s outage of every upstream endpoint (503, Retry-After: $outage_retry_after)" >&2
sim_curl POST /sim/faults "{\"target\":\"all\",\"mode\":\"status\",\"status\":503,\"retry_after_s\":$outage_retry_after}" >/dev/null
faults=$((faults + 1))
sleep 2
# Every attempt that starts from here on fails with Retry-After: R, so a
# profile's next attempt reaches the simulator at least R s after the last.
# The window is measured around both counts (a slow machine only widens it).
window_start=$(now_ms)
calls_before=$(upstream_calls)
sleep $((outage_s - 2))
calls_during=$(($(upstream_calls) - calls_before))
window_ms=$(($(now_ms) - window_start))
max_calls=$((profiles * (window_ms / (outage_retry_after * 1000) + 1)))
if ((calls_during > max_calls)); then
  violation "$calls_during upstream calls in ${window_ms} ms of total outage with Retry-After: $outage_retry_after (bound $max_calls for $profiles profiles)"
fi

# --- recovery ---------------------------------------------------------------
# The bound follows the engine's schedule: an attempt in flight at the clear
# may still have met the fault and ends within 2 x timeout_s; the first next
# attempt `status` shows (refresh_at) starts after the clear, so it must
# succeed; a client then has the token at its next request. Each part gets
# react_limit_s on top.
sim_curl DELETE /sim/faults >/dev/null
cleared=$(now_ms)
attempt_ms=$(((2 * timeout_s + react_limit_s) * 1000))
recovery_deadline=$((cleared + attempt_ms))
refresh_at=
recovered=
while (($(now_ms) < recovery_deadline)); do
  # A token fetched after the clear (any client's) counts.
  if awk -v c="$cleared" '$1 >= c && $3 == 0 { found = 1 } END { exit !found }' "$work"/client-*.log 2>/dev/null; then
    recovered=$(($(now_ms) - cleared))
    break
  fi
  if [[ -z $refresh_at ]]; then
    refresh_at=$("$get_bin" --status --format json --socket "$socket" --timeout "$react_limit_s" 2>/dev/null |
                 jq -r '.profiles[] | select(.name == "reader") | .refresh_at // empty' 2>/dev/null) || refresh_at=
    if [[ -n $refresh_at ]]; then
      # Whole seconds: the attempt is due before refresh_at + 1.
      due=$(((refresh_at + 1) * 1000 + attempt_ms))
      ((due <= recovery_deadline)) || recovery_deadline=$due
    fi
  fi
  sleep 0.2
done
recovery_bound_ms=$((recovery_deadline - cleared))
[[ -n $recovered ]] || violation "no token within ${recovery_bound_ms} ms after the faults cleared (next attempt at ${refresh_at:-unknown}, timeout_s $timeout_s)"

rm -f "$work/running"
for pid in "${client_pids[@]}"; do stop_pid "$pid"; done
client_pids=()

# --- the daemon: alive, stops cleanly, nothing leaked -----------------------
stop_daemon "$work/daemon.log"
sort -u "$work/tokens" -o "$work/tokens"
{
  cat "$work/tokens"
  cut -d. -f2 "$work/tokens"
  cut -d. -f3 "$work/tokens" | awk 'length($0) >= 16'
} | awk 'length($0) >= 16' | sort -u >"$work/patterns"
if [[ -s $work/patterns ]] && grep -qF -f "$work/patterns" "$work/daemon.log"; then
  violation "a token (or a JWT part of one) appears in the daemon's log"
fi

# --- the clients' view --------------------------------------------------------
# Events by time: a success is known from its end (t1), a request is judged
# at its start (t0); at equal times the request comes first. The daemon
# answered somewhere between t0 and t1 (a loaded machine may take a while to
# start iamtoken-get): an error is a violation only if a token served before
# t0 was still valid at t1, and a token handed out only if it had expired by t0.
# (client-start.log, the wait for the daemon to come up, is left out.)
cat "$work"/client-[0-9]*.log >"$work/all.log"
awk '{ print $1, 0, $3, $4, $5, $2; if ($3 == 0) print $2, 1, 0, $4, "done", $2 }' "$work/all.log" |
  sort -k1,1n -k2,2n |
  awk '
    $2 == 1 { if ($4 > maxexp) maxexp = $4; next }
    $3 == 0 && ($4 + 1) * 1000 <= $1 { print "expired token handed out: expires_at " $4 " at " $1 " ms"; next }
    $3 != 0 && $5 != "unavailable" { print "client error " $5 " (exit " $3 ") at " $1 " ms" ; next }
    $3 != 0 && $6 < (maxexp - 1) * 1000 { print "client error " $5 " at " $1 "-" $6 " ms while a token valid until " maxexp " had been served" }
  ' >"$work/client_violations"
report_violations "$work/client_violations"

requests=$(wc -l <"$work/all.log")
errors=$(awk '$3 != 0' "$work/all.log" | wc -l)
by_code=$(awk '$3 != 0 { n[$5]++ } END { for (c in n) { printf "%s%s=%d", sep, c, n[c]; sep = " " } }' "$work/all.log")
total_calls=$(upstream_calls)
echo "chaos: summary: requests=$requests errors=$errors${by_code:+ ($by_code)} faults_injected=$faults" \
     "upstream_calls=$total_calls outage_calls=$calls_during/${window_ms}ms(bound $max_calls)" \
     "recovery_ms=${recovered:-none}(bound $recovery_bound_ms)" \
     "distinct_tokens=$(wc -l <"$work/tokens")"
if ((violations > 0)); then
  echo "chaos: FAILED with $violations violation(s)" >&2
  exit 1
fi
echo "chaos: OK"
