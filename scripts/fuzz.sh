#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build dir build-fuzz, ASan + UBSan + fuzzer coverage) and
# runs each for FUZZ_SECONDS (default 20) from its seed corpus fuzz/corpus/<name>/. New inputs go to
# a scratch corpus (the seeds stay as committed). A crash, leak, sanitizer report or timeout fails the
# script and leaves the reproducer in build-fuzz/findings/<name>/ -- copy it to
# fuzz/regressions/<name>/ (rerun first on every call) and add a unit test for the fix.
#   scripts/fuzz.sh [target ...]      (default: fuzz_request fuzz_checkpoint fuzz_csv fuzz_png)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_BUILD_JOBS:-2}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_request fuzz_checkpoint fuzz_csv fuzz_png)

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DMETATAPE_FUZZ=ON -DMETATAPE_CUDA=OFF -DMETATAPE_NATIVE=OFF \
  -DMETATAPE_BUILD_TESTS=OFF -DMETATAPE_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target "${targets[@]}" -j"$jobs"

status=0
for target in "${targets[@]}"; do
  name="${target#fuzz_}"
  # Past findings first: each file in fuzz/regressions/<name>/ must now run clean.
  if compgen -G "$root/fuzz/regressions/$name/*" >/dev/null; then
    echo "== $target: regressions fuzz/regressions/$name/"
    if ! "$build/fuzz/$target" -rss_limit_mb=2048 -timeout=10 "$root/fuzz/regressions/$name/"* \
          >"$build/$target.regressions.log" 2>&1; then
      echo "!! $target: a past finding still fails:"
      grep -E "ERROR|SUMMARY|Running:" "$build/$target.regressions.log" | tail -5
      status=1
    fi
  fi
  scratch="$build/corpus/$name"
  findings="$build/findings/$name"
  mkdir -p "$scratch" "$findings"
  echo "== $target: ${seconds}s from fuzz/corpus/$name"
  if ! "$build/fuzz/$target" "$scratch" "$root/fuzz/corpus/$name" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$findings/" -print_final_stats=1 2>"$build/$target.log"; then
    echo "!! $target found a problem; reproducer(s) in $findings/:"
    ls "$findings"
    tail -40 "$build/$target.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$build/$target.log" | sed 's/^/   /'
  fi
done
exit $status
