#!/bin/bash
# Meta-step time and tasks/s of `metatape train` on configs/real.yaml (the shared market data) for
# each task-sampler setting (docs/perf-log.md, 2026-12-06). Usage, from anywhere:
#   [SETTINGS="0 0,1 0,1 4,1 16,2 0,2 4,2 16"] [LEARNERS=maml] scripts/sampler-perf.sh META_STEPS
# SETTINGS: comma-separated "workers prefetch" pairs. Needs build/apps/metatape and ../shared/data.
# Per setting: wall time of the command, and over the JSONL metric lines after step 1 of every
# family, the median and mean step_seconds (which include waiting for the meta-batch) and the median
# tasks_per_second. Runs go to /tmp/sperf_w<workers>_p<prefetch>.
set -e
cd "$(dirname "$0")/.."
STEPS=${1:?usage: scripts/sampler-perf.sh META_STEPS}
IFS=, read -ra SET <<< "${SETTINGS:-0 0,1 0,1 4,2 0,2 4}"
for setting in "${SET[@]}"; do
  set -- $setting
  W=$1; P=$2
  OUT=/tmp/sperf_w${W}_p${P}
  rm -rf $OUT
  T0=$(date +%s.%N)
  build/apps/metatape train --config configs/real.yaml --data ../shared/data/market --meta-steps $STEPS \
    --learners ${LEARNERS:-maml} --no-progress --set training.validate_every=0 \
    --set sampler.workers=$W --set sampler.prefetch=$P --out $OUT > $OUT.txt 2>&1
  T1=$(date +%s.%N)
  python3 - "$OUT" "$W" "$P" "$T0" "$T1" <<'PY'
import json, sys, glob, statistics
out, w, p, t0, t1 = sys.argv[1:]
steps, tps = [], []
for f in sorted(glob.glob(out + "/run0/*/*.jsonl")):
    for line in open(f):
        j = json.loads(line)
        if "step_seconds" in j and j["step"] > 1:
            steps.append(j["step_seconds"]); tps.append(j["tasks_per_second"])
print(f"workers {w} prefetch {p}: wall {float(t1)-float(t0):.1f} s, meta-steps {len(steps)}, "
      f"median step {1000*statistics.median(steps):.2f} ms, mean step {1000*statistics.mean(steps):.2f} ms, "
      f"median tasks/s {statistics.median(tps):.0f}")
PY
done
