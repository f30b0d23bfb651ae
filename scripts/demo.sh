#!/usr/bin/env bash
# A two-minute tour: builds the release preset, starts iamtoken-sim and
# iamtokend on a temporary socket, fetches tokens for two profiles with
# iamtoken-get, shows the status table, and watches a token being renewed
# ahead of its expiry. Everything it starts is stopped on exit (also on error).
# Usage: scripts/demo.sh   (from anywhere; about 20 s after the build)
# IAMTOK_DEMO_BUILD_DIR=build/debug scripts/demo.sh uses binaries already
# built there instead of building the release preset.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ -n "${IAMTOK_DEMO_BUILD_DIR:-}" ]; then
  bin="$(cd "$IAMTOK_DEMO_BUILD_DIR" && pwd)"
else
  scripts/deps.sh build
  cmake --preset release >/dev/null
  cmake --build --preset release
  bin="$root/build/release"
fi
sim_bin="$bin/sim/iamtoken-sim"
daemon_bin="$bin/daemon/iamtokend"
get_bin="$bin/client/iamtoken-get"

work="$(mktemp -d "${TMPDIR:-/tmp}/iamtok-demo-XXXXXX")"
sim_pid=""
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Shows a token reply with the token cut to its first 24 characters.
shorten() { sed -E 's/("access_token":")([^"]{24})[^"]*"/\1\2…"/'; }
# A fingerprint of a token, to compare two without printing either.
fingerprint() { "$get_bin" --socket "$socket" -p "$1" | sha256sum | cut -c1-12; }

step "iamtoken-sim: emulated IMDS + IAM on loopback, access tokens live 20 s"
"$sim_bin" --listen 127.0.0.1:0 --port-file "$work/port" --iam-lifetime 20 --quiet \
  >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port="$(cat "$work/port")"
echo "listening on 127.0.0.1:$port"

socket="$work/iamtokend.sock"
cat >"$work/config.json" <<JSON
{
  "socket":  { "path": "$socket", "mode": "0600" },
  "source":  { "type": "imds", "imds": { "endpoint": "http://127.0.0.1:$port" } },
  "refresh": { "at_fraction": 0.5, "min_valid_s": 5 },
  "profiles": [
    { "name": "reader",   "profile_id": "Profile-00000000-0000-4000-8000-000000000001" },
    { "name": "deployer", "profile_name": "deployer" }
  ]
}
JSON
step "the configuration"
cat "$work/config.json"
"$daemon_bin" --config "$work/config.json" --check-config

step "iamtokend: fetches both tokens at start, renews each at half its lifetime"
"$daemon_bin" --config "$work/config.json" 2>"$work/daemon.err" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || { echo "iamtokend did not start:" >&2; cat "$work/daemon.err" >&2; exit 1; }

for profile in reader deployer; do
  step "iamtoken-get -p $profile --format json"
  "$get_bin" --socket "$socket" -p "$profile" --format json | shorten
done

step "iamtoken-get -p reader --format env (token cut short)"
"$get_bin" --socket "$socket" -p reader --format env | sed -E 's/^(IAM_ACCESS_TOKEN=.{24}).*/\1…/'

step "iamtoken-get --status"
"$get_bin" --socket "$socket" --status
before="$(fingerprint reader)"

step "an unknown profile: exit code 78"
set +e
"$get_bin" --socket "$socket" -p nobody 2>&1
echo "exit code $?"
set -e

step "waiting 12 s while a client asks every second (renewal is due at ~10 s)"
errors=0
for _ in $(seq 12); do
  "$get_bin" --socket "$socket" -p reader >/dev/null || errors=$((errors + 1))
  sleep 1
done
after="$(fingerprint reader)"
"$get_bin" --socket "$socket" --status
echo "reader token fingerprint before: $before  after: $after"
[ "$before" != "$after" ] || { echo "the token was not renewed" >&2; exit 1; }
[ "$errors" -eq 0 ] || { echo "$errors client errors" >&2; exit 1; }
echo "renewed ahead of expiry, with $errors client errors"

step "the daemon's log (no token in it)"
cat "$work/daemon.err"

step "stopping"
kill "$daemon_pid"
wait "$daemon_pid" && echo "iamtokend exited 0"
daemon_pid=""
[ -e "$socket" ] && { echo "socket file left behind" >&2; exit 1; }
echo "socket removed; done"
