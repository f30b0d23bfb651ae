#!/usr/bin/env bash
# Runs the libFuzzer targets (docs/fuzzing.md).
#   scripts/fuzz.sh TARGET SECONDS   run one target for SECONDS
#   scripts/fuzz.sh --smoke          run every target briefly (20 s each)
#   scripts/fuzz.sh --list           list the targets
# Builds the `fuzz` preset (clang-16) if needed. Each run works on a writable
# corpus, build/fuzz/corpus-work/TARGET, seeded from tests/fuzz/corpus/TARGET;
# crash, leak and timeout inputs land in build/fuzz/crashes/. Exits non-zero
# when a target finds something.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly targets=(request_fuzz reply_fuzz json_fuzz config_fuzz upstream_parse_fuzz sim_http_fuzz http_fuzz)
readonly build=build/fuzz
readonly smoke_seconds=${IAMTOK_FUZZ_SMOKE_SECONDS:-20}
symbolizer=$(command -v llvm-symbolizer-16 || command -v llvm-symbolizer || true)
if [ -n "$symbolizer" ]; then
  export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$symbolizer}
fi
jobs=$(nproc)
jobs=$((jobs > 2 ? 2 : jobs))

usage() {
  echo "usage: scripts/fuzz.sh TARGET SECONDS | --smoke | --list" >&2
  echo "targets: ${targets[*]}" >&2
  exit 64
}

build_targets() {
  if [ ! -f "$build/build.ninja" ]; then
    cmake --preset fuzz >/dev/null
  fi
  ninja -C "$build" -j "$jobs" "$@"
}

# run TARGET SECONDS: one libFuzzer session; returns its exit status.
run() {
  local target=$1 seconds=$2
  local work="$build/corpus-work/$target" seeds="tests/fuzz/corpus/$target"
  mkdir -p "$work" "$build/crashes"
  if [ -d "$seeds" ]; then
    cp -n "$seeds"/* "$work"/ 2>/dev/null || true
  fi
  local dict=()
  if [ -f "tests/fuzz/$target.dict" ]; then
    dict=(-dict="tests/fuzz/$target.dict")
  fi
  local log="$build/crashes/$target.log" stamp="$build/crashes/.$target.start"
  touch "$stamp"
  echo "== $target: ${seconds}s (corpus $(find "$work" -type f | wc -l) files)"
  local status=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$build/tests/fuzz/$target" "$work" "${dict[@]}" \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=8192 \
      -artifact_prefix="$build/crashes/$target-" -print_final_stats=1 \
      >"$log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+.*DONE' "$log" | tr '\n' ' ' || true
  echo "corpus: $(find "$work" -type f | wc -l) files"
  if [ "$status" -ne 0 ]; then
    echo "!! $target found a problem (exit $status); see $log and $build/crashes/" >&2
    grep -E 'ERROR|SUMMARY|==[0-9]+==|^INFO: Seed' "$log" | head -n 6 >&2 || true
    # The input itself, so a CI log alone is enough to reproduce the finding
    # (fuzz inputs are made up by libFuzzer: nothing secret in them).
    local artifact
    find "$build/crashes" -name "$target-*" -newer "$stamp" -type f | while read -r artifact; do
      echo "-- $artifact ($(wc -c <"$artifact") bytes); to reproduce:" >&2
      echo "   echo '$(base64 -w 0 "$artifact")' | base64 -d >input && $build/tests/fuzz/$target input" >&2
    done
  fi
  return "$status"
}

case "${1:-}" in
  --list)
    printf '%s\n' "${targets[@]}"
    ;;
  --smoke)
    build_targets "${targets[@]}"
    failed=0
    for target in "${targets[@]}"; do
      run "$target" "$smoke_seconds" || failed=1
    done
    exit "$failed"
    ;;
  -*|"")
    usage
    ;;
  *)
    target=$1
    seconds=${2:-60}
    [[ " ${targets[*]} " == *" $target "* ]] || usage
    [[ "$seconds" =~ ^[0-9]+$ ]] || usage
    build_targets "$target"
    run "$target" "$seconds"
    ;;
esac
