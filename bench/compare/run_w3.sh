#!/usr/bin/env bash
# W3 (Conv-4 MAML / FOMAML / ProtoNet meta-step, 5-way 1-shot, 15 queries, 28x28) on the CPU: metatape
# (bench/conv4_meta_step.cpp) and PyTorch eager (w3_torch.py) in one run, each pinned to one core and
# one thread, interleaved per workload so both see the same machine load. Process CPU time, medians.
#
# usage: bench/compare/run_w3.sh [BUILD_DIR]    MB=4 (meta-batch; W3 is 32) STEPS=10 (timed steps)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
bench=$build/bench/bench_conv4_meta_step
mb=${MB:-4}
steps=${STEPS:-10}
[[ -x $bench ]] || { echo "run_w3: $bench not found; cmake --build $build --target bench_conv4_meta_step" >&2; exit 1; }
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
echo "W3 on $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), one core, meta-batch $mb"
printf '| kind | metatape ms | PyTorch ms | PyTorch / metatape |\n|---|---|---|---|\n'
for kind in maml fomaml protonet; do
  ours=$("${pin[@]}" "$bench" --benchmark_filter="BM_W3_meta_step/$kind/$mb\$" --benchmark_min_time=${MIN_TIME:-5} \
         --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_format=csv 2>/dev/null \
         | grep '_median' | cut -d, -f4)
  if python3 -c 'import torch' 2>/dev/null; then
    theirs=$("${pin[@]}" python3 "$here/w3_torch.py" --kind "$kind" --meta-batch "$mb" --steps "$steps" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
    ratio=$(python3 -c "print(f'{$theirs / $ours:.2f}')")
  else
    theirs="torch missing"; ratio="–"
  fi
  printf '| %s | %.1f | %s | %s |\n' "$kind" "$ours" "$theirs" "$ratio"
done
