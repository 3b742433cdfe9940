#!/bin/sh
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang and runs each
# for a bounded time from its seed corpus.
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s, all)
# Environment: BUILD (default build-fuzz), CC (default clang-14 or clang),
# JOBS (parallel fuzzing jobs per target, default 1).  Crashes are left in
# $BUILD/fuzz-artifacts/; the exit status is non-zero if any target failed.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-60}
[ $# -gt 0 ] && shift
BUILD=${BUILD:-$ROOT/build-fuzz}
if [ -z "${CC:-}" ]; then
  if command -v clang-14 >/dev/null 2>&1; then CC=clang-14; else CC=clang; fi
fi
cmake -B "$BUILD" -S "$ROOT" -DCMAKE_C_COMPILER="$CC" -DAF_FUZZ=ON -DAF_SANITIZE=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
TARGETS=${*:-$(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | grep -v fuzz_main | sed 's/\.c$//')}
cmake --build "$BUILD" -j"$(nproc)" --target $TARGETS >"$BUILD/fuzz-build.log" 2>&1 ||
  { tail -30 "$BUILD/fuzz-build.log"; exit 1; }
mkdir -p "$BUILD/fuzz-artifacts"
status=0
for t in $TARGETS; do
  what=${t#fuzz_}
  corpus="$BUILD/fuzz-corpus/$what"
  mkdir -p "$corpus"
  for seeds in "$ROOT/tests/data/fuzz/$what" "$ROOT/tests/data/torch/pkl" "$ROOT/tests/data/torch" \
               "$ROOT/tests/data/gguf"; do
    case "$what:$seeds" in
      pickle:*/torch/pkl|torch:*/torch/pkl|zip:*/data/torch|gguf:*/data/gguf|*:*/data/fuzz/*) ;;
      *) continue ;;
    esac
    [ -d "$seeds" ] && find "$seeds" -maxdepth 2 -type f -size -8M -exec cp {} "$corpus/" \; 2>/dev/null || true
  done
  echo "== $t: ${SECS}s from $(ls "$corpus" | wc -l) seeds"
  if ! ASAN_OPTIONS=detect_leaks=1 "$BUILD/tests/fuzz/$t" -max_total_time="$SECS" -rss_limit_mb=2048 \
       -timeout=10 -max_len=1048576 $([ "${JOBS:-1}" -gt 1 ] && echo "-jobs=$JOBS -workers=$JOBS") \
       -artifact_prefix="$BUILD/fuzz-artifacts/$t-" -print_final_stats=1 "$corpus" \
       >"$BUILD/fuzz-artifacts/$t.log" 2>&1; then
    echo "!! $t failed; see $BUILD/fuzz-artifacts/$t.log"
    tail -40 "$BUILD/fuzz-artifacts/$t.log"
    status=1
  else
    grep -E 'stat::number_of_executed_units|cov:' "$BUILD/fuzz-artifacts/$t.log" | tail -2
  fi
done
exit $status
