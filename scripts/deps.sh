#!/usr/bin/env bash
# Installs the Debian packages iamtokend needs, only those that are missing
# (a second run does no apt work). Usage: scripts/deps.sh [build|test|bench|stress]
# (stress: what scripts/stress-test.sh needs on top; each of its runs of
# scripts/test.sh installs the test set itself.)
# `test` also installs IBM's Node SDK core for the SDK tests (tests/sdk): `npm ci`
# from the committed package-lock.json, only when tests/sdk/node_modules is
# missing or was installed from another lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(g++ cmake ninja-build pkg-config libasio-dev libsimdjson-dev
  libcurl4-openssl-dev libssl-dev libfmt-dev catch2 libsystemd-dev libexpected-dev
  libhttp-parser-dev prometheus-cpp-dev curl)
# python3-ibm-cloud-sdk-core: IBM's Python SDK core, for the SDK tests (tests/sdk).
test_pkgs=(clang-16 libclang-rt-16-dev systemd dpkg-dev socat jq prometheus python3-ibm-cloud-sdk-core)
bench_pkgs=(hyperfine socat curl jq python3)
stress_pkgs=(stress-ng git)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  test)
    want+=("${test_pkgs[@]}")
    # Node and npm for the Node SDK tests: Debian's, unless some npm is there already
    # (another nodejs build brings its own npm, and Debian's npm would conflict with it).
    command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
    ;;
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
if [ ${#missing[@]} -ne 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Node SDK core, pinned by tests/sdk/package-lock.json. The stamp holds the
# lock file's hash as of the last `npm ci`; a matching stamp means nothing to do.
if [ "${1:-build}" = test ]; then
  sdk=tests/sdk
  stamp=$sdk/node_modules/.iamtok-lock-sha256
  want_hash=$(sha256sum "$sdk/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want_hash" ]; then
    echo "deps: npm ci in $sdk" >&2
    npm ci --prefix "$sdk" --no-audit --no-fund --ignore-scripts --loglevel=error >&2
    echo "$want_hash" >"$stamp"
  fi
fi
