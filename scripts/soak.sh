#!/usr/bin/env bash
# Soak: iamtoken-sim (2 s access tokens) and iamtokend with 100 profiles in a
# temporary directory (loopback and a Unix socket only), clients polling every
# profile for the whole run, rotating upstream faults for a third of it; then
# checks what clients saw, and that the daemon's memory and descriptors stay
# flat. Not part of `ctest` by default except as the 60 s soak_smoke test
# (asan build; docs/benchmarks.md, "Soak").
#
#   scripts/soak.sh [--duration S] [--build DIR]   (S >= 30, default 600)
#
# DIR (default build/release) holds daemon/iamtokend, client/iamtoken-get and
# sim/iamtoken-sim; this script builds nothing. Needs socat, curl, jq
# (scripts/deps.sh test). SOAK_KEEP=1 keeps the temporary directory (logs and
# samples; the token file is removed). SOAK_RSS=on|off|auto (default auto:
# judged unless the daemon is built with AddressSanitizer, see below).
#
# The run is split into cycles (60 s each from 300 s on, else S/5): in each,
# the first third has one upstream fault, the rest is clear. The faults
# rotate through: slow (1.5 s, more than the time left on the token being
# refreshed), hang, garbage (200 with an HTML body), a JWT shorter than
# expires_in says (1 s), 503 with Retry-After 3, TCP reset, an HTML 502 page,
# a redirect, 429 with Retry-After 2, 500.
# Clients: 3 pollers on one socket connection each (socat), each asking for
# every profile in turn (from a different start), one round a second at
# most, with `min_valid_s: 0` (any unexpired token qualifies); and one client
# running iamtoken-get for one profile after another (a connection each).
#
# Fails (exit 1, one "soak: VIOLATION" line each) if
#  - a client got an error while a token it had been served for that profile
#    was still valid. Rule, per profile, on the client's wall clock (ms): a
#    token reply to a request sent at t0 proves the token valid until
#    V = max(expires_at * 1000, t0 + expires_in * 1000) (the daemon floors
#    both: expires_at is the whole second it sent the upstream request plus
#    the lifetime, expires_in the whole seconds left when it answered, after
#    t0). An error to a request sent at t0 and answered at t1 is allowed only
#    if every token reply received before t0 for that profile has V <= t1;
#  - an error other than `unavailable` (the only one a good profile may get),
#    no reply within refresh.timeout_s + 20 s (the daemon answers a waiting
#    request by its refresh.timeout_s deadline; 20 s for a loaded machine),
#    or a reply echoing the wrong id;
#  - an expired token was handed out: a reply to a request sent at t0 with
#    t0 >= (expires_at + 1) * 1000, or a token (decoded locally) handed out
#    at t0 >= (exp + 1) * 1000 (whole-second exp and iat; the daemon counts
#    the lifetime from when it sent the request, at most 1 s after iat's
#    second began), or whose reply claimed more than its JWT (expires_at >
#    exp), or that names another profile (profile_id claim);
#  - at the end, a profile does not get two more tokens (the second surely
#    asked for after the last fault cleared) within what the engine's
#    schedule allows: its retry (at most the 60 s backoff cap away,
#    Retry-After here at most 3 s), a CR token and an exchange of
#    refresh.timeout_s each, the next refresh (less than the lifetime) and
#    another such attempt, plus 20 s;
#  - growth between the two measuring windows (each the last third of a
#    cycle, at least a third of a cycle after its fault cleared; sampled
#    every 250 ms): the first ends at the cycle boundary at or after 20 % of
#    the run and after the first two cycles (slow and hang: 100 transfers at
#    once, which set the heap's high-water mark; a later peak of the same
#    size reuses that memory), the second at the end of the run.
#    Descriptors other than TCP connections to the simulator (curl's,
#    bounded by its cache of 8 idle ones plus one per transfer in flight:
#    reported, and at most 8 + 101) grow by more than 5 % (the fewest in
#    the window: a client connection or a transfer that happens to be open
#    when sampled does not count, a leaked descriptor stays and raises it);
#    RssAnon (the window's median) grows by more than 5 % (not judged under
#    AddressSanitizer: its
#    quarantine keeps up to 256 MiB of freed blocks resident and its
#    allocator does not give memory back, so RssAnon rises with the number
#    of allocations until the quarantine is full, leak or not; there, LSan
#    checks for leaks when the daemon exits);
#  - the payload or signature of a token handed out is in the daemon's log;
#  - the daemon died, did not exit 0 within 20 s of SIGTERM, or a sanitizer
#    reported an error.
# Exit 2: setup problem (missing binary, the sim or the daemon did not start).
# Every loop is bounded in count and time; everything this script starts is
# stopped on exit, however it ends. Tokens are never printed.

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=600
build=$root/build/release
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a value}; shift 2 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak: unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ $duration =~ ^[0-9]+$ && $duration -ge 30 && $duration -le 86400 ]] ||
  { echo "soak: --duration must be an integer from 30 to 86400" >&2; exit 64; }

daemon_bin=$build/daemon/iamtokend
get_bin=$build/client/iamtoken-get
sim_bin=$build/sim/iamtoken-sim
for bin in "$daemon_bin" "$get_bin" "$sim_bin"; do
  [[ -x $bin ]] || { echo "soak: not built: $bin (see --build)" >&2; exit 2; }
done
for tool in socat curl jq; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is required (scripts/deps.sh test)" >&2; exit 2; }
done

profiles=100
pollers=3
lifetime_s=2   # iamtoken-sim --iam-lifetime
timeout_s=2    # refresh.timeout_s below
backoff_cap_s=60
# How long a process may take to start or stop, and to react to what needs
# no upstream: scheduling on a loaded machine only, so generous; every wait
# ends as soon as its condition holds.
start_limit_s=30
react_limit_s=20
reply_limit_s=$((timeout_s + react_limit_s))
if ((duration >= 300)); then cycle_ms=60000; else cycle_ms=$((duration * 200)); fi
cycles=$((duration * 1000 / cycle_ms))
third_ms=$((cycle_ms / 3))
faults=(
  '{"target":"imds_iam_token","mode":"slow","delay_ms":1500}'
  '{"target":"all","mode":"hang"}'
  '{"target":"imds_iam_token","mode":"garbage"}'
  '{"target":"imds_iam_token","mode":"short_jwt","jwt_lifetime_s":1}'
  '{"target":"all","mode":"status","status":503,"retry_after_s":3}'
  '{"target":"all","mode":"reset"}'
  '{"target":"imds_iam_token","mode":"html","status":502}'
  '{"target":"all","mode":"redirect"}'
  '{"target":"imds_iam_token","mode":"status","status":429,"retry_after_s":2}'
  '{"target":"all","mode":"status","status":500}'
)
fault_names=(slow hang garbage short_jwt 503+RA reset html502 redirect 429+RA 500)
# Measuring windows: the last third of cycle w1 - 1 (ending at or after 20 %
# of the run, and after cycles 0 and 1: slow and hang) and of the last cycle.
w1=$(((cycles + 4) / 5))
((w1 >= 2)) || w1=2

work=$(mktemp -d "${TMPDIR:-/tmp}/iamtok-soak-XXXXXX")
chmod 0700 "$work"
prog=soak
# shellcheck source=lib/harness.sh
source "$root/scripts/lib/harness.sh"

cleanup() {
  local pid
  rm -f "$work/running"
  # The pollers' socat processes (they end by themselves when their poller's
  # pipe closes; this is for a poller that was killed).
  if [[ -f $work/socat.pids ]]; then
    while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$work/socat.pids"
  fi
  stop_started
  remove_work "${SOAK_KEEP:-0}" "$work"/tokens-* "$work/tokens" "$work/patterns"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the simulator ---------------------------------------------------------
sim_args=()
for ((i = 1; i <= profiles; i++)); do
  sim_args+=(--profile "$(printf 'Profile-00000000-0000-4000-8000-%012d:p%03d' "$i" "$i")")
done
start_sim "$sim_bin" --iam-lifetime "$lifetime_s" "${sim_args[@]}"

# --- the daemon ------------------------------------------------------------
socket=$work/d.sock
{
  printf '{\n  "socket": { "path": "%s", "mode": "0600" },\n' "$socket"
  printf '  "source": { "type": "imds", "imds": { "endpoint": "%s" } },\n' "$url"
  printf '  "iam": { "endpoint": "%s" },\n' "$url"
  printf '  "refresh": { "timeout_s": %d },\n  "profiles": [\n' "$timeout_s"
  for ((i = 1; i <= profiles; i++)); do
    printf '    { "name": "p%03d", "profile_id": "Profile-00000000-0000-4000-8000-%012d" }%s\n' \
      "$i" "$i" "$( ((i < profiles)) && echo ,)"
  done
  printf '  ]\n}\n'
} >"$work/config.json"
env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u WATCHDOG_USEC -u JOURNAL_STREAM \
  "$daemon_bin" --config "$work/config.json" >"$work/daemon.out" 2>"$work/daemon.log" &
daemon_pid=$!

status_json() { "$get_bin" --status --format json --socket "$socket" --timeout "$react_limit_s" 2>/dev/null; }
# Start-up: every profile's first token (a CR token, then the exchanges).
# The bound follows the engine's schedule, as the recovery's does below: on
# a loaded machine a first exchange may meet refresh.timeout_s and is then
# retried at the refresh_at `status` shows, so while a profile has no token
# the wait extends to its next attempt plus 2 x timeout_s and react_limit_s
# (never past start_cap_s).
start_cap_s=300
started=$(now_ms)
deadline=$((started + (start_limit_s + 2 * timeout_s) * 1000))
cap=$((started + start_cap_s * 1000))
attempt_ms=$(((2 * timeout_s + react_limit_s) * 1000))
while :; do
  status=$(status_json) || status='{}'
  fresh=$(jq '[.profiles[] | select(.state == "fresh" or .state == "refreshing" or .state == "stale")] | length' \
            <<<"$status" 2>/dev/null) || fresh=0
  [[ $fresh == "$profiles" ]] && break
  kill -0 "$daemon_pid" 2>/dev/null || { echo "soak: iamtokend exited at start:" >&2; tail -n 20 "$work/daemon.log" >&2; exit 2; }
  # The latest attempt the engine has scheduled for a profile still without a token.
  next=$(jq '[.profiles[] | select(.state == "pending" or .state == "failed") | .refresh_at // empty] | max // empty' \
           <<<"$status" 2>/dev/null) || next=
  if [[ -n $next ]]; then
    # Whole seconds: the attempt is due before refresh_at + 1.
    due=$(((next + 1) * 1000 + attempt_ms))
    ((due <= deadline)) || deadline=$((due < cap ? due : cap))
  fi
  if (($(now_ms) >= deadline)); then
    echo "soak: $fresh of $profiles profiles had a token after $((($(now_ms) - started) / 1000)) s, past the engine's schedule" >&2
    tail -n 20 "$work/daemon.log" >&2
    exit 2
  fi
  sleep 0.2
done

# --- clients -----------------------------------------------------------------
# Each writes "t0 t1 profile result expires_at expires_in" lines (result: ok
# or an error code) to $work/poll-N.log, and "first_t0 last_t0 profile
# expires_at token" per token it was handed to $work/tokens-N (0600).
touch "$work/running"
umask 077

# poller N: one connection, every profile in turn, a round a second at most.
poller() {
  local k=$1 log=$work/poll-$1.log tokens=$work/tokens-$1
  local -A tok first last exp_at
  local n=0 round j i p t0 t1 line result ea ei token start rest
  trap 'exit 0' TERM
  coproc CONN { exec socat -t 5 - "UNIX-CONNECT:$socket" 2>>"$work/socat-$k.err"; }
  echo "$CONN_PID" >>"$work/socat.pids"
  local rfd=${CONN[0]} wfd=${CONN[1]}
  exec {out}>>"$log"
  for ((round = 0; round < duration + 1000; round++)); do
    start=$((${EPOCHREALTIME/./} / 1000))
    for ((j = 0; j < profiles; j++)); do
      [[ -e $work/running ]] || break 2
      i=$(((j + k * profiles / pollers) % profiles + 1))
      printf -v p 'p%03d' "$i"
      n=$((n + 1))
      t0=$((${EPOCHREALTIME/./} / 1000))
      if ! printf '{"op":"token","profile":"%s","min_valid_s":0,"id":%d}\n' "$p" "$n" >&"$wfd" 2>/dev/null; then
        echo "$t0 $t0 $p write_failed 0 0" >&"$out"; break 2
      fi
      line=
      if ! IFS= read -r -t "$reply_limit_s" line <&"$rfd"; then
        echo "$t0 $((${EPOCHREALTIME/./} / 1000)) $p no_reply 0 0" >&"$out"; break 2
      fi
      t1=$((${EPOCHREALTIME/./} / 1000))
      result=bad_reply ea=0 ei=0
      if [[ $line != *"\"id\":$n,"* ]]; then
        result=wrong_id
      elif [[ $line == '{"ok":true'* ]]; then
        [[ $line =~ \"expires_at\":([0-9]+) ]] && ea=${BASH_REMATCH[1]}
        [[ $line =~ \"expires_in\":([0-9]+) ]] && ei=${BASH_REMATCH[1]}
        if [[ $line =~ \"access_token\":\"([^\"]+)\" && $ea != 0 ]]; then
          result=ok
          token=${BASH_REMATCH[1]}
          if [[ ${tok[$p]:-} != "$token" ]]; then
            [[ -z ${tok[$p]:-} ]] || printf '%s %s %s %s %s\n' "${first[$p]}" "${last[$p]}" "$p" "${exp_at[$p]}" "${tok[$p]}" >>"$tokens"
            tok[$p]=$token first[$p]=$t0 exp_at[$p]=$ea
          fi
          last[$p]=$t0
          token=
        fi
      elif [[ $line =~ ^\{\"ok\":false.*\"error\":\{\"code\":\"([a-z_]+)\" ]]; then
        result=${BASH_REMATCH[1]}
      fi
      line=
      echo "$t0 $t1 $p $result $ea $ei" >&"$out"
    done
    rest=$((start + 1000 - $((${EPOCHREALTIME/./} / 1000))))
    ((rest <= 0)) || sleep "$((rest / 1000)).$(printf '%03d' $((rest % 1000)))"
  done
  for p in "${!tok[@]}"; do
    printf '%s %s %s %s %s\n' "${first[$p]}" "${last[$p]}" "$p" "${exp_at[$p]}" "${tok[$p]}" >>"$tokens"
  done
  exec {wfd}>&- # socat sees the end of its input, finishes and exits
}

# churner: iamtoken-get for one profile after another (a connection each).
churner() {
  local log=$work/poll-churn.log tokens=$work/tokens-churn n out rc t0 t1 p result ea ei
  trap 'exit 0' TERM
  for ((n = 0; n < 100 * duration + 1000; n++)); do
    [[ -e $work/running ]] || break
    printf -v p 'p%03d' $((n * 37 % profiles + 1))
    t0=$((${EPOCHREALTIME/./} / 1000))
    rc=0
    out=$("$get_bin" --profile "$p" --format json --min-valid 0 --timeout "$reply_limit_s" \
          --socket "$socket" 2>"$work/churn.err") || rc=$?
    t1=$((${EPOCHREALTIME/./} / 1000))
    result=bad_reply ea=0 ei=0
    if ((rc == 0)); then
      [[ $out =~ \"expires_at\":([0-9]+) ]] && ea=${BASH_REMATCH[1]}
      [[ $out =~ \"expires_in\":([0-9]+) ]] && ei=${BASH_REMATCH[1]}
      if [[ $out =~ \"access_token\":\"([^\"]+)\" && $ea != 0 ]]; then
        result=ok
        printf '%s %s %s %s %s\n' "$t0" "$t0" "$p" "$ea" "${BASH_REMATCH[1]}" >>"$tokens"
      fi
    elif [[ $(head -c 300 "$work/churn.err") =~ ^iamtoken-get:\ ([a-z_]+): ]]; then
      result=${BASH_REMATCH[1]}
    else
      result=exit_$rc
    fi
    out=
    echo "$t0 $t1 $p $result $ea $ei" >>"$log"
    sleep 0.1
  done
}

for ((c = 0; c < pollers; c++)); do
  ( trap - EXIT INT; poller "$c" ) &
  client_pids+=($!)
done
( trap - EXIT INT; churner ) &
client_pids+=($!)

# --- faults and samples ------------------------------------------------------
# samples: "elapsed_ms rss_kib fds upstream_fds"; upstream: the daemon's
# TCP sockets whose remote end is the simulator's port (/proc/net/tcp*).
sim_port_hex=$(printf ':%04X' "$sim_port")
sample() {
  local t=$1 rss counts
  rss=$(awk '/^RssAnon:/ { print $2 }' "/proc/$daemon_pid/status" 2>/dev/null) || return 0
  [[ -n $rss ]] || return 0
  counts=$({
    awk -v port="$sim_port_hex" 'FNR > 1 && substr($3, length($3) - 4) == port { print "inode", $10 }' \
      /proc/net/tcp /proc/net/tcp6 2>/dev/null
    find "/proc/$daemon_pid/fd" -mindepth 1 -maxdepth 1 -printf 'fd %l\n' 2>/dev/null
  } | awk '$1 == "inode" { up[$2] = 1; next }
           $1 == "fd" { n++; if ($2 ~ /^socket:\[[0-9]+\]$/ && (substr($2, 9, length($2) - 9) in up)) u++ }
           END { print n - u, u + 0 }') || return 0
  echo "$t $rss $counts" >>"$work/samples"
}

echo "soak: ${duration}s, $cycles cycles of $((cycle_ms / 1000)) s (fault in the first third), $profiles profiles," \
     "$pollers pollers + iamtoken-get, windows: cycle $w1 and $cycles" >&2
begin=$(now_ms)
end=$((begin + cycles * cycle_ms))
faulted=-1 # cycle whose fault is set
injected=()
last_clear=$begin
for ((tick = 0; tick < 4 * duration + 100; tick++)); do
  now=$(now_ms)
  ((now < end)) || break
  kill -0 "$daemon_pid" 2>/dev/null || break
  t=$((now - begin))
  cycle=$((t / cycle_ms))
  phase=$((t % cycle_ms))
  if ((phase < third_ms && faulted != cycle)); then
    f=$((cycle % ${#faults[@]}))
    sim_curl POST /sim/faults "${faults[f]}" >/dev/null || { echo "soak: the simulator refused a fault rule" >&2; exit 2; }
    faulted=$cycle
    injected+=("${fault_names[f]}")
  elif ((phase >= third_ms && faulted == cycle)); then
    sim_curl DELETE /sim/faults >/dev/null || { echo "soak: the simulator did not clear the faults" >&2; exit 2; }
    faulted=-2
    last_clear=$(now_ms)
  fi
  sample "$t"
  sleep 0.25
done
if ((faulted != -2 && faulted != -1)); then
  sim_curl DELETE /sim/faults >/dev/null || { echo "soak: the simulator did not clear the faults" >&2; exit 2; }
  last_clear=$(now_ms)
fi

# --- recovery: every profile has a token asked for after the last fault -------
# Each profile's refreshes (successful exchanges) from the status, until each
# has two more than at the first look (which is after the clear): the first
# may have been asked for before the clear, the second was not. Bound: the
# retry scheduled at the clear (at most the backoff cap away), an attempt (a
# CR token and an exchange, refresh.timeout_s each), the next refresh (due
# within the lifetime) and its attempt, plus react_limit_s.
recovery_bound_ms=$(((backoff_cap_s + 4 * timeout_s + lifetime_s + react_limit_s) * 1000))
recovered=
behind=$profiles
if kill -0 "$daemon_pid" 2>/dev/null; then
  status_json | jq -r '.profiles[] | "\(.name) \(.refreshes)"' >"$work/refreshes.clear" 2>/dev/null || true
  looked=$(now_ms)
  while (($(now_ms) < looked + recovery_bound_ms)); do
    status_json | jq -r '.profiles[] | "\(.name) \(.refreshes)"' >"$work/refreshes.now" 2>/dev/null || true
    behind=$(awk 'NR == FNR { base[$1] = $2; next } !($1 in base) || $2 < base[$1] + 2 { n++ } END { print n + 0 }' \
               "$work/refreshes.clear" "$work/refreshes.now")
    if [[ -s $work/refreshes.now && $behind == 0 && $(wc -l <"$work/refreshes.now") == "$profiles" ]]; then
      recovered=$(($(now_ms) - last_clear))
      break
    fi
    sleep 0.5
  done
  [[ -n $recovered ]] || violation "not every profile had a new token within $((recovery_bound_ms / 1000)) s of the last fault clearing ($behind behind)"
fi

rm -f "$work/running"
# A poller finishes its request in flight (at most reply_limit_s) and exits.
for pid in "${client_pids[@]}"; do
  for ((i = 0; i < 10 * (reply_limit_s + react_limit_s); i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$pid"
done
client_pids=()
upstream_calls=$(sim_curl GET /sim/stats | jq '.imds_token + .imds_iam_token + .iam' 2>/dev/null || echo '?')

# --- the daemon: alive, stops cleanly, nothing leaked ----------------------------
stop_daemon "$work/daemon.log"

# --- the clients' view -----------------------------------------------------------
cat "$work"/poll-*.log >"$work/all.log"
# Events by time: a token reply counts from its arrival (t1), a request is
# judged at its start (t0); at equal times the request comes first.
awk '{ print $1, 0, $0; if ($4 == "ok") print $2, 1, $0 }' "$work/all.log" |
  sort -k1,1n -k2,2n |
  awk '
    $2 == 1 {
      v = $7 * 1000; if ($3 + $8 * 1000 > v) v = $3 + $8 * 1000
      if (v > valid[$5]) valid[$5] = v
      next
    }
    $6 == "ok" && $3 >= ($7 + 1) * 1000 { print "expired token handed out: " $5 " expires_at " $7 " at " $3 " ms"; next }
    $6 == "ok" { next }
    $6 != "unavailable" { print "client error " $6 " for " $5 " at " $3 "-" $4 " ms"; next }
    valid[$5] > $4 { print "client error " $6 " for " $5 " at " $3 "-" $4 " ms while a token served earlier was valid until " sprintf("%.0f", valid[$5]) " ms" }
  ' >"$work/client_violations"
# Tokens: decode each JWT payload (base64url) for exp and profile_id.
cat "$work"/tokens-* 2>/dev/null >"$work/tokens" || true
awk '
  BEGIN { a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
          for (i = 1; i <= 64; i++) idx[substr(a, i, 1)] = i - 1 }
  function b64url(s,   i, c, bits, n, out, d) {
    out = ""; bits = 0; n = 0
    for (i = 1; i <= length(s); i++) {
      c = substr(s, i, 1)
      if (!(c in idx)) return ""
      bits = bits * 64 + idx[c]; n += 6
      if (n >= 8) { n -= 8; d = 2 ^ n; out = out sprintf("%c", int(bits / d)); bits = bits % d }
    }
    return out
  }
  {
    split($5, part, ".")
    payload = b64url(part[2])
    jexp = ""; pid = ""
    if (match(payload, /"exp":[0-9]+/)) jexp = substr(payload, RSTART + 6, RLENGTH - 6) + 0
    if (match(payload, /"profile_id":"[^"]*"/)) pid = substr(payload, RSTART + 14, RLENGTH - 15)
    want = sprintf("Profile-00000000-0000-4000-8000-%012d", substr($3, 2) + 0)
    if (jexp == "") { print "a token handed out for " $3 " is not a JWT with exp"; next }
    if ($2 >= (jexp + 1) * 1000) print "expired JWT handed out for " $3 ": exp " jexp " at " $2 " ms"
    if ($4 > jexp) print "reply for " $3 " said expires_at " $4 ", after the JWT exp " jexp
    if (pid != want) print "a token for another profile handed out for " $3
  }
' "$work/tokens" >>"$work/client_violations"
report_violations "$work/client_violations"

# No token's payload or signature in the daemon's log: every run of
# base64url characters in the log (a JWT splits into its parts at the dots)
# looked up among the parts of every token handed out.
awk '{ split($5, part, "."); print part[2]; print part[3] }' "$work/tokens" | awk 'length($0) >= 16' >"$work/patterns"
if [[ -s $work/patterns ]] &&
   grep -oE '[A-Za-z0-9_-]{16,}' "$work/daemon.log" |
     awk 'NR == FNR { part[$0] = 1; next } ($0 in part) { found = 1 } END { exit !found }' "$work/patterns" -; then
  violation "a token's payload or signature appears in the daemon's log"
fi

# --- memory and descriptors ------------------------------------------------------
# median|fewest WINDOW_END_MS COLUMN: the median or the smallest value of a
# column over the last third of the cycle ending at WINDOW_END_MS.
window() {
  awk -v lo=$(($1 - third_ms)) -v hi="$1" -v col="$2" '$1 >= lo && $1 <= hi { print $col }' "$work/samples" | sort -n
}
median() { window "$@" | awk '{ v[NR] = $1 } END { if (NR == 0) print "none"; else print v[int((NR + 1) / 2)] }'; }
fewest() { window "$@" | awk 'NR == 1 { v = $1 } END { if (NR == 0) print "none"; else print v }'; }
growth() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0) printf "%.1f", (b - a) * 100 / a; else print "n/a" }'; }
touch "$work/samples"
rss1=$(median $((w1 * cycle_ms)) 2); rss2=$(median $((cycles * cycle_ms)) 2)
fd1=$(fewest $((w1 * cycle_ms)) 3); fd2=$(fewest $((cycles * cycle_ms)) 3)
up1=$(median $((w1 * cycle_ms)) 4); up2=$(median $((cycles * cycle_ms)) 4)
up_max=$(awk 'BEGIN { m = 0 } $4 > m { m = $4 } END { print m }' "$work/samples")
rss_growth=$(growth "$rss1" "$rss2"); fd_growth=$(growth "$fd1" "$fd2")
rss_mode=${SOAK_RSS:-auto}
if [[ $rss_mode == auto ]]; then
  rss_mode=on
  dynamic=$(readelf -d "$daemon_bin" 2>/dev/null || true)
  [[ $dynamic != *libasan* ]] || rss_mode=off
fi
if [[ $rss1 == none || $rss2 == none || $fd1 == none || $fd2 == none ]]; then
  violation "no samples in a measuring window"
else
  awk -v a="$fd1" -v b="$fd2" 'BEGIN { exit !(b > a * 1.05) }' &&
    violation "descriptors (not counting upstream connections) grew from $fd1 to $fd2 (> 5 %)"
  if [[ $rss_mode == on ]]; then
    awk -v a="$rss1" -v b="$rss2" 'BEGIN { exit !(b > a * 1.05) }' &&
      violation "RssAnon grew from $rss1 KiB to $rss2 KiB (> 5 %)"
  fi
fi
((up_max <= 8 + profiles + 1)) || violation "$up_max connections to the upstream at once (curl keeps at most 8 idle plus one per transfer)"

# --- summary -----------------------------------------------------------------------
requests=$(wc -l <"$work/all.log")
oks=$(awk '$4 == "ok"' "$work/all.log" | wc -l)
errors=$((requests - oks))
by_code=$(awk '$4 != "ok" { n[$4]++ } END { for (c in n) { printf "%s%s %d", sep, c, n[c]; sep = ", " } }' "$work/all.log")
min_ok=$(awk -v want="$profiles" '$4 == "ok" { if (!($3 in n)) k++; n[$3]++ }
  END { m = -1; for (p in n) if (m < 0 || n[p] < m) m = n[p]; print (k < want) ? 0 : m }' "$work/all.log")
w1_s=$((w1 * cycle_ms / 1000)); w2_s=$((cycles * cycle_ms / 1000)); win_s=$((third_ms / 1000))
cat <<EOF
| soak figure | value |
|---|---|
| duration, cycles | ${duration} s, $cycles × $((cycle_ms / 1000)) s (fault in the first third) |
| profiles, token lifetime, refresh.timeout_s | $profiles, $lifetime_s s, $timeout_s s |
| faults injected | ${#injected[@]}: ${injected[*]} |
| requests (3 pollers + iamtoken-get) | $requests |
| token replies; fewest for one profile | $oks; $min_ok |
| errors (all allowed: no valid token) | $errors${by_code:+ ($by_code)} |
| upstream calls (sim) | $upstream_calls |
| distinct tokens handed out | $(awk '{ print $5 }' "$work/tokens" | sort -u | wc -l) |
| recovery after the last fault, ms | ${recovered:-none} (bound $recovery_bound_ms) |
| RssAnon KiB at ${w1_s} s → ${w2_s} s (median of the ${win_s} s before) | $rss1 → $rss2 ($rss_growth %, judged: $rss_mode) |
| descriptors, not upstream, at ${w1_s} s → ${w2_s} s (fewest in the ${win_s} s before) | $fd1 → $fd2 ($fd_growth %) |
| upstream connections at ${w1_s} s → ${w2_s} s; most at once | $up1 → $up2; $up_max |
| daemon exit status on SIGTERM | $daemon_rc |
| violations | $violations |
EOF
if ((violations > 0)); then
  echo "soak: FAILED with $violations violation(s)" >&2
  exit 1
fi
echo "soak: OK"
