#!/usr/bin/env python3
"""W1 and W2 of ../shared/BENCHMARKS.md in PyTorch: eager (loop over tasks) and torch.func (vmap).

Prints one JSON object per measurement on stdout:
  {"framework": "pytorch", "variant": "eager" | "torch.func vmap", "workload": "W1/maml_mb32",
   "device": "cpu" | "cuda", "median_ms": ..., "iterations": ..., "device_name": ...}
Workload names match bench/meta_step_gpu.cpp: W1/maml_mb8, W1/maml_mb32, W1/fomaml_mb32,
W2/maml_mb25 (meta_step: inner loops, outer gradient, Adam; data resident on the device), W1/adapt,
W2/adapt (host arrays in, query predictions back in host memory).
--cold-start: import, build W1, adapt one task, print the first prediction, exit (timed from outside).
--device auto picks CUDA when torch sees a GPU. CPU runs use one thread (torch.set_num_threads(1)).
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from workloads import W1, W2, sample_task, measure as measure_calls


def init_params(sizes, gen, device):
    params = []
    for fan_in, out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(out, fan_in, generator=gen) * 2 - 1) * bound
        b = (torch.rand(out, generator=gen) * 2 - 1) * bound
        params += [w.to(device).requires_grad_(), b.to(device).requires_grad_()]
    return params


def forward(params, x):
    layers = len(params) // 2
    for i in range(layers):
        x = x @ params[2 * i].transpose(-1, -2) + params[2 * i + 1]
        if i + 1 < layers:
            x = torch.relu(x)
    return x


def loss_fn(kind, out, y):
    return F.cross_entropy(out, y) if kind == "ce" else F.mse_loss(out, y)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def measure(fn, device, warmup, min_iters, budget_s):
    return measure_calls(fn, warmup, min_iters, budget_s, lambda: sync(device))


def eager_step(w, params, opt, tasks, first_order):
    opt.zero_grad(set_to_none=True)
    for sx, sy, qx, qy in tasks:
        phi = params
        for _ in range(w["steps"]):
            loss = loss_fn(w["kind"], forward(phi, sx), sy)
            grads = torch.autograd.grad(loss, phi, create_graph=not first_order)
            phi = [p - w["lr"] * g for p, g in zip(phi, grads)]
        (loss_fn(w["kind"], forward(phi, qx), qy) / len(tasks)).backward()
    opt.step()


def make_vmap_step(w, first_order):
    from torch.func import grad, vmap

    kind, steps, lr = w["kind"], w["steps"], w["lr"]

    def inner_loss(params, x, y):
        return loss_fn(kind, forward(params, x), y)

    def task_outer(params, sx, sy, qx, qy):
        phi = params
        for _ in range(steps):
            g = grad(inner_loss)(phi, sx, sy)
            if first_order:
                g = tuple(t.detach() for t in g)
            phi = tuple(p - lr * gi for p, gi in zip(phi, g))
        return inner_loss(phi, qx, qy)

    def meta_loss(params, SX, SY, QX, QY):
        return vmap(task_outer, in_dims=(None, 0, 0, 0, 0))(params, SX, SY, QX, QY).mean()

    meta_grad = grad(meta_loss)

    def step(params, opt, stacked):
        g = meta_grad(tuple(p.detach() for p in params), *stacked)
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()

    return step


def run(args):
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    if device == "cpu":
        torch.set_num_threads(1)
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    quick = args.quick
    rng = np.random.default_rng(2026)
    gen = torch.Generator().manual_seed(2026)
    results = []

    def emit(variant, workload, measured):
        median_ms, iters, cpu_ms = measured
        r = dict(framework="pytorch", variant=variant, workload=workload, device=device,
                 device_name=device_name, median_ms=median_ms, median_cpu_ms=cpu_ms,
                 iterations=iters, version=torch.__version__)
        results.append(r)
        print(json.dumps(r), flush=True)

    for wname, kind, mb in [("W1", "maml", 8), ("W1", "maml", 32), ("W1", "fomaml", 32),
                            ("W2", "maml", 25)]:
        w = W1 if wname == "W1" else W2
        first_order = kind == "fomaml"
        host = [sample_task(w, rng) for _ in range(mb)]
        tasks = [tuple(torch.from_numpy(a).to(device) for a in t) for t in host]
        stacked = tuple(torch.stack([t[i] for t in tasks]) for i in range(4))
        label = f"{wname}/{kind}_mb{mb}"
        if "eager" in args.variants:
            params = init_params(w["sizes"], gen, device)
            opt = torch.optim.Adam(params, lr=1e-3)
            emit("eager", label, measure(lambda: eager_step(w, params, opt, tasks, first_order),
                                         device, 2 if quick else 3, 3 if quick else 10,
                                         2.0 if quick else 8.0))
        if "vmap" in args.variants:
            params = init_params(w["sizes"], gen, device)
            opt = torch.optim.Adam(params, lr=1e-3)
            step = make_vmap_step(w, first_order)
            emit("torch.func vmap", label,
                 measure(lambda: step(params, opt, stacked), device, 2 if quick else 3,
                         3 if quick else 10, 2.0 if quick else 8.0))

    if "eager" in args.variants:
        for wname in ("W1", "W2"):
            w = W1 if wname == "W1" else W2
            params = [p.detach() for p in init_params(w["sizes"], gen, device)]
            sx, sy, qx, _ = sample_task(w, rng)

            def adapt_once():
                x = torch.from_numpy(sx).to(device)
                y = torch.from_numpy(sy).to(device)
                phi = [p.clone().requires_grad_() for p in params]
                for _ in range(w["steps"]):
                    loss = loss_fn(w["kind"], forward(phi, x), y)
                    g = torch.autograd.grad(loss, phi)
                    phi = [(p - w["lr"] * gi).detach().requires_grad_() for p, gi in zip(phi, g)]
                with torch.no_grad():
                    return forward(phi, torch.from_numpy(qx).to(device)).cpu().numpy()

            emit("eager", f"{wname}/adapt",
                 measure(adapt_once, device, 10, 20 if quick else 200, 1.0 if quick else 4.0))
    return results


def cold_start(args):
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    if device == "cpu":
        torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    params = init_params(W1["sizes"], torch.Generator().manual_seed(1), device)
    sx, sy, qx, _ = sample_task(W1, rng)
    x, y = torch.from_numpy(sx).to(device), torch.from_numpy(sy).to(device)
    phi = params
    for _ in range(W1["steps"]):
        g = torch.autograd.grad(loss_fn("ce", forward(phi, x), y), phi)
        phi = [(p - W1["lr"] * gi).detach().requires_grad_() for p, gi in zip(phi, g)]
    with torch.no_grad():
        out = forward(phi, torch.from_numpy(qx).to(device)).cpu().numpy()
    print(f"cold start: first prediction {out[0, 0]:.6f} on {device}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (GPU check script)")
    ap.add_argument("--variants", default="eager,vmap")
    ap.add_argument("--cold-start", action="store_true")
    args = ap.parse_args()
    if args.cold_start:
        cold_start(args)
    else:
        run(args)


if __name__ == "__main__":
    sys.exit(main())
