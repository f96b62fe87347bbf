#!/usr/bin/env bash
# Data parallelism under mpirun (dist/communicator.h), on loopback, oversubscribed:
#  0. The collectives (tests/dist/mpi_collectives.cpp) at 1, 2 and 3 processes.
#  1. `train` for 20 meta-steps with 1, 2 and 4 processes: the checkpoints of MAML, Meta-SGD, Reptile,
#     ProtoNet and ANIL are byte-identical (validation on, so the selection history is included).
#  2. `run` (training, validation selection, evaluation, report) with 1, 2 and 4 processes: report.json is
#     identical except for wall-clock timings and the output paths.
#  3. Resume with a different process count: 10 steps on 2 processes, then --resume to 20 on 1, equals
#     20 steps on 1 process without interruption.
#  4. A killed rank: rank 1 gets SIGKILL mid-training; the job ends within 60 s with a message naming
#     rank 1 and a non-zero exit; the last checkpoint loads, and resuming it on 1 process to the same
#     final step equals the uninterrupted run.
#  5. SIGUSR1 to mpirun (which forwards it; SIGINT it does not) stops every rank at the same step with
#     a checkpoint; resuming it on 1 process equals the uninterrupted run.
#  6. A command that does not split its work is refused under mpirun, naming the fix.
# Usage: mpi_test.sh <metatape binary> <mpirun> <test_dist_mpi binary>
set -euo pipefail
metatape=$(realpath "$1")
mpirun=$2
collectives=$(realpath "$3")
work=$(mktemp -d "${TMPDIR:-/tmp}/metatape-mpi.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

# mpirun as root (CI containers), loopback only, no ptrace-based single copy (not allowed in containers).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { local n=$1; shift; "$mpirun" --oversubscribe -np "$n" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

small=(--set data.simulator.bars=800 --set training.validate_every=10 --set training.validation_episodes=8
       --families price_direction --no-progress)
learners=maml,meta-sgd,reptile,protonet,anil

echo "== 0. the collectives at 1, 2 and 3 processes"
for n in 1 2 3; do
  mpi "$n" "$collectives" > "collectives$n.log" 2>&1 || { cat "collectives$n.log"; fail "collectives on $n processes"; }
  grep -h "all collectives checked" "collectives$n.log" | sort | sed 's/^/  /'
done

echo "== 1. checkpoints after 20 meta-steps, 1 vs 2 vs 4 processes"
"$metatape" train "${small[@]}" --learners $learners --set training.meta_steps=20 --out one > one.log 2>&1 ||
  { cat one.log; fail "train on 1 process"; }
for n in 2 4; do
  mpi "$n" "$metatape" train "${small[@]}" --learners $learners --set training.meta_steps=20 --out "np$n" \
    > "np$n.log" 2>&1 || { cat "np$n.log"; fail "train on $n processes"; }
  for l in ${learners//,/ }; do
    cmp "one/run0/price_direction/$l.ckpt" "np$n/run0/price_direction/$l.ckpt" ||
      fail "$l: the checkpoint of $n processes differs from 1 process"
    echo "  $l: $n processes byte-identical to 1"
  done
done

echo "== 2. run: the reports of 2 and 4 processes equal 1 process's (timings and paths aside)"
run=("${small[@]}" --learners maml,protonet --set training.meta_steps=20 --episodes 12 --quiet)
"$metatape" run "${run[@]}" --out r1 > r1.log 2>&1 || { cat r1.log; fail "run on 1 process"; }
for n in 2 4; do
  mpi "$n" "$metatape" run "${run[@]}" --out "r$n" > "r$n.log" 2>&1 || { cat "r$n.log"; fail "run on $n processes"; }
  python3 - r1/report/report.json "r$n/report/report.json" "$n" <<'EOF' || fail "the reports of 1 and $n processes differ"
import json, sys
timing = {"adapt_ms", "adaptation_ms", "seconds", "tasks_per_second"}
def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in timing and k != "log"}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
if a != b:
    sys.exit("report.json differs")
print("  %s processes: report.json identical to 1 process (%d cells)" % (sys.argv[3], len(a["cells"])))
EOF
done

echo "== 3. resume 2 -> 1 processes equals uninterrupted"
mpi 2 "$metatape" train "${small[@]}" --learners $learners --set training.meta_steps=10 --out resumed \
  > resume2.log 2>&1 || { cat resume2.log; fail "train 10 steps on 2 processes"; }
"$metatape" train "${small[@]}" --learners $learners --set training.meta_steps=20 --out resumed --resume \
  > resume1.log 2>&1 || { cat resume1.log; fail "resume on 1 process"; }
for l in ${learners//,/ }; do
  cmp "one/run0/price_direction/$l.ckpt" "resumed/run0/price_direction/$l.ckpt" ||
    fail "$l: resumed 2 -> 1 differs from uninterrupted"
  echo "  $l: 10 steps on 2 processes + 10 on 1 == 20 on 1"
done

echo "== 4. a killed rank"
long=("${small[@]}" --learners maml --set training.meta_steps=4000 --set training.validate_every=0)
"$mpirun" --oversubscribe -np 2 "$metatape" train "${long[@]}" --checkpoint-every 10 --out killed > killed.log 2>&1 &
job=$!
ckpt=killed/run0/price_direction/maml.ckpt
for _ in $(seq 600); do [[ -s $ckpt ]] && break; sleep 0.05; done
[[ -s $ckpt ]] || { kill "$job" 2>/dev/null; cat killed.log; fail "no checkpoint appeared"; }
victim=""
for pid in $(pgrep -f "$metatape train" || true); do
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$pid; fi
done
[[ -n $victim ]] || { kill "$job"; fail "rank 1 not found (did the run finish already?)"; }
kill -9 "$victim"
start=$(date +%s)
for _ in $(seq 600); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$job" 2>/dev/null; then kill -9 "$job"; fail "the job still runs 60 s after rank 1 was killed"; fi
set +e; wait "$job"; code=$?; set -e
echo "  job ended $(( $(date +%s) - start )) s after the kill, exit $code"
[[ $code -ne 0 ]] || fail "the job exited 0 although rank 1 was killed"
grep -q "rank 1" killed.log || { cat killed.log; fail "the message does not name rank 1"; }
grep "rank 1" killed.log | head -2 | sed 's/^/  /'
# The last checkpoint loads: resume it on 1 process to step 4000 and compare with the uninterrupted run.
"$metatape" train "${long[@]}" --out killed --resume > killed-resume.log 2>&1 ||
  { cat killed-resume.log; fail "the checkpoint left by the killed job does not resume"; }
"$metatape" train "${long[@]}" --out straight > straight.log 2>&1 || { cat straight.log; fail "uninterrupted run"; }
cmp "$ckpt" straight/run0/price_direction/maml.ckpt || fail "killed + resumed differs from uninterrupted"
echo "  killed at a checkpoint, resumed on 1 process: byte-identical to the uninterrupted run"

echo "== 5. SIGUSR1 to mpirun (forwarded to the ranks): stop at the same step with a checkpoint, resume"
"$mpirun" --oversubscribe -np 2 "$metatape" train "${long[@]}" --checkpoint-every 100000 --out stopped \
  > stopped.log 2>&1 &
job=$!
for _ in $(seq 600); do [[ -s stopped/run0/price_direction/maml.jsonl ]] && break; sleep 0.05; done
kill -USR1 "$job"
set +e; wait "$job"; code=$?; set -e
grep -q "interrupted at price_direction/maml step" stopped.log || { cat stopped.log; fail "no interruption message"; }
[[ -s stopped/run0/price_direction/maml.ckpt ]] || fail "no checkpoint after SIGUSR1"
echo "  $(grep -m1 'interrupted at' stopped.log | cut -c1-90)... (mpirun exit $code)"
"$metatape" train "${long[@]}" --out stopped --resume > stopped-resume.log 2>&1 ||
  { cat stopped-resume.log; fail "resume after SIGUSR1"; }
cmp stopped/run0/price_direction/maml.ckpt straight/run0/price_direction/maml.ckpt ||
  fail "stopped + resumed differs from uninterrupted"
echo "  stopped on 2 processes, resumed on 1: byte-identical to the uninterrupted run"

echo "== 6. a command that does not split its work is refused"
set +e; mpi 2 "$metatape" sinusoid > refused.log 2>&1; code=$?; set -e
[[ $code -ne 0 ]] && grep -q "does not run data-parallel" refused.log || { cat refused.log; fail "sinusoid ran under mpirun"; }
echo "  refused: $(grep -m1 'does not run' refused.log)"
echo "mpi_test: all passed"
