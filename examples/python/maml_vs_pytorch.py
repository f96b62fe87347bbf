"""One second-order MAML meta-gradient computed by metatape and by PyTorch on the same parameters and
the same batch (float64), compared element by element and timed.

    python examples/python/maml_vs_pytorch.py [--shape w1|w2] [--steps 1] [--repeats 20]

W1: MLP 50-128-128-3, 3-way classification, 15 support / 45 query rows, meta-batch 8.
W2: MLP 1-40-40-1, sinusoid regression, 10 / 10 rows, meta-batch 8. Needs torch (pip install torch).
"""

import argparse
import time
from typing import Any, Callable, Dict, List

import numpy as np

import metatape as mt


def w1_tasks(seed: int, n: int) -> List[mt.tasks.Task]:
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n):
        means = rng.normal(size=(3, 50))
        def draw(rows: int) -> Any:
            y = rng.permutation(np.arange(rows) % 3)
            return (means[y] + rng.normal(size=(rows, 50))), y.astype(np.int64)
        sx, sy = draw(15)
        qx, qy = draw(45)
        tasks.append(mt.tasks.Task(sx, sy, qx, qy))
    return tasks


def torch_meta_gradient(torch: Any, params_np: Dict[str, np.ndarray], tasks: List[mt.tasks.Task], lr: float,
                        steps: int, loss_fn: Callable[..., Any]) -> Dict[str, np.ndarray]:
    names = list(params_np)
    params = [torch.tensor(params_np[n], requires_grad=True) for n in names]
    layers = len(names) // 2

    def forward(p: List[Any], x: Any) -> Any:
        for i in range(layers):
            x = torch.nn.functional.linear(x, p[2 * i], p[2 * i + 1])
            if i + 1 < layers:
                x = torch.relu(x)
        return x

    outer = 0.0
    for t in tasks:
        phi = params
        sx, sy = torch.from_numpy(t.support_x), torch.from_numpy(t.support_y)
        for _ in range(steps):
            g = torch.autograd.grad(loss_fn(forward(phi, sx), sy), phi, create_graph=True)
            phi = [p - lr * gi for p, gi in zip(phi, g)]
        outer = outer + loss_fn(forward(phi, torch.from_numpy(t.query_x)), torch.from_numpy(t.query_y))
    grads = torch.autograd.grad(outer / len(tasks), params)
    return {n: g.numpy() for n, g in zip(names, grads)}


def timed(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["w1", "w2"], default="w1")
    parser.add_argument("--steps", type=int, default=1, help="inner steps")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import torch  # after argparse, so --help works without torch

    torch.set_num_threads(1)
    loss_fn: Callable[..., Any]
    if args.shape == "w1":
        model = mt.nn.MLP([50, 128, 128, 3], dtype="float64", seed=1)
        tasks = w1_tasks(2, 8)
        lr, loss_fn = 0.05, torch.nn.functional.cross_entropy
    else:
        model = mt.nn.MLP([1, 40, 40, 1], dtype="float64", seed=1)
        tasks = mt.tasks.Sinusoid(seed=2, dtype="float64").sample_batch(8)
        lr, loss_fn = 0.01, torch.nn.functional.mse_loss
    learner = mt.MAML(model, lr=lr, steps=args.steps)  # second order

    ours, metrics = learner.meta_gradient(tasks)
    theirs = torch_meta_gradient(torch, model.parameters(), tasks, lr, args.steps, loss_fn)
    worst = max(float(np.abs(ours[n] - theirs[n]).max()) for n in model.names())
    print(f"{args.shape}, {args.steps} inner step(s), meta-batch {len(tasks)}, float64, second order")
    print(f"  outer loss {metrics['query_loss']:.6f}; largest |metatape - torch| over the gradient: {worst:.2e}")

    t_ours = timed(lambda: learner.meta_gradient(tasks, metrics=False), args.repeats)
    t_theirs = timed(lambda: torch_meta_gradient(torch, model.parameters(), tasks, lr, args.steps, loss_fn),
                     args.repeats)
    print(f"  metatape {t_ours * 1e3:8.3f} ms per meta-gradient")
    print(f"  pytorch  {t_theirs * 1e3:8.3f} ms per meta-gradient (1 thread, eager)")
    if worst > 1e-9:
        raise SystemExit(f"gradients differ by {worst:.2e} (> 1e-9)")


if __name__ == "__main__":
    main()
