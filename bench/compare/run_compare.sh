#!/usr/bin/env bash
# Runs W1 and W2 (meta_step MAML / FOMAML at the stated meta-batches, adapt host to host, cold
# start) in metatape (bench/meta_step_gpu.cpp), PyTorch (eager, torch.func vmap) and JAX (jit +
# vmap) on the same machine in one run, and prints one markdown table with ratios.
#
# usage: bench/compare/run_compare.sh [BUILD_DIR]      (default: <repo>/build)
#   QUICK=1      fewer iterations (the GPU check script)
#   DEVICE=cpu   force the CPU even where a GPU is visible
# The device is picked automatically: CUDA when the metatape bench registers CUDA benchmarks (a
# device is visible and the build has the CUDA backend), else the CPU. On the CPU every program is
# pinned to one core (taskset -c 0) and PyTorch runs one thread: the one-thread comparison of
# ../shared/BENCHMARKS.md. A framework that is not installed is reported as missing, not faked.
# Raw results stay in $OUT_DIR (default: a fresh temporary folder, printed at the end).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
bench=$build/bench/bench_meta_step_gpu
if [[ ! -x $bench ]]; then
  echo "run_compare: $bench not found; build it with: cmake --build $build --target bench_meta_step_gpu" >&2
  exit 1
fi
out=${OUT_DIR:-$(mktemp -d /tmp/metatape-compare.XXXXXX)}
mkdir -p "$out"
quick=()
[[ ${QUICK:-0} == 1 ]] && quick=(--quick)

device=${DEVICE:-}
if [[ -z $device ]]; then
  if "$bench" --benchmark_list_tests 2>/dev/null | grep -q '/cuda/'; then device=cuda; else device=cpu; fi
fi
pin=()
if [[ $device == cpu ]] && command -v taskset >/dev/null; then pin=(taskset -c 0); fi

if [[ $device == cuda ]]; then
  machine=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo "CUDA device")
  filter='/cuda/'
else
  machine="$(nproc)-core $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), pinned to one core"
  filter='/cpu/(loop|batched|fused)/'
fi
echo "run_compare: device $device ($machine); raw results in $out" >&2

min_time=1.0
[[ $device == cuda ]] && min_time=0.5
[[ ${QUICK:-0} == 1 ]] && min_time=0.2
skip_cpu=()
[[ $device == cuda ]] && skip_cpu=(env METATAPE_BENCH_SKIP_CPU=1)
"${skip_cpu[@]}" "${pin[@]}" "$bench" --benchmark_filter="$filter" --benchmark_min_time="$min_time" \
  --benchmark_format=json \
  --benchmark_out="$out/metatape.json" --benchmark_out_format=json >/dev/null 2>"$out/metatape.err" ||
  { cat "$out/metatape.err" >&2; exit 1; }

: >"$out/peers.jsonl"
if python3 -c 'import torch' 2>/dev/null; then
  "${pin[@]}" python3 "$here/w1w2_torch.py" --device "$device" "${quick[@]}" >>"$out/peers.jsonl" 2>"$out/torch.err" ||
    echo "run_compare: the PyTorch script failed (see $out/torch.err)" >&2
else
  echo "run_compare: PyTorch is not installed; its columns stay empty" >&2
fi
if python3 -c 'import jax' 2>/dev/null; then
  jax_env=()
  [[ $device == cpu ]] && jax_env=(env JAX_PLATFORMS=cpu)
  "${jax_env[@]}" "${pin[@]}" python3 "$here/w1w2_jax.py" "${quick[@]}" >>"$out/peers.jsonl" 2>"$out/jax.err" ||
    echo "run_compare: the JAX script failed (see $out/jax.err)" >&2
else
  echo "run_compare: JAX is not installed; its column stays empty" >&2
fi

# Cold start: wall time of a fresh process from exec to its first adapted W1 prediction.
python3 - "$out" "$device" "$bench" "$here" "${pin[@]}" <<'EOF'
import json, subprocess, sys, time
out, device, bench, here, pin = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
runs = {"metatape": [bench, "--cold-start"],
        "pytorch": ["python3", f"{here}/w1w2_torch.py", "--cold-start", "--device", device],
        "jax": ["python3", f"{here}/w1w2_jax.py", "--cold-start"]}
env = None
if device == "cpu":
    import os
    env = dict(os.environ, JAX_PLATFORMS="cpu")
with open(f"{out}/cold.jsonl", "w") as f:
    for name, cmd in runs.items():
        t0 = time.perf_counter()
        r = subprocess.run(pin + cmd, capture_output=True, text=True, env=env)
        ms = (time.perf_counter() - t0) * 1e3
        if r.returncode == 0:
            f.write(json.dumps({"framework": name, "cold_ms": ms}) + "\n")
        else:
            sys.stderr.write(f"run_compare: cold start of {name} failed: {r.stderr[-300:]}\n")
EOF

python3 - "$out" "$device" "$machine" <<'EOF'
import datetime, json, re, sys
out, device, machine = sys.argv[1:4]
meta = {}  # (workload, variant) -> median ms
bench = json.load(open(f"{out}/metatape.json"))
for b in bench["benchmarks"]:
    if b.get("error_occurred"):
        continue
    m = re.match(r"(W\d)/([a-z0-9_]+)/(cpu|cuda)/([a-z0-9]+)", b["name"])
    if not m or "median_us" not in b:
        continue
    w, what, dev, variant = m.groups()
    key = "median_cpu_us" if device == "cpu" else "median_us"
    meta[(f"{w}/{what}", variant)] = (b[key] / 1e3, b.get("peak_MiB"))
peers = {}
for line in open(f"{out}/peers.jsonl"):
    r = json.loads(line)
    key = "median_cpu_ms" if device == "cpu" else "median_ms"
    peers[(r["workload"], r["variant"])] = (r[key], r.get("compile_ms"))
cold = {json.loads(l)["framework"]: json.loads(l)["cold_ms"] for l in open(f"{out}/cold.jsonl")}
gpu_targets = {"W1/maml_mb32": 0.20, "W1/fomaml_mb32": 0.12, "W1/adapt": 0.05, "W2/maml_mb25": 0.10}
cpu_targets = {"W1/maml_mb8": 10.0, "W1/adapt": 0.4}
targets = gpu_targets if device == "cuda" else cpu_targets

def fmt(ms):
    if ms is None:
        return "–"
    return f"{ms:.3g}" if ms >= 0.1 else f"{ms:.3f}"

rows = ["W1/maml_mb8", "W1/maml_mb32", "W1/fomaml_mb32", "W2/maml_mb25", "W1/adapt", "W2/adapt"]
fast_variants = ["fused", "graph"]
what = ("median process CPU milliseconds per step (every program pinned to one core; CPU time is "
        "robust to the other jobs of a shared machine)" if device == "cpu" else
        "median wall milliseconds per step (device synchronised)")
print(f"Device: {device} ({machine}); {datetime.date.today().isoformat()}. {what}; "
      "ratio = fastest peer / fastest metatape (> 1: metatape is faster). Cold start: process wall "
      "time.")
print()
print("| workload | metatape loop | metatape batched | metatape fused/graph | PyTorch eager | "
      "torch.func vmap | JAX jit+vmap (compile s) | fastest peer ÷ metatape | target |")
print("|---|---|---|---|---|---|---|---|---|")
for w in rows:
    loop = meta.get((w, "loop"), (None, None))[0]
    batched = meta.get((w, "batched"), (None, None))[0]
    fast = [(meta[(w, v)][0], v) for v in fast_variants if (w, v) in meta]
    fast_best = min(fast) if fast else None
    mt = [x for x in [loop, batched] + [f[0] for f in fast] if x is not None]
    best = min(mt) if mt else None
    eager = peers.get((w, "eager"), (None, None))[0]
    vmap = peers.get((w, "torch.func vmap"), (None, None))[0]
    jax, compile_ms = peers.get((w, "jit+vmap"), (None, None))
    pe = [x for x in [eager, vmap, jax] if x is not None]
    ratio = f"{min(pe) / best:.2f}×" if pe and best else "–"
    jax_cell = "–" if jax is None else f"{fmt(jax)} ({compile_ms / 1e3:.1f})"
    fast_cell = "–" if not fast_best else f"{fmt(fast_best[0])} ({fast_best[1]})"
    peak = [meta[k][1] for k in meta if k[0] == w and meta[k][1] is not None]
    if peak:
        fast_cell += f", peak {max(peak):.1f} MiB"
    t = targets.get(w)
    if t is None or best is None:
        tcell = "–"
    elif best <= t:
        tcell = f"≤ {t} ms: met"
    else:
        tcell = f"≤ {t} ms: missed by {best / t:.2f}×"
    print(f"| {w} | {fmt(loop)} | {fmt(batched)} | {fast_cell} | {fmt(eager)} | {fmt(vmap)} | "
          f"{jax_cell} | {ratio} | {tcell} |")
c = {k: cold.get(k) for k in ("metatape", "pytorch", "jax")}
pc = [v for k, v in c.items() if k != "metatape" and v is not None]
ratio = f"{min(pc) / c['metatape']:.2f}×" if pc and c["metatape"] else "–"
ct = "≤ 50 ms: " + ("met" if c["metatape"] and c["metatape"] <= 50 else
                   f"missed by {c['metatape'] / 50:.2f}×" if c["metatape"] else "–")
print(f"| W1 cold start (process) | {fmt(c['metatape'])} | | | {fmt(c['pytorch'])} | | "
      f"{fmt(c['jax'])} | {ratio} | {ct if device == 'cpu' else '–'} |")
EOF
echo "run_compare: raw results in $out" >&2
