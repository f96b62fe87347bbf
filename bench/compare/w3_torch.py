#!/usr/bin/env python3
"""W3 (../shared/BENCHMARKS.md) in PyTorch, the same workload as bench/conv4_meta_step.cpp: one meta-step
of MAML (second order), FOMAML or ProtoNets through Conv-4 (64 filters, batch norm with batch statistics,
ReLU, 2x2 max pool; 28x28), 5-way 1-shot, 15 queries per class, 1 inner SGD step of lr 0.4, outer Adam
lr 1e-3, eager PyTorch looping over the tasks of the meta-batch (the usual MAML implementation).

usage: w3_torch.py --kind maml|fomaml|protonet --meta-batch 4 [--steps 10 --warmup 3] [--threads 1]
Prints one line: "w3 torch <kind> mb <n>: median <ms> ms over <steps> steps".
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

WAYS, SHOTS, QUERIES, SIDE, CH = 5, 1, 15, 28, 64


def init_params(gen, head):
    p, cin = {}, 1
    for b in range(4):
        bound = 1.0 / (cin * 9) ** 0.5
        p[f"b{b}.w"] = ((torch.rand(CH, cin, 3, 3, generator=gen) * 2 - 1) * bound).requires_grad_()
        p[f"b{b}.b"] = ((torch.rand(CH, generator=gen) * 2 - 1) * bound).requires_grad_()
        p[f"b{b}.g"] = torch.ones(CH).requires_grad_()
        p[f"b{b}.beta"] = torch.zeros(CH).requires_grad_()
        cin = CH
    if head:
        p["head.w"] = ((torch.rand(WAYS, CH, generator=gen) * 2 - 1) / CH ** 0.5).requires_grad_()
        p["head.b"] = ((torch.rand(WAYS, generator=gen) * 2 - 1) / CH ** 0.5).requires_grad_()
    return p


def forward(p, x):
    h = x.reshape(-1, 1, SIDE, SIDE)
    for b in range(4):
        h = F.conv2d(h, p[f"b{b}.w"], p[f"b{b}.b"], padding=1)
        h = F.batch_norm(h, None, None, p[f"b{b}.g"], p[f"b{b}.beta"], training=True)
        h = F.max_pool2d(F.relu(h), 2)
    h = h.flatten(1)
    return h @ p["head.w"].T + p["head.b"] if "head.w" in p else h


def task(gen):
    sy = torch.arange(WAYS).repeat_interleave(SHOTS)
    qy = torch.arange(WAYS).repeat_interleave(QUERIES)
    return torch.rand(len(sy), SIDE * SIDE, generator=gen), sy, torch.rand(len(qy), SIDE * SIDE, generator=gen), qy


def meta_step(kind, params, opt, batch):
    names = list(params)
    opt.zero_grad()
    for sx, sy, qx, qy in batch:
        if kind == "protonet":
            fs, fq = forward(params, sx), forward(params, qx)
            protos = torch.stack([fs[sy == c].mean(0) for c in range(WAYS)])
            loss = F.cross_entropy(-torch.cdist(fq, protos) ** 2, qy) / len(batch)
            loss.backward()
            continue
        g = torch.autograd.grad(F.cross_entropy(forward(params, sx), sy), [params[n] for n in names],
                                create_graph=kind == "maml")
        phi = {n: params[n] - 0.4 * gi for n, gi in zip(names, g)}
        if kind == "fomaml":
            phi = {n: v.detach().requires_grad_() for n, v in phi.items()}
            qg = torch.autograd.grad(F.cross_entropy(forward(phi, qx), qy), [phi[n] for n in names])
            for n, gi in zip(names, qg):
                params[n].grad = gi / len(batch) if params[n].grad is None else params[n].grad + gi / len(batch)
        else:
            (F.cross_entropy(forward(phi, qx), qy) / len(batch)).backward()
    opt.step()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="maml", choices=["maml", "fomaml", "protonet"])
    ap.add_argument("--meta-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(1)
    params = init_params(gen, a.kind != "protonet")
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    batch = [task(gen) for _ in range(a.meta_batch)]
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.process_time()
        meta_step(a.kind, params, opt, batch)
        if i >= a.warmup:
            times.append(time.process_time() - t0)
    print(f"w3 torch {a.kind} mb {a.meta_batch}: median {1000 * statistics.median(times):.1f} ms over {a.steps} steps "
          f"(torch {torch.__version__}, {a.threads} thread)")


if __name__ == "__main__":
    main()
