"""The cost of one few-shot adaptation called from Python, host arrays in and predictions out, on the
W1 shapes (MLP 50-128-128-3, 15 support rows, 5 SGD steps at lr 0.01, 45 query predictions) and W2
(MLP 1-40-40-1, 10 rows, 1 step): metatape from Python, the same call in C++ (bench_meta_cpu, when
given), PyTorch eager (1 thread) and JAX jit, measured in one run.

    python examples/python/adapt_overhead.py [--cpp build/bench/bench_meta_cpu] [--seconds 2]
"""

import argparse
import json
import subprocess
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

import metatape as mt


def per_call_us(fn: Callable[[], Any], seconds: float) -> float:
    for _ in range(20):
        fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            fn()
        calls += 20
    return (time.perf_counter() - start) / calls * 1e6


def workload(name: str) -> Tuple[List[int], int, Any, Any, Any]:
    rng = np.random.default_rng(3)
    if name == "W1":
        means = rng.normal(size=(3, 50))
        y = np.arange(15) % 3
        sx = (means[y] + 1.5 * rng.normal(size=(15, 50))).astype(np.float32)
        qx = (means[np.arange(45) % 3] + 1.5 * rng.normal(size=(45, 50))).astype(np.float32)
        return [50, 128, 128, 3], 5, sx, y.astype(np.int64), qx
    task = mt.tasks.Sinusoid(seed=3).sample()
    return [1, 40, 40, 1], 1, task.support_x, task.support_y, task.query_x


def metatape_adapt(sizes: List[int], steps: int, sx: Any, sy: Any, qx: Any) -> Callable[[], Any]:
    learner = mt.MAML(mt.nn.MLP(sizes, seed=1), lr=0.01, steps=steps)
    return lambda: learner.predict(qx, learner.adapt(sx, sy))


def torch_adapt(torch: Any, sizes: List[int], steps: int, sx: Any, sy: Any, qx: Any) -> Callable[[], Any]:
    model = mt.nn.MLP(sizes, seed=1)
    params = [torch.tensor(model.parameters()[n], requires_grad=True) for n in model.names()]
    layers = len(params) // 2
    loss_fn = torch.nn.functional.cross_entropy if sy.dtype == np.int64 else torch.nn.functional.mse_loss

    def forward(p: List[Any], x: Any) -> Any:
        for i in range(layers):
            x = torch.nn.functional.linear(x, p[2 * i], p[2 * i + 1])
            if i + 1 < layers:
                x = torch.relu(x)
        return x

    def run() -> Any:
        x, y = torch.from_numpy(sx), torch.from_numpy(sy)
        phi = params
        for _ in range(steps):
            g = torch.autograd.grad(loss_fn(forward(phi, x), y), phi)
            phi = [(p - 0.01 * gi) for p, gi in zip(phi, g)]
        with torch.no_grad():
            return forward(phi, torch.from_numpy(qx)).numpy()

    return run


def jax_adapt(sizes: List[int], steps: int, sx: Any, sy: Any, qx: Any) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp

    model = mt.nn.MLP(sizes, seed=1)
    params = [jnp.asarray(model.parameters()[n]) for n in model.names()]
    layers = len(params) // 2
    classification = sy.dtype == np.int64

    def forward(p: List[Any], x: Any) -> Any:
        for i in range(layers):
            x = x @ p[2 * i].T + p[2 * i + 1]
            if i + 1 < layers:
                x = jax.nn.relu(x)
        return x

    def loss(p: List[Any], x: Any, y: Any) -> Any:
        out = forward(p, x)
        if classification:
            return -jnp.mean(jax.nn.log_softmax(out)[jnp.arange(out.shape[0]), y])
        return jnp.mean((out - y) ** 2)

    def adapt_then_predict(p: List[Any], x: Any, y: Any, q: Any) -> Any:
        for _ in range(steps):
            g = jax.grad(loss)(p, x, y)
            p = [pi - 0.01 * gi for pi, gi in zip(p, g)]
        return forward(p, q)

    adapt_predict: Any = jax.jit(adapt_then_predict)

    return lambda: np.asarray(adapt_predict(params, sx, sy, qx))


def cpp_adapt_us(path: str) -> Dict[str, float]:
    out = subprocess.run([path, "--benchmark_filter=W[12]/adapt$", "--benchmark_format=json"], check=True,
                         capture_output=True, text=True).stdout
    results: Dict[str, float] = {}
    for b in json.loads(out)["benchmarks"]:
        scale = {"us": 1.0, "ms": 1e3, "ns": 1e-3}[b["time_unit"]]
        results[b["name"].split("/")[0]] = b["real_time"] * scale
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpp", default="", help="path of bench_meta_cpu (the same adapt from C++)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per entry")
    args = parser.parse_args()
    cpp = cpp_adapt_us(args.cpp) if args.cpp else {}
    torch: Any = None
    try:
        import torch as torch_module

        torch_module.set_num_threads(1)
        torch = torch_module
    except ImportError:
        pass
    try:
        import jax  # noqa: F401

        have_jax = True
    except ImportError:
        have_jax = False
    print("| workload | metatape (Python) | metatape (C++) | PyTorch eager | JAX jit |")
    print("|---|---|---|---|---|")
    for name in ("W1", "W2"):
        sizes, steps, sx, sy, qx = workload(name)
        ours = per_call_us(metatape_adapt(sizes, steps, sx, sy, qx), args.seconds)
        row = [f"{ours:.0f} µs", f"{cpp[name]:.0f} µs" if name in cpp else "not run"]
        row.append(f"{per_call_us(torch_adapt(torch, sizes, steps, sx, sy, qx), args.seconds):.0f} µs"
                   if torch is not None else "not installed")
        row.append(f"{per_call_us(jax_adapt(sizes, steps, sx, sy, qx), args.seconds):.0f} µs"
                   if have_jax else "not installed")
        print(f"| {name} adapt ({steps} steps) + predict | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
