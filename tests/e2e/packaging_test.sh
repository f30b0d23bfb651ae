#!/usr/bin/env bash
# shellcheck disable=SC2154 # prefix, bindir, ... come from the build's install/layout.sh
# Packaging test: installs a built tree into a staging directory and checks
# the layout, the man pages, the systemd units (systemd-analyze verify and
# security), and the .deb that CPack builds from the same install rules.
# Usage: packaging_test.sh BUILD_DIR SOURCE_DIR
# Exit codes: 0 pass, 1 fail, 77 skip (systemd-analyze is not installed).
set -euo pipefail

build=${1:?usage: packaging_test.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: packaging_test.sh BUILD_DIR SOURCE_DIR}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze is not installed"
  exit 77
fi

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iamtok-packaging.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The layout Install.cmake computed at configure time: prefix, bindir,
# mandir, datadir, docdir, unitdir, sysusersdir, tmpfilesdir, confdir, binaries.
# shellcheck source=/dev/null
. "$build/install/layout.sh"

# Runs a command quietly; on failure prints its output and returns its status.
quiet() {
  local log="$tmp/cmd.log" rc=0
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "command failed ($rc): $*"
    sed 's/^/  | /' "$log"
  fi
  return "$rc"
}

# --- cmake --install into a staging directory
stage="$tmp/stage"
if ! DESTDIR="$stage" quiet cmake --install "$build"; then
  fail "cmake --install"
  exit 1
fi
pass "cmake --install into a staging directory"

expect_file() {
  if [ -f "$stage$1" ]; then pass "installed $1"; else fail "missing $1"; fi
}
for binary in $binaries; do
  if [ -x "$stage$bindir/$binary" ]; then pass "installed $bindir/$binary"; else fail "missing $bindir/$binary"; fi
done
[ -e "$stage$bindir/iamtoken-sim" ] && fail "iamtoken-sim is installed by default"
# The installed credential helper runs from where Docker finds it.
helper="$stage$bindir/docker-credential-iamtoken"
if [ -x "$helper" ]; then
  if [ "$("$helper" list </dev/null 2>&1)" = "{}" ]; then
    pass "installed docker-credential-iamtoken answers list"
  else
    fail "installed docker-credential-iamtoken does not answer list with {}"
  fi
fi
expect_file "$unitdir/iamtokend.service"
expect_file "$unitdir/iamtokend.socket"
expect_file "$sysusersdir/iamtokend.conf"
expect_file "$tmpfilesdir/iamtokend.conf"
expect_file "$docdir/operations.md"
# The SDKs' placeholder CR-token file: world-readable, not blank.
sdk_cr_token="$datadir/iamtokend/sdk-cr-token"
expect_file "$sdk_cr_token"
if [ -f "$stage$sdk_cr_token" ]; then
  mode=$(stat -c '%a' "$stage$sdk_cr_token")
  if [ "$mode" = 644 ] && grep -q '[^[:space:]]' "$stage$sdk_cr_token"; then
    pass "$sdk_cr_token is 0644 and not blank"
  else
    fail "$sdk_cr_token is mode $mode or blank (want 0644, a non-blank placeholder)"
  fi
fi
expect_file "$docdir/examples/systemd/iamtokend-http.socket"
expect_file "$docdir/examples/systemd/iamtokend.service.d/http.conf"
expect_file "$docdir/examples/k8s/pod.yaml"
expect_file "$docdir/examples/k8s/configmap.yaml"
expect_file "$docdir/examples/systemd/iamtokend-textfile.timer"
expect_file "$docdir/examples/prometheus/iamtokend-alerts.yml"
have_config=0
if [ -f "$source_dir/examples/config.json" ]; then
  have_config=1
  expect_file "$confdir/config.json"
  if cmp -s "$source_dir/examples/config.json" "$stage$confdir/config.json"; then
    pass "config.json is examples/config.json"
  else
    fail "config.json differs from examples/config.json"
  fi
fi
man_suffix=""
[ -n "$man_gzipped" ] && man_suffix=".gz"
man_pages="man1/iamtoken-get.1 man1/docker-credential-iamtoken.1 man5/iamtokend.json.5 man8/iamtokend.8"
for page in $man_pages; do
  expect_file "$mandir/$page$man_suffix"
done

# The ExecStart= of the installed unit names the installed binary and config.
if grep -qx "ExecStart=$bindir/iamtokend --config $confdir/config.json" "$stage$unitdir/iamtokend.service"; then
  pass "ExecStart names $bindir/iamtokend and $confdir/config.json"
else
  fail "ExecStart of the installed unit does not name $bindir/iamtokend --config $confdir/config.json"
fi

# A second install keeps an operator's config.
if [ "$have_config" -eq 1 ] && [ -f "$stage$confdir/config.json" ]; then
  echo '{"edited": true}' >"$stage$confdir/config.json"
  if DESTDIR="$stage" quiet cmake --install "$build" \
     && [ "$(cat "$stage$confdir/config.json")" = '{"edited": true}' ]; then
    pass "cmake --install keeps an existing config.json"
  else
    fail "cmake --install overwrote an existing config.json"
  fi
  cp "$source_dir/examples/config.json" "$stage$confdir/config.json"
fi

# --- man pages render without warnings
if command -v groff >/dev/null 2>&1; then
  for page in $man_pages; do
    file="$stage$mandir/$page$man_suffix"
    [ -f "$file" ] || continue
    if [ -n "$man_suffix" ]; then reader=(gzip -dc "$file"); else reader=(cat "$file"); fi
    warnings=$("${reader[@]}" | groff -man -Tutf8 -ww -z 2>&1) || warnings="groff failed: $warnings"
    if [ -z "$warnings" ]; then pass "man page $page renders without warnings"; else fail "man page $page: $warnings"; fi
  done
else
  echo "note: groff is not installed; man pages not rendered"
fi

# --- systemd-analyze verify, offline: a root holding the staged files plus
# the host's own units (sysinit.target, ...) and /bin/kill (ExecReload=).
root="$tmp/root"
cp -al "$stage" "$root"
host_units=/usr/lib/systemd/system
[ -d "$host_units" ] || host_units=/lib/systemd/system
mkdir -p "$root/usr/lib/systemd/system" "$root/bin"
find "$host_units" -maxdepth 1 ! -name 'iamtokend.*' ! -path "$host_units" \
  -exec cp -an -t "$root/usr/lib/systemd/system" {} +
cp "$(type -P kill)" "$root/bin/kill"
# An unknown key or a missing binary is a warning or an error on stderr: any
# output at all fails the check.
# The example HTTP endpoint socket unit is verified with them, as an
# operator would install it.
cp "$source_dir/examples/systemd/iamtokend-http.socket" "$root$unitdir/"
verify_out=$(systemd-analyze verify --man=no --root="$root" \
  "$unitdir/iamtokend.socket" "$unitdir/iamtokend.service" "$unitdir/iamtokend-http.socket" 2>&1) \
  && verify_rc=0 || verify_rc=$?
if [ "$verify_rc" -eq 0 ] && [ -z "$verify_out" ]; then
  pass "systemd-analyze verify"
else
  fail "systemd-analyze verify (exit $verify_rc): $verify_out"
fi

# --- sysusers.d and tmpfiles.d applied to the same root: the users and
# groups exist, and /run/iamtokend lets group iamtoken reach the socket.
mkdir -p "$root/etc"
if quiet systemd-sysusers --root="$root" iamtokend.conf \
   && grep -q '^iamtokend:x:[0-9]*:[0-9]*:' "$root/etc/passwd" \
   && grep -q '^iamtoken:x:' "$root/etc/group" \
   && grep -q '^iamtokend:x:' "$root/etc/group"; then
  pass "systemd-sysusers creates user iamtokend and groups iamtokend, iamtoken"
else
  fail "systemd-sysusers did not create user iamtokend and groups iamtokend, iamtoken"
fi
if [ "$(id -u)" -eq 0 ]; then
  if quiet systemd-tmpfiles --root="$root" --create iamtokend.conf; then
    run_dir=$(stat -c '%a %U %G' "$root/run/iamtokend" 2>/dev/null || true)
    # stat names owners from the host's databases: compare ids instead.
    want_uid=$(sed -n 's/^iamtokend:x:\([0-9]*\):.*/\1/p' "$root/etc/passwd")
    want_gid=$(sed -n 's/^iamtoken:x:\([0-9]*\):.*/\1/p' "$root/etc/group")
    got=$(stat -c '%a %u %g' "$root/run/iamtokend" 2>/dev/null || true)
    if [ "$got" = "755 $want_uid $want_gid" ]; then
      pass "systemd-tmpfiles creates /run/iamtokend 0755 iamtokend:iamtoken"
    else
      fail "/run/iamtokend is '$got' ($run_dir), not '755 $want_uid $want_gid'"
    fi
  else
    fail "systemd-tmpfiles --create failed"
  fi
else
  echo "note: not root; tmpfiles.d entry not applied"
fi

# --- systemd-analyze security: exposure at most 2.0
security_out=$(systemd-analyze security --offline=yes "$stage$unitdir/iamtokend.service" 2>&1) || true
exposure=$(printf '%s\n' "$security_out" | sed -n 's/.*Overall exposure level for iamtokend.service: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
  fail "systemd-analyze security printed no exposure level"
  printf '%s\n' "$security_out" | tail -5
elif awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }'; then
  pass "systemd-analyze security exposure $exposure (at most 2.0)"
else
  fail "systemd-analyze security exposure $exposure is above 2.0"
  printf '%s\n' "$security_out" | grep '✗' || true
fi

# --- the .deb
if command -v dpkg-deb >/dev/null 2>&1 && command -v cpack >/dev/null 2>&1; then
  if quiet cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/deb"; then
    deb=$(find "$tmp/deb" -maxdepth 1 -name 'iamtokend_*.deb' | head -n 1)
  else
    deb=""
  fi
  if [ -z "$deb" ]; then
    fail "cpack -G DEB built no iamtokend_*.deb"
  else
    pass "cpack -G DEB built $(basename "$deb")"
    info=$(dpkg-deb -I "$deb")
    field() { printf '%s\n' "$info" | sed -n "s/^ $1: //p"; }
    expect_field() {
      if [ "$(field "$1")" = "$2" ]; then pass "$1: $2"; else fail "$1 is '$(field "$1")', not '$2'"; fi
    }
    expect_field Package iamtokend
    expect_field Section admin
    if [ -n "$(field Maintainer)" ]; then pass "Maintainer is set"; else fail "no Maintainer"; fi
    depends=$(field Depends)
    case "$depends" in
      *libc6*) pass "Depends (dpkg-shlibdeps): $depends" ;;
      *) fail "Depends lacks libc6: '$depends'" ;;
    esac
    case "$depends" in
      *libprometheus-cpp-core*) pass "Depends names the prometheus-cpp runtime" ;;
      *) fail "Depends lacks libprometheus-cpp-core: '$depends'" ;;
    esac
    control="$tmp/control"
    dpkg-deb -e "$deb" "$control"
    for script in postinst prerm postrm; do
      if [ -x "$control/$script" ] && sh -n "$control/$script"; then
        pass "maintainer script $script"
      else
        fail "maintainer script $script missing, not executable or not valid sh"
      fi
    done
    if [ "$have_config" -eq 1 ]; then
      if grep -qx "$confdir/config.json" "$control/conffiles" 2>/dev/null; then
        pass "conffiles lists $confdir/config.json"
      else
        fail "conffiles does not list $confdir/config.json"
      fi
    fi
    contents=$(dpkg-deb -c "$deb" | awk '{ print $NF }' | sed 's|^\./|/|')
    in_deb() {
      if printf '%s\n' "$contents" | grep -qx "$1"; then pass "deb has $1"; else fail "deb lacks $1"; fi
    }
    for binary in $binaries; do in_deb "$bindir/$binary"; done
    in_deb "$unitdir/iamtokend.service"
    in_deb "$unitdir/iamtokend.socket"
    in_deb "$sysusersdir/iamtokend.conf"
    in_deb "$tmpfilesdir/iamtokend.conf"
    in_deb "$sdk_cr_token"
    for page in $man_pages; do in_deb "$mandir/$page$man_suffix"; done
    [ "$have_config" -eq 1 ] && in_deb "$confdir/config.json"
    if printf '%s\n' "$contents" | grep -q 'iamtoken-sim'; then
      fail "deb contains iamtoken-sim"
    else
      pass "deb has no iamtoken-sim"
    fi
  fi
else
  fail "cpack or dpkg-deb is not installed"
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all packaging checks passed"
