#!/usr/bin/env bash
# Measurements for docs/perf-log.md (embedding and serving), loopback only, stops by itself:
#   1. cold start: process start -> first adapted prediction through the C API (examples/external's
#      adapt_predict on libmetatape.so), timed from outside over 30 runs (fork+exec+load+adapt+
#      predict+exit), and from main() as the program reports it;
#   2. load: `metatape serve` + metatape_serve_load, adapt+predict pairs at 1, 8 and 64 clients;
#   3. soak: SOAK_SECONDS (default 300) at 8 clients; the LRU holds at most 64 MiB (about 9,500
#      adapted 1-40-40-1 models, under 2 s of traffic at full rate), server RSS sampled.
# A client counts an error for any non-200 reply (kinds listed); with a much smaller cap, predicts of
# models evicted before their predict arrived come back 404, as they should.
#   scripts/embedding-perf.sh [BUILD_DIR]   (default $BUILD_DIR or build; needs metatape, metatape_serve_load,
#                                            metatape_capi_example, metatape_train_tiny built)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-${BUILD_DIR:-build}}"
case "$build" in /*) ;; *) [ -d "$build" ] && build="$(cd "$build" && pwd)" || build="$root/$build" ;; esac
load_seconds="${LOAD_SECONDS:-10}"
soak_seconds="${SOAK_SECONDS:-300}"
work="$(mktemp -d "${TMPDIR:-/tmp}/metatape-perf.XXXXXX")"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$build/capi/metatape_train_tiny" "$work/maml.ckpt" 200 >/dev/null
echo "checkpoint: maml, mlp 1-40-40-1 relu f32 (sinusoid), 1 inner step, 10 support rows"

echo "== cold start (C API, shared library)"
python3 - "$build/capi/metatape_capi_example" "$work/maml.ckpt" <<'PY'
import statistics, subprocess, sys, time, re
exe, ckpt = sys.argv[1], sys.argv[2]
outside, inside = [], []
for _ in range(30):
    t0 = time.perf_counter()
    out = subprocess.run([exe, ckpt], check=True, capture_output=True, text=True).stdout
    outside.append((time.perf_counter() - t0) * 1e3)
    inside.append(float(re.search(r"after ([0-9.]+) ms", out).group(1)))
q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]
print(f"process wall (spawn..exit) ms: median {statistics.median(outside):.2f} p90 {q(outside, .9):.2f} max {max(outside):.2f}")
print(f"main()..first prediction ms:   median {statistics.median(inside):.3f} p90 {q(inside, .9):.3f}")
PY

port=$((20000 + RANDOM % 20000))
total=$((soak_seconds + 3 * load_seconds + 60))
"$build/apps/metatape" serve --checkpoint "$work/maml.ckpt" --port "$port" --cache-mb 64 --ttl-s 60 \
  --max-seconds "$total" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "== load ($load_seconds s each; server: $(head -1 "$work/serve.log"))"
for clients in 1 8 64; do
  "$build/serve/metatape_serve_load" --port "$port" --clients "$clients" --seconds "$load_seconds" \
    --server-pid "$server_pid" || echo "   (errors: see error_kinds)"
done
echo "== soak ($soak_seconds s, 8 clients)"
"$build/serve/metatape_serve_load" --port "$port" --clients 8 --seconds "$soak_seconds" \
  --server-pid "$server_pid" --sample-every 30 || echo "   (errors: see error_kinds)"
curl -sf "http://127.0.0.1:$port/metrics" | grep -E '^metatape_(adapted|requests_total)' || true
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
