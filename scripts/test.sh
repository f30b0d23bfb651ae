#!/usr/bin/env bash
# Installs what is missing, builds the Debug and ASan+UBSan presets with
# warnings as errors, and runs the test suite: unit tests on Debug, everything
# (unit, end-to-end, hostile clients, chaos smoke) on ASan+UBSan, then a short
# libFuzzer smoke run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test

jobs=$(nproc)
export CCACHE_BASEDIR="$PWD"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "build debug"
cmake --preset debug >/dev/null
cmake --build --preset debug -j "$jobs"

step "build asan"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"

step "unit tests (debug)"
ctest --preset debug -L unit -j "$jobs"

step "all tests (asan+ubsan)"
ctest --preset asan -j "$jobs" --timeout 300

if [ -x scripts/fuzz.sh ]; then
  step "fuzz smoke"
  scripts/fuzz.sh --smoke
fi

step "done"
