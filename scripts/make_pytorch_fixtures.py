#!/usr/bin/env python3
"""PyTorch reference results for metatape's meta-learners (tests/meta/parity_test.cpp reads them).

Install (CPU only):  pip install torch --index-url https://download.pytorch.org/whl/cpu
Run:                 python3 scripts/make_pytorch_fixtures.py [--out tests/data]

Writes tests/data/meta_parity_f64.json and tests/data/meta_parity_f32.json. Each file holds, for one
dtype: initial parameters, task batches, and the expected result of one meta-step of MAML (second
order, 2 inner steps), FOMAML, Meta-SGD, Reptile and ANIL on sinusoid regression, MAML with
cross-entropy on a 3-way task, and the ProtoNet (squared Euclidean and cosine) and Matching Net loss
gradients. The learners are written here from their papers' definitions with torch.autograd, not
translated from metatape's C++.

Layout (JSON): {"dtype", "torch_version", "models": {name: {"sizes": [...], "params": {pname:
{"shape", "data"}}}}, "batches": {name: [{"support_x", "support_y", "query_x", "query_y"} as
{"shape", "data"}; labels as int lists]}, "cases": {case: {"model", "batch", "options", "loss",
"grads": {pname: {"shape", "data"}}, "after": {...} (optional)}}}. Gradients are the mean over the
batch of the per-task outer gradients; "after" holds parameters after one outer step.
"""
import argparse
import json
import math
import os

import torch

D_REG = [1, 16, 16, 1]
D_CLS = [10, 16, 3]
D_EMB = [10, 16, 8]


def make_params(sizes, gen, dtype):
    params = {}
    for i in range(len(sizes) - 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        b = 1.0 / math.sqrt(fan_in)
        params[f"layer{i}.weight"] = (torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) * b
        params[f"layer{i}.bias"] = (torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * b
    return {k: v.to(dtype) for k, v in params.items()}


def forward(params, x):
    """MLP: x W^T + b per layer, ReLU after every layer but the last."""
    layers = len(params) // 2
    h = x
    for i in range(layers):
        h = h @ params[f"layer{i}.weight"].T + params[f"layer{i}.bias"]
        if i + 1 < layers:
            h = torch.relu(h)
    return h


def sinusoid_batch(gen, tasks, k, dtype):
    batch = []
    for _ in range(tasks):
        amp = 0.1 + 4.9 * torch.rand(1, generator=gen, dtype=torch.float64).item()
        phase = math.pi * torch.rand(1, generator=gen, dtype=torch.float64).item()
        sx = torch.rand(k, 1, generator=gen, dtype=torch.float64) * 10 - 5
        qx = torch.rand(k, 1, generator=gen, dtype=torch.float64) * 10 - 5
        batch.append({"support_x": sx.to(dtype), "support_y": (amp * torch.sin(sx - phase)).to(dtype),
                      "query_x": qx.to(dtype), "query_y": (amp * torch.sin(qx - phase)).to(dtype)})
    return batch


def class_batch(gen, tasks, ways, shots, queries, features, dtype):
    batch = []
    for _ in range(tasks):
        means = torch.randn(ways, features, generator=gen, dtype=torch.float64)
        def draw(n):
            x = means.repeat_interleave(n, 0) + 0.8 * torch.randn(ways * n, features, generator=gen, dtype=torch.float64)
            y = torch.arange(ways).repeat_interleave(n)
            return x.to(dtype), y
        sx, sy = draw(shots)
        qx, qy = draw(queries)
        batch.append({"support_x": sx, "support_y": sy, "query_x": qx, "query_y": qy})
    return batch


def mse(a, b):
    return ((a - b) ** 2).mean()


def leaf(params):
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def maml_case(params, batch, steps, lr, first_order, loss_fn, head_only=False):
    """MAML / FOMAML / ANIL: mean over tasks of the query loss after `steps` inner SGD steps."""
    theta = leaf(params)
    names = list(theta.keys())
    layers = len(names) // 2
    adapted = names[-2:] if head_only else names
    total = 0
    for t in batch:
        phi = dict(theta)
        for _ in range(steps):
            loss = loss_fn(forward(phi, t["support_x"]), t["support_y"])
            g = torch.autograd.grad(loss, [phi[n] for n in adapted], create_graph=not first_order)
            for n, gi in zip(adapted, g):
                phi[n] = phi[n] - lr * gi
        total = total + loss_fn(forward(phi, t["query_x"]), t["query_y"])
    outer = total / len(batch)
    grads = torch.autograd.grad(outer, [theta[n] for n in names])
    return outer.item(), dict(zip(names, grads))


def meta_sgd_case(params, alphas, batch, steps, alpha_l2):
    theta = leaf(params)
    alpha = leaf(alphas)
    names = list(theta.keys())
    total = 0
    for t in batch:
        phi = dict(theta)
        for _ in range(steps):
            loss = mse(forward(phi, t["support_x"]), t["support_y"])
            g = torch.autograd.grad(loss, [phi[n] for n in names], create_graph=True)
            for n, gi in zip(names, g):
                phi[n] = phi[n] - alpha["alpha." + n] * gi
        total = total + mse(forward(phi, t["query_x"]), t["query_y"])
    outer = total / len(batch) + alpha_l2 * sum((a ** 2).sum() for a in alpha.values())
    all_names = names + list(alpha.keys())
    grads = torch.autograd.grad(outer, [theta[n] for n in names] + [alpha[n] for n in alpha])
    return outer.item(), dict(zip(all_names, grads))


def reptile_case(params, batch, steps, lr, epsilon):
    names = list(params.keys())
    phi_sum = {n: torch.zeros_like(params[n]) for n in names}
    query = 0.0
    for t in batch:
        phi = leaf(params)
        for _ in range(steps):
            loss = mse(forward(phi, t["support_x"]), t["support_y"])
            g = torch.autograd.grad(loss, [phi[n] for n in names])
            with torch.no_grad():
                phi = {n: (phi[n] - lr * gi).requires_grad_(True) for n, gi in zip(names, g)}
        with torch.no_grad():
            for n in names:
                phi_sum[n] += phi[n]
            query += mse(forward(phi, t["query_x"]), t["query_y"]).item()
    pseudo = {n: params[n] - phi_sum[n] / len(batch) for n in names}
    after = {n: params[n] - epsilon * pseudo[n] for n in names}
    return query / len(batch), pseudo, after


def proto_case(params, batch, distance, scale):
    theta = leaf(params)
    names = list(theta.keys())
    total = 0
    for t in batch:
        es = forward(theta, t["support_x"])
        eq = forward(theta, t["query_x"])
        ways = int(t["support_y"].max()) + 1
        onehot = torch.nn.functional.one_hot(t["support_y"], ways).to(es.dtype)
        protos = (onehot.T @ es) / onehot.sum(0).unsqueeze(1)
        if distance == "sqeuclidean":
            logits = -((eq.unsqueeze(1) - protos.unsqueeze(0)) ** 2).sum(-1)
        else:
            logits = scale * cosine(eq, protos)
        total = total + torch.nn.functional.cross_entropy(logits, t["query_y"])
    loss = total / len(batch)
    return loss.item(), dict(zip(names, torch.autograd.grad(loss, [theta[n] for n in names])))


def cosine(a, b, eps=1e-12):
    na = torch.sqrt((a * a).sum(-1, keepdim=True) + eps)
    nb = torch.sqrt((b * b).sum(-1, keepdim=True) + eps)
    return (a @ b.T) / (na * nb.T)


def matching_case(params, batch, scale):
    theta = leaf(params)
    names = list(theta.keys())
    total = 0
    for t in batch:
        es = forward(theta, t["support_x"])
        eq = forward(theta, t["query_x"])
        ways = int(t["support_y"].max()) + 1
        onehot = torch.nn.functional.one_hot(t["support_y"], ways).to(es.dtype)
        attention = torch.softmax(scale * cosine(eq, es), dim=-1)
        logp = torch.log(torch.clamp(attention @ onehot, min=1e-12))
        total = total + torch.nn.functional.nll_loss(logp, t["query_y"])
    loss = total / len(batch)
    return loss.item(), dict(zip(names, torch.autograd.grad(loss, [theta[n] for n in names])))


def adam_after(params, grads, lr):
    """One torch.optim.Adam step (defaults) from zero state."""
    p = [v.detach().clone().requires_grad_(True) for v in params.values()]
    opt = torch.optim.Adam(p, lr=lr)
    for pi, g in zip(p, grads.values()):
        pi.grad = g.detach().clone()
    opt.step()
    return {n: pi.detach() for n, pi in zip(params.keys(), p)}


def enc(t):
    t = t.detach()
    if t.dtype == torch.int64:
        return {"shape": list(t.shape), "data": [int(v) for v in t.reshape(-1).tolist()]}
    return {"shape": list(t.shape), "data": [float(v) for v in t.double().reshape(-1).tolist()]}


def enc_dict(d):
    return {k: enc(v) for k, v in d.items()}


def build(dtype):
    gen = torch.Generator().manual_seed(20261126)
    torch.manual_seed(0)
    models = {"reg": make_params(D_REG, gen, dtype), "cls": make_params(D_CLS, gen, dtype),
              "emb": make_params(D_EMB, gen, dtype)}
    alphas = {"alpha." + k: (0.02 + 0.06 * torch.rand(v.shape, generator=gen, dtype=torch.float64)).to(dtype)
              for k, v in models["reg"].items()}
    batches = {"sin": sinusoid_batch(gen, 3, 5, dtype), "cls": class_batch(gen, 2, 3, 2, 4, 10, dtype)}
    cases = {}
    ce = torch.nn.functional.cross_entropy

    loss, grads = maml_case(models["reg"], batches["sin"], 2, 0.05, False, mse)
    cases["maml"] = {"model": "reg", "batch": "sin", "options": {"inner_steps": 2, "inner_lr": 0.05},
                     "loss": loss, "grads": enc_dict(grads),
                     "after_adam": enc_dict(adam_after(models["reg"], grads, 1e-3)), "adam_lr": 1e-3}
    loss, grads = maml_case(models["reg"], batches["sin"], 2, 0.05, True, mse)
    cases["fomaml"] = {"model": "reg", "batch": "sin", "options": {"inner_steps": 2, "inner_lr": 0.05},
                       "loss": loss, "grads": enc_dict(grads)}
    loss, grads = maml_case(models["reg"], batches["sin"], 2, 0.05, False, mse, head_only=True)
    cases["anil"] = {"model": "reg", "batch": "sin", "options": {"inner_steps": 2, "inner_lr": 0.05},
                     "loss": loss, "grads": enc_dict(grads)}
    loss, grads = meta_sgd_case(models["reg"], alphas, batches["sin"], 1, 0.01)
    cases["meta-sgd"] = {"model": "reg", "batch": "sin", "options": {"inner_steps": 1, "alpha_l2": 0.01},
                         "alphas": enc_dict(alphas), "loss": loss, "grads": enc_dict(grads)}
    loss, pseudo, after = reptile_case(models["reg"], batches["sin"], 3, 0.05, 0.5)
    cases["reptile"] = {"model": "reg", "batch": "sin",
                        "options": {"inner_steps": 3, "inner_lr": 0.05, "epsilon": 0.5},
                        "loss": loss, "grads": enc_dict(pseudo), "after": enc_dict(after)}
    loss, grads = maml_case(models["cls"], batches["cls"], 2, 0.1, False, ce)
    cases["maml-ce"] = {"model": "cls", "batch": "cls", "options": {"inner_steps": 2, "inner_lr": 0.1},
                        "loss": loss, "grads": enc_dict(grads)}
    loss, grads = proto_case(models["emb"], batches["cls"], "sqeuclidean", 1.0)
    cases["protonet"] = {"model": "emb", "batch": "cls", "options": {"distance": "sqeuclidean"},
                         "loss": loss, "grads": enc_dict(grads)}
    loss, grads = proto_case(models["emb"], batches["cls"], "cosine", 10.0)
    cases["protonet-cosine"] = {"model": "emb", "batch": "cls", "options": {"distance": "cosine", "cosine_scale": 10.0},
                                "loss": loss, "grads": enc_dict(grads)}
    loss, grads = matching_case(models["emb"], batches["cls"], 5.0)
    cases["matching"] = {"model": "emb", "batch": "cls", "options": {"cosine_scale": 5.0},
                         "loss": loss, "grads": enc_dict(grads)}

    def enc_batch(b):
        return [{k: enc(v) for k, v in t.items()} for t in b]

    return {
        "dtype": "f64" if dtype == torch.float64 else "f32",
        "torch_version": torch.__version__,
        "models": {name: {"sizes": sizes, "params": enc_dict(models[name])}
                   for name, sizes in (("reg", D_REG), ("cls", D_CLS), ("emb", D_EMB))},
        "batches": {name: enc_batch(b) for name, b in batches.items()},
        "cases": cases,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "data"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    for dtype, suffix in ((torch.float64, "f64"), (torch.float32, "f32")):
        path = os.path.join(args.out, f"meta_parity_{suffix}.json")
        with open(path, "w") as f:
            json.dump(build(dtype), f)
            f.write("\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
