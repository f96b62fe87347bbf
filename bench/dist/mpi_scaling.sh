#!/usr/bin/env bash
# Data-parallel scaling of `metatape train` (dist/communicator.h) at 1, 2 and 4 processes on this
# machine: W1's network (MLP 50 -> 128 -> 128 -> 3, MAML second order, 5 inner steps) on the built-in
# simulator's price-direction tasks, meta-batch 8 and 32, validation off, diagnostics at the first and last step only. Prints the
# training throughput (tasks/s, from train's own summary line: meta-steps x meta_batch / training
# seconds) and the efficiency against one process: tasks/s(N) / (N x tasks/s(1)).
# Usage: bench/dist/mpi_scaling.sh [build dir] [meta-steps]
set -euo pipefail
build=${1:-build}
steps=${2:-100}
metatape=$(realpath "$build/apps/metatape")
work=$(mktemp -d "${TMPDIR:-/tmp}/metatape-scaling.XXXXXX")
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for batch in 8 32; do
  args=(train --learners maml --families price_direction --no-progress --set training.meta_steps="$steps"
        --set training.meta_batch="$batch" --set "training.hidden=[128,128]" --set training.inner_steps=5
        --set training.inner_lr=0.01 --set training.validate_every=0 --set training.diagnose_every=1000000)
  base=""
  for n in 1 2 4; do
    out="$work/b$batch-n$n"
    if [[ $n -eq 1 ]]; then
      line=$("$metatape" "${args[@]}" --out "$out" 2>/dev/null | grep "meta-steps")
    else
      line=$(mpirun --oversubscribe -np "$n" "$metatape" "${args[@]}" --out "$out" 2>/dev/null | grep "meta-steps")
    fi
    rate=$(sed -E 's/.* ([0-9.e+]+) tasks\/s.*/\1/' <<<"$line")
    [[ -z $base ]] && base=$rate
    eff=$(python3 -c "print(f'{$rate / ($n * $base):.2f}')")
    printf 'meta-batch %2d  processes %d  %8.1f tasks/s  efficiency %s\n' "$batch" "$n" "$rate" "$eff"
  done
done
