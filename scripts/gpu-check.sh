#!/usr/bin/env bash
# The whole GPU check in one command, for the GPU machine (../shared/GPU.md): build the CUDA tests and
# benchmarks for sm_90, run the CUDA tests, compute-sanitizer memcheck and racecheck over them, the
# CUDA benchmarks, then build everything else and run every other test suite, and print a summary
# table last. Takes a few minutes (budget: under 5).
#
#   scripts/gpu-check.sh            # build into build-gpu next to this script's repository
#   BUILD_DIR=/tmp/b scripts/gpu-check.sh
#
# Every step runs even when an earlier one failed (except that nothing runs without a build); the exit
# status is non-zero when any step failed. Logs go to $BUILD_DIR/gpu-check/; when $OUT is set, the logs,
# the benchmark JSON and the table are copied there too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-gpu}"
LOG_DIR="$BUILD_DIR/gpu-check"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 8)}"
mkdir -p "$LOG_DIR"
export PATH="/usr/local/cuda/bin:$PATH"

STEP_NAMES=()
STEP_STATUS=()
STEP_SECONDS=()
FAILED=0

# run_step NAME TIMEOUT_S COMMAND...: runs COMMAND with its output in $LOG_DIR/NAME.log.
run_step() {
  local name="$1" limit="$2"
  shift 2
  local log="$LOG_DIR/$name.log" start end rc=0
  start=$(date +%s)
  echo "==> $name: $*" | tee "$log"
  if timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1; then rc=0; else rc=$?; fi
  end=$(date +%s)
  local status="ok"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="TIMEOUT(${limit}s)"; elif [ "$rc" -ne 0 ]; then status="FAIL(rc=$rc)"; fi
  [ "$status" = "ok" ] || FAILED=1
  STEP_NAMES+=("$name")
  STEP_STATUS+=("$status")
  STEP_SECONDS+=("$((end - start))")
  tail -n 4 "$log" | sed 's/^/    /'
  return 0
}

# A GPU test run must not skip: a SKIPPED line means the device was not seen.
no_skips() {
  local log="$1"
  if grep -q "SKIPPED" "$log"; then
    echo "GPU tests were SKIPPED (no device seen)" >>"$log"
    return 1
  fi
}

GEN=()
if command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi

CARD="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1 || true)"
[ -n "$CARD" ] || CARD="(nvidia-smi gave nothing)"
echo "GPU: $CARD"

run_step configure 120 cmake -S "$ROOT" -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DMETATAPE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
if [ "${STEP_STATUS[${#STEP_STATUS[@]}-1]}" != "ok" ]; then
  # A layer being written elsewhere may break the configure step: still check the GPU code, from a
  # tree holding only the layers it needs (the failed configure stays in the table).
  CORE_SRC="$BUILD_DIR-core-src"
  mkdir -p "$CORE_SRC"
  for part in CMakeLists.txt kernels autograd tests bench; do ln -sfn "$ROOT/$part" "$CORE_SRC/$part"; done
  BUILD_DIR="$BUILD_DIR-core"
  run_step configure_core 120 cmake -S "$CORE_SRC" -B "$BUILD_DIR" "${GEN[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DMETATAPE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
fi
run_step build_test_cuda 240 cmake --build "$BUILD_DIR" -j "$JOBS" --target test_cuda

TEST_CUDA="$BUILD_DIR/tests/test_cuda"
BENCH="$BUILD_DIR/bench/bench_cuda_kernels"
SANITIZER="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"

if [ -x "$TEST_CUDA" ]; then
  run_step test_cuda 120 "$TEST_CUDA" --duration=true
  no_skips "$LOG_DIR/test_cuda.log" || { FAILED=1; STEP_STATUS[${#STEP_STATUS[@]}-1]="FAIL(skipped)"; }
  # memcheck over the whole suite; racecheck (shared memory hazards) over the cases whose kernels use
  # shared memory: block reductions, softmax / cross-entropy, transposes.
  run_step memcheck 180 "$SANITIZER" --tool memcheck --error-exitcode 86 --leak-check no "$TEST_CUDA"
  run_step racecheck 120 env METATAPE_PARITY_OPS=transpose,softmax,cross_entropy,sum,mean \
    "$SANITIZER" --tool racecheck --error-exitcode 86 "$TEST_CUDA" \
    -tc="cuda parity*,cuda determinism*,cuda long reductions*"
  # The fused meta-gradient kernel (one block per task, every phase a block barrier apart): racecheck
  # and synccheck over its small table cases and its bad-label run.
  run_step racecheck_fused 120 env METATAPE_FMG_CASES="depth 2,W2" \
    "$SANITIZER" --tool racecheck --error-exitcode 86 "$TEST_CUDA" \
    -tc="GPU: fused meta-gradient kernel equals*,GPU: fused meta-gradient kernel reports*"
  run_step synccheck_fused 120 env METATAPE_FMG_CASES="depth 2,W2" \
    "$SANITIZER" --tool synccheck --error-exitcode 86 "$TEST_CUDA" \
    -tc="GPU: fused meta-gradient kernel equals*,GPU: fused meta-gradient kernel reports*"
else
  FAILED=1
  STEP_NAMES+=("test_cuda"); STEP_STATUS+=("NOT BUILT"); STEP_SECONDS+=("0")
fi

# The NCCL row gather of data-parallel training (dist/), with a one-rank communicator (this machine has
# one GPU and no MPI): ncclAllGather on the stream, captured into a CUDA graph and replayed.
run_step build_nccl 180 cmake --build "$BUILD_DIR" -j "$JOBS" --target test_dist_nccl
if [ -x "$BUILD_DIR/tests/test_dist_nccl" ]; then
  run_step nccl_one_rank 60 "$BUILD_DIR/tests/test_dist_nccl"
  no_skips "$LOG_DIR/nccl_one_rank.log" || { FAILED=1; STEP_STATUS[${#STEP_STATUS[@]}-1]="FAIL(skipped)"; }
else
  STEP_NAMES+=("nccl_one_rank"); STEP_STATUS+=("NOT BUILT (no NCCL found?)"); STEP_SECONDS+=("0")
fi

# The benchmark programs link every layer built (bench/CMakeLists.txt), so this builds most of the rest.
run_step build_bench_cuda 240 cmake --build "$BUILD_DIR" -j "$JOBS" --target bench_cuda_kernels
BENCH_JSON="$LOG_DIR/bench_cuda_kernels.json"
if [ -x "$BENCH" ]; then
  # Google Benchmark >= 1.8 wants a unit suffix on --benchmark_min_time; older versions a bare number.
  MIN_TIME="0.05s"
  PROBE="$("$BENCH" --benchmark_min_time=0.05s --benchmark_list_tests=true 2>&1 || true)"
  if grep -q "expected to be a double" <<<"$PROBE"; then MIN_TIME="0.05"; fi
  run_step bench_cuda 150 "$BENCH" --benchmark_min_time="$MIN_TIME" --benchmark_out="$BENCH_JSON" \
    --benchmark_out_format=json
else
  FAILED=1
  STEP_NAMES+=("bench_cuda"); STEP_STATUS+=("NOT BUILT"); STEP_SECONDS+=("0")
fi

# Issue 7's fast paths on the GPU: fused adaptation vs the CPU reference, batched vs per-task, graph
# replay vs eager; then the side-by-side comparison with PyTorch and JAX on this card.
run_step build_speed 240 cmake --build "$BUILD_DIR" -j "$JOBS" --target test_speed bench_meta_step_gpu
if [ -x "$BUILD_DIR/tests/test_speed" ]; then
  run_step test_speed 120 "$BUILD_DIR/tests/test_speed" --duration=true
  no_skips "$LOG_DIR/test_speed.log" || { FAILED=1; STEP_STATUS[${#STEP_STATUS[@]}-1]="FAIL(skipped)"; }
  run_step memcheck_speed 150 "$SANITIZER" --tool memcheck --error-exitcode 86 --leak-check no \
    "$BUILD_DIR/tests/test_speed" -tc="*GPU*,*gpu*,*CUDA*,*cuda*,*fused*,*graph*"
fi
if [ -x "$BUILD_DIR/bench/bench_meta_step_gpu" ]; then
  run_step compare 200 env QUICK=1 OUT_DIR="$LOG_DIR/compare" bash "$ROOT/bench/compare/run_compare.sh" "$BUILD_DIR"
fi

# W3 (Conv-4 on cuDNN) meta-steps on this card, and PyTorch's on the same card when it is installed.
run_step build_w3 240 cmake --build "$BUILD_DIR" -j "$JOBS" --target bench_conv4_meta_step
if [ -x "$BUILD_DIR/bench/bench_conv4_meta_step" ]; then
  run_step w3_cuda 150 "$BUILD_DIR/bench/bench_conv4_meta_step" --benchmark_filter='_cuda' \
    --benchmark_min_time="${MIN_TIME:-0.05}"
  if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    run_step w3_torch_cuda 150 python3 "$ROOT/bench/compare/w3_torch.py" --kind maml --meta-batch 32 --device cuda
  fi
fi

# The rest of the project, then every other suite registered with CTest (the CUDA one ran above).
# Last, so that the GPU steps come first when time is short.
run_step build_all 180 cmake --build "$BUILD_DIR" -j "$JOBS"
if [ -f "$BUILD_DIR/CTestTestfile.cmake" ]; then
  run_step other_tests 180 ctest --test-dir "$BUILD_DIR" -E '^(cuda|speed)$' --output-on-failure
fi

# ---- the summary table (printed last) ------------------------------------------------------------
TABLE="$LOG_DIR/summary.md"
{
  echo
  echo "## gpu-check $(date -u +%Y-%m-%dT%H:%MZ) on $CARD"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
  for i in "${!STEP_NAMES[@]}"; do
    echo "| ${STEP_NAMES[$i]} | ${STEP_STATUS[$i]} | ${STEP_SECONDS[$i]} |"
  done
  if [ -f "$LOG_DIR/test_cuda.log" ]; then
    echo
    echo "test_cuda: $(grep -E '^\[doctest\] (test cases|assertions)' "$LOG_DIR/test_cuda.log" | tr '\n' ' ')"
  fi
  for tool in memcheck racecheck racecheck_fused synccheck_fused; do
    [ -f "$LOG_DIR/$tool.log" ] && echo "$tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOG_DIR/$tool.log" | tail -n 1)"
  done
  if [ -s "$BENCH_JSON" ] && command -v python3 >/dev/null 2>&1; then
    echo
    python3 - "$BENCH_JSON" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print("| benchmark | real time | unit | counters |")
print("|---|---|---|---|")
skip = {"name", "run_name", "run_type", "repetitions", "repetition_index", "threads", "iterations",
        "real_time", "cpu_time", "time_unit", "family_index", "per_family_instance_index",
        "aggregate_name", "aggregate_unit"}
for b in data.get("benchmarks", []):
    counters = ", ".join(
        f"{k}={v:.3g}us" if k == "us_per_launch" else f"{k}={v:.4g}"
        for k, v in b.items() if k not in skip and isinstance(v, (int, float)))
    print(f"| {b['name']} | {b['real_time']:.4g} | {b['time_unit']} | {counters} |")
PY
  elif [ -f "$LOG_DIR/bench_cuda.log" ]; then
    echo
    grep -E '^(launch|gemm|cross|linear|W1|W2)' "$LOG_DIR/bench_cuda.log" || true
  fi
  if [ -f "$LOG_DIR/w3_cuda.log" ]; then
    echo
    echo "### W3 (Conv-4) meta-step on this card"
    grep -E '^BM_W3' "$LOG_DIR/w3_cuda.log" || true
    [ -f "$LOG_DIR/w3_torch_cuda.log" ] && grep -E '^w3 torch' "$LOG_DIR/w3_torch_cuda.log" || true
  fi
  if [ -f "$LOG_DIR/compare.log" ]; then
    echo
    echo "### W1/W2 side by side (bench/compare)"
    grep -E '^\|' "$LOG_DIR/compare.log" || true
  fi
  echo
  if [ "$FAILED" -eq 0 ]; then echo "RESULT: all steps passed"; else echo "RESULT: FAILED (see $LOG_DIR/*.log)"; fi
} >"$TABLE" 2>&1 || true

if [ -n "${OUT:-}" ]; then
  # The device tool returns at most 8 files: the table, the benchmark JSON and one archive of logs.
  cp "$TABLE" "$OUT/summary.md" 2>/dev/null || true
  [ -s "$BENCH_JSON" ] && cp "$BENCH_JSON" "$OUT/" 2>/dev/null || true
  tar -czf "$OUT/gpu-check-logs.tgz" -C "$LOG_DIR" . 2>/dev/null || true
fi
cat "$TABLE"
exit "$FAILED"
