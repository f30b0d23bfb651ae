#!/usr/bin/env bash
# Installs the Debian packages iamtokend needs, only those that are missing
# (a second run does no apt work). Usage: scripts/deps.sh [build|test|bench|stress]
# (stress: what scripts/stress-test.sh needs on top; each of its runs of
# scripts/test.sh installs the test set itself.)
set -euo pipefail

build_pkgs=(g++ cmake ninja-build pkg-config libasio-dev libsimdjson-dev
  libcurl4-openssl-dev libssl-dev libfmt-dev catch2 libsystemd-dev libexpected-dev
  libhttp-parser-dev prometheus-cpp-dev curl)
test_pkgs=(clang-16 libclang-rt-16-dev systemd dpkg-dev socat jq prometheus)
bench_pkgs=(hyperfine socat curl jq)
stress_pkgs=(stress-ng git)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  test) want+=("${test_pkgs[@]}") ;;
  bench) want+=("${bench_pkgs[@]}") ;;
  stress) want+=("${stress_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench|stress]" >&2; exit 64 ;;
esac
# ccache makes rebuilds cheap; welcome but not required.
want+=(ccache)

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
