# Sourced by scripts/chaos.sh and scripts/soak.sh: the clock, violations,
# stopping what they started, the simulator's start-up and control API, and
# the daemon's checked stop. Before sourcing, set:
#   prog           the message prefix ("chaos", "soak")
#   work           the run's temporary directory
#   start_limit_s  how long a process may take to start
#   react_limit_s  how long a process may take to stop or to answer what
#                  needs no upstream (scheduling on a loaded machine only)
# It sets sim_pid, daemon_pid and client_pids (empty), which stop_started stops.

sim_pid=
daemon_pid=
client_pids=()

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

violations=0
violation() { echo "$prog: VIOLATION: $*" >&2; violations=$((violations + 1)); }

# report_violations FILE: one violation per line of FILE, the first 20.
report_violations() {
  local line extra
  while IFS= read -r line; do violation "$line"; done < <(head -n 20 "$1")
  extra=$(($(wc -l <"$1") - 20))
  ((extra <= 0)) || violation "... and $extra more client violations"
}

stop_pid() { # stop_pid PID: SIGTERM, up to react_limit_s, then SIGKILL
  local pid=$1 i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 10 * react_limit_s; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# stop_started: the clients, the daemon, then the simulator.
stop_started() {
  local pid
  for pid in "${client_pids[@]}"; do stop_pid "$pid"; done
  stop_pid "$daemon_pid"
  stop_pid "$sim_pid"
}

# remove_work KEEP TOKEN_FILES...: removes $work; with KEEP=1 keeps it, less
# the files that hold tokens.
remove_work() {
  local keep=$1
  shift
  if [[ $keep == 1 ]]; then
    rm -f "$@"
    echo "$prog: kept $work (tokens removed)" >&2
  else
    rm -rf "$work"
  fi
}

# start_sim SIM_BINARY ARGS...: starts iamtoken-sim on an ephemeral loopback
# port (logs in $work/sim.*); sets sim_pid, sim_port and url; exit 2 if it
# does not listen within start_limit_s.
start_sim() {
  local bin=$1 i
  shift
  "$bin" --listen 127.0.0.1:0 --port-file "$work/port" --quiet "$@" >"$work/sim.out" 2>"$work/sim.log" &
  sim_pid=$!
  for ((i = 0; i < 10 * start_limit_s; i++)); do
    [[ -s $work/port ]] && break
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -s $work/port ]] || { echo "$prog: iamtoken-sim did not start" >&2; cat "$work/sim.log" >&2; exit 2; }
  sim_port=$(tr -d '\n' <"$work/port")
  url="http://127.0.0.1:$sim_port"
}

sim_curl() { # sim_curl METHOD PATH [JSON]: prints the body; fails unless 2xx
  local args=(--noproxy '*' -sS --max-time "$react_limit_s" -X "$1" "$url$2")
  [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data "$3")
  curl --fail "${args[@]}"
}

# stop_daemon LOG: SIGTERM to $daemon_pid, which must be alive, stop within
# react_limit_s and exit 0 (a sanitizer's report at exit makes it fail);
# no sanitizer report in LOG. Sets daemon_rc (the exit status, "hung" or
# "died N") and clears daemon_pid.
stop_daemon() {
  local i
  daemon_rc=0
  if kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    for ((i = 0; i < 10 * react_limit_s; i++)); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$daemon_pid" 2>/dev/null; then
      violation "iamtokend did not stop within $react_limit_s s of SIGTERM"
      daemon_rc=hung
    else
      wait "$daemon_pid" || daemon_rc=$?
      ((daemon_rc == 0)) || violation "iamtokend exited $daemon_rc on SIGTERM"
      daemon_pid=
    fi
  else
    wait "$daemon_pid" || daemon_rc=$?
    violation "iamtokend died during the run (exit $daemon_rc)"
    daemon_rc="died $daemon_rc"
    daemon_pid=
  fi
  if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$1"; then
    violation "sanitizer report in the daemon's log:"
    grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY' "$1" | head -n 5 >&2
  fi
}
