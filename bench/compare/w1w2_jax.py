#!/usr/bin/env python3
"""W1 and W2 of ../shared/BENCHMARKS.md in JAX (jit + vmap), the same measurements and JSON lines as
w1w2_torch.py (framework "jax", variant "jit+vmap"), plus the compilation time of each jitted
function ("compile_ms": its first call minus the median).
The device is JAX's default backend (the GPU when jax sees one). On the CPU, run_compare.sh pins
the process to one core (taskset) for the one-thread comparison.
--cold-start: import, build W1, jit and adapt one task, print the first prediction, exit.
"""
import argparse
import json
import math
import sys
import time

import numpy as np

import jax
import jax.numpy as jnp

from workloads import W1, W2, measure as measure_calls, sample_task as sample_numpy_task


def init_params(sizes, rng):
    params = []
    for fan_in, out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        params.append(jnp.asarray(rng.uniform(-bound, bound, size=(out, fan_in)), jnp.float32))
        params.append(jnp.asarray(rng.uniform(-bound, bound, size=(out,)), jnp.float32))
    return tuple(params)


def sample_task(w, rng):
    return sample_numpy_task(w, rng, np.int32)


def forward(params, x):
    layers = len(params) // 2
    for i in range(layers):
        x = x @ params[2 * i].T + params[2 * i + 1]
        if i + 1 < layers:
            x = jax.nn.relu(x)
    return x


def make_loss(kind):
    def loss(params, x, y):
        out = forward(params, x)
        if kind == "ce":
            logp = jax.nn.log_softmax(out)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return jnp.mean((out - y) ** 2)

    return loss


def make_adapt(w, first_order=False):
    loss = make_loss(w["kind"])

    def adapt(params, sx, sy):
        for _ in range(w["steps"]):
            g = jax.grad(loss)(params, sx, sy)
            if first_order:
                g = jax.lax.stop_gradient(g)
            params = tuple(p - w["lr"] * gi for p, gi in zip(params, g))
        return params

    return adapt, loss


def make_step(w, first_order):
    adapt, loss = make_adapt(w, first_order)

    def task_outer(params, sx, sy, qx, qy):
        return loss(adapt(params, sx, sy), qx, qy)

    def meta_loss(params, batch):
        return jnp.mean(jax.vmap(task_outer, in_axes=(None, 0, 0, 0, 0))(params, *batch))

    @jax.jit
    def step(params, m, v, t, batch):
        g = jax.grad(meta_loss)(params, batch)
        b1, b2, eps, lr = 0.9, 0.999, 1e-8, 1e-3
        t = t + 1
        m = tuple(b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g))
        v = tuple(b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g))
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        params = tuple(p - lr * (mi / c1) / (jnp.sqrt(vi / c2) + eps) for p, mi, vi in zip(params, m, v))
        return params, m, v, t

    return step


def measure(fn, warmup, min_iters, budget_s):
    """measure_calls plus the compilation time: the first call minus the median."""
    t0 = time.perf_counter()
    fn()
    first_ms = (time.perf_counter() - t0) * 1e3
    med, calls, cpu = measure_calls(fn, warmup, min_iters, budget_s)
    return med, calls, max(0.0, first_ms - med), cpu


def run(args):
    dev = jax.devices()[0]
    device = "cuda" if dev.platform == "gpu" else dev.platform
    device_name = getattr(dev, "device_kind", dev.platform)
    quick = args.quick
    rng = np.random.default_rng(2026)

    def emit(workload, measured):
        median_ms, iters, compile_ms, cpu_ms = measured
        r = dict(framework="jax", variant="jit+vmap", workload=workload, device=device,
                 device_name=device_name, median_ms=median_ms, median_cpu_ms=cpu_ms,
                 iterations=iters, compile_ms=compile_ms, version=jax.__version__)
        print(json.dumps(r), flush=True)

    for wname, kind, mb in [("W1", "maml", 8), ("W1", "maml", 32), ("W1", "fomaml", 32),
                            ("W2", "maml", 25)]:
        w = W1 if wname == "W1" else W2
        host = [sample_task(w, rng) for _ in range(mb)]
        batch = tuple(jnp.asarray(np.stack([t[i] for t in host])) for i in range(4))
        state = [init_params(w["sizes"], rng)]
        state += [tuple(jnp.zeros_like(p) for p in state[0])] * 2 + [jnp.asarray(0.0, jnp.float32)]
        step = make_step(w, kind == "fomaml")

        def once():
            state[:] = step(*state, batch)
            jax.block_until_ready(state[0])

        emit(f"{wname}/{kind}_mb{mb}", measure(once, 3, 5 if quick else 20, 2.0 if quick else 8.0))

    for wname in ("W1", "W2"):
        w = W1 if wname == "W1" else W2
        adapt, _ = make_adapt(w)
        predict = jax.jit(lambda params, sx, sy, qx: forward(adapt(params, sx, sy), qx))
        params = init_params(w["sizes"], rng)
        sx, sy, qx, _ = sample_task(w, rng)
        emit(f"{wname}/adapt", measure(lambda: np.asarray(predict(params, sx, sy, qx)), 10,
                                       20 if quick else 200, 1.0 if quick else 4.0))


def cold_start(args):
    rng = np.random.default_rng(1)
    adapt, _ = make_adapt(W1)
    predict = jax.jit(lambda params, sx, sy, qx: forward(adapt(params, sx, sy), qx))
    sx, sy, qx, _ = sample_task(W1, rng)
    out = np.asarray(predict(init_params(W1["sizes"], rng), sx, sy, qx))
    print(f"cold start: first prediction {out[0, 0]:.6f} on {jax.devices()[0].platform}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (GPU check script)")
    ap.add_argument("--cold-start", action="store_true")
    args = ap.parse_args()
    if args.cold_start:
        cold_start(args)
    else:
        run(args)


if __name__ == "__main__":
    sys.exit(main())
