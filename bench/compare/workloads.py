"""What w1w2_torch.py and w1w2_jax.py share: the workloads W1 and W2 of ../shared/BENCHMARKS.md, their
task sampler (numpy, the same draws for both frameworks) and the timing loop."""
import math
import time

import numpy as np

W1 = dict(sizes=(50, 128, 128, 3), steps=5, lr=0.01, support=15, query=45, kind="ce")
W2 = dict(sizes=(1, 40, 40, 1), steps=1, lr=0.01, support=10, query=10, kind="mse")


def sample_task(w, rng, label_dtype=np.int64):
    """numpy arrays (sx, sy, qx, qy): W1 class-mean tasks (3 classes, rows mean + 1.5 N(0, 1), grouped
    by class), W2 sinusoids (A ~ U[0.1, 5), phase ~ U[0, pi), x ~ U[-5, 5))."""
    if w["kind"] == "ce":
        means = rng.normal(size=(3, 50))

        def draw(per_class):
            x = np.concatenate([means[c] + 1.5 * rng.normal(size=(per_class, 50)) for c in range(3)])
            y = np.repeat(np.arange(3), per_class)
            return x.astype(np.float32), y.astype(label_dtype)

        sx, sy = draw(w["support"] // 3)
        qx, qy = draw(w["query"] // 3)
        return sx, sy, qx, qy
    amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0, math.pi)

    def draw(n):
        x = rng.uniform(-5, 5, size=(n, 1)).astype(np.float32)
        return x, (amp * np.sin(x - phase)).astype(np.float32)

    sx, sy = draw(w["support"])
    qx, qy = draw(w["query"])
    return sx, sy, qx, qy


def measure(fn, warmup, min_iters, budget_s, sync=lambda: None):
    """Runs fn `warmup` times, then at least min_iters times and until budget_s seconds (at most 1000
    calls), calling sync() after each. Returns (median wall ms, calls, median CPU ms)."""
    for _ in range(warmup):
        fn()
    sync()
    times, cpu = [], []
    start = time.perf_counter()
    while len(times) < min_iters or (time.perf_counter() - start < budget_s and len(times) < 1000):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return float(np.median(times)), len(times), float(np.median(cpu))
