#!/usr/bin/env python3
"""PyTorch reference meta-gradients through a Conv-4 backbone (tests/meta/conv4_parity_test.cpp reads them).

Install:  pip install torch
Run:      python3 scripts/make_conv4_fixture.py [--out tests/data]

Writes tests/data/conv4_parity_f64.json: a small Conv-4 (4 blocks of 3x3 conv, batch norm with batch
statistics, ReLU, downsampling; 8 filters on 16x16 images to keep the file small), two 5-way 1-shot
tasks with 2 query images per class, and the meta-gradient of one meta-step of
  - "maml":         MAML, second order, 2 inner SGD steps (lr 0.4), max-pool variant with a flatten readout;
  - "maml-stride":  the same on the strided variant (stride-2 convs, mean readout: MAML's Omniglot net);
  - "fomaml":       first-order MAML, max-pool variant;
  - "anil":         ANIL (only the head adapts), second order, max-pool variant;
  - "protonet":     Prototypical Networks (squared Euclidean) on the Conv-4 embedding (no head).
Every network and learner here is written from the papers' definitions with torch.nn.functional and
torch.autograd, not translated from metatape. The gradient is the mean over tasks of the per-task outer
gradients. Layout: as scripts/make_pytorch_fixtures.py ({"shape", "data"} per tensor; labels as ints).
"""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F

IMAGE, CHANNELS, BLOCKS, WAYS, SHOTS, QUERIES = 16, 8, 4, 5, 1, 2
INNER_LR, INNER_STEPS = 0.4, 2


def make_params(gen, head, dtype=torch.float64):
    """uniform(+-1/sqrt(fan_in)) for conv and head weights and biases; batch norm starts at (1, 0)."""
    params = {}
    cin = 1
    for b in range(BLOCKS):
        bound = 1.0 / math.sqrt(cin * 9)
        params[f"block{b}.conv.weight"] = (torch.rand(CHANNELS, cin, 3, 3, generator=gen, dtype=dtype) * 2 - 1) * bound
        params[f"block{b}.conv.bias"] = (torch.rand(CHANNELS, generator=gen, dtype=dtype) * 2 - 1) * bound
        # Non-trivial batch-norm parameters so their gradients are tested away from (1, 0).
        params[f"block{b}.bn.weight"] = 1.0 + 0.2 * (torch.rand(CHANNELS, generator=gen, dtype=dtype) * 2 - 1)
        params[f"block{b}.bn.bias"] = 0.1 * (torch.rand(CHANNELS, generator=gen, dtype=dtype) * 2 - 1)
        cin = CHANNELS
    if head:
        bound = 1.0 / math.sqrt(CHANNELS)
        params["head.weight"] = (torch.rand(WAYS, CHANNELS, generator=gen, dtype=dtype) * 2 - 1) * bound
        params["head.bias"] = (torch.rand(WAYS, generator=gen, dtype=dtype) * 2 - 1) * bound
    return params


def body(params, x, strided):
    h = x.reshape(x.shape[0], 1, IMAGE, IMAGE)
    for b in range(BLOCKS):
        h = F.conv2d(h, params[f"block{b}.conv.weight"], params[f"block{b}.conv.bias"], stride=2 if strided else 1,
                     padding=1)
        h = F.batch_norm(h, None, None, params[f"block{b}.bn.weight"], params[f"block{b}.bn.bias"], training=True,
                         eps=1e-5)
        h = F.relu(h)
        if not strided:
            h = F.max_pool2d(h, 2)
    return h.mean(dim=(2, 3)) if strided else h.flatten(1)


def forward(params, x, strided):
    f = body(params, x, strided)
    return f @ params["head.weight"].T + params["head.bias"] if "head.weight" in params else f


def make_batch(gen, tasks=2, dtype=torch.float64):
    batch = []
    for _ in range(tasks):
        # Per-class prototypes plus noise, so the tasks are learnable and the losses are not flat.
        protos = torch.rand(WAYS, IMAGE * IMAGE, generator=gen, dtype=dtype)
        sy = torch.arange(WAYS).repeat_interleave(SHOTS)
        qy = torch.arange(WAYS).repeat_interleave(QUERIES)
        sx = protos[sy] + 0.3 * torch.randn(len(sy), IMAGE * IMAGE, generator=gen, dtype=dtype)
        qx = protos[qy] + 0.3 * torch.randn(len(qy), IMAGE * IMAGE, generator=gen, dtype=dtype)
        batch.append({"support_x": sx, "support_y": sy, "query_x": qx, "query_y": qy})
    return batch


def maml_task(params, task, strided, first_order, head_only):
    names = list(params)
    adapted = [n for n in names if n.startswith("head.")] if head_only else names
    phi = dict(params)
    for _ in range(INNER_STEPS):
        loss = F.cross_entropy(forward(phi, task["support_x"], strided), task["support_y"])
        grads = torch.autograd.grad(loss, [phi[n] for n in adapted], create_graph=not first_order)
        for n, g in zip(adapted, grads):
            phi[n] = phi[n] - INNER_LR * g
    query = F.cross_entropy(forward(phi, task["query_x"], strided), task["query_y"])
    if first_order:
        # FOMAML: the query gradient at the adapted parameters, applied to the initial ones.
        g = torch.autograd.grad(query, [phi[n] for n in names])
    else:
        g = torch.autograd.grad(query, [params[n] for n in names])
    return query.detach(), dict(zip(names, g))


def protonet_task(params, task):
    names = list(params)
    fs = forward(params, task["support_x"], False)
    fq = forward(params, task["query_x"], False)
    protos = torch.stack([fs[task["support_y"] == c].mean(0) for c in range(WAYS)])
    logits = -((fq[:, None, :] - protos[None, :, :]) ** 2).sum(-1)
    loss = F.cross_entropy(logits, task["query_y"])
    return loss.detach(), dict(zip(names, torch.autograd.grad(loss, [params[n] for n in names])))


def enc(t):
    return {"shape": list(t.shape), "data": t.reshape(-1).tolist()}


def run_case(params, batch, fn):
    leaves = {n: v.clone().requires_grad_() for n, v in params.items()}
    losses, total = [], None
    for task in batch:
        loss, g = fn(leaves, task)
        losses.append(loss)
        total = g if total is None else {n: total[n] + g[n] for n in g}
    return float(sum(losses) / len(losses)), {n: v / len(batch) for n, v in total.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data"))
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(20261206)
    with_head, embedding = make_params(gen, True), make_params(gen, False)
    batch = make_batch(gen)
    cases = {}
    for name, model, fn, options in [
        ("maml", "head", lambda p, t: maml_task(p, t, False, False, False), {"downsample": "max_pool"}),
        ("maml-stride", "head", lambda p, t: maml_task(p, t, True, False, False), {"downsample": "stride"}),
        ("fomaml", "head", lambda p, t: maml_task(p, t, False, True, False), {"downsample": "max_pool"}),
        ("anil", "head", lambda p, t: maml_task(p, t, False, False, True), {"downsample": "max_pool"}),
        ("protonet", "embedding", protonet_task, {"downsample": "max_pool"}),
    ]:
        params = with_head if model == "head" else embedding
        loss, grads = run_case(params, batch, fn)
        options.update({"inner_steps": INNER_STEPS, "inner_lr": INNER_LR})
        cases[name] = {"model": model, "options": options, "loss": loss, "grads": {n: enc(g) for n, g in grads.items()}}
    out = {
        "dtype": "f64",
        "torch_version": torch.__version__,
        "net": {"image_size": IMAGE, "channels": CHANNELS, "blocks": BLOCKS, "ways": WAYS},
        "models": {"head": {n: enc(v) for n, v in with_head.items()},
                   "embedding": {n: enc(v) for n, v in embedding.items()}},
        "parameter_order": {"head": list(with_head), "embedding": list(embedding)},
        "batch": [{"support_x": enc(t["support_x"]), "support_y": t["support_y"].tolist(),
                   "query_x": enc(t["query_x"]), "query_y": t["query_y"].tolist()} for t in batch],
        "cases": cases,
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "conv4_parity_f64.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {path} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
