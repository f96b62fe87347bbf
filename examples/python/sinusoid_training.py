"""Meta-trains MAML on the MAML paper's sinusoid benchmark and reports the held-out loss after
adaptation as training goes.

    python examples/python/sinusoid_training.py [--steps 2000] [--learner maml|fomaml|meta-sgd|reptile|anil]
"""

import argparse
import time

import numpy as np

import metatape as mt


def make_learner(kind: str, model: mt.nn.MLP) -> mt.Learner:
    adam = mt.optim.Adam(lr=1e-3)
    if kind == "maml":
        return mt.MAML(model, lr=0.01, steps=1, optimizer=adam)
    if kind == "fomaml":
        return mt.MAML(model, lr=0.01, steps=1, first_order=True, optimizer=adam)
    if kind == "meta-sgd":
        return mt.MetaSGD(model, lr=0.01, steps=1, optimizer=adam)
    if kind == "reptile":
        return mt.Reptile(model, lr=0.02, steps=10, epsilon=1.0)
    if kind == "anil":
        return mt.ANIL(model, lr=0.01, steps=1, optimizer=adam)
    raise SystemExit(f"unknown learner {kind!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="meta-steps")
    parser.add_argument("--batch", type=int, default=25, help="tasks per meta-step")
    parser.add_argument("--learner", default="maml")
    parser.add_argument("--save", default="", help="write a checkpoint here at the end")
    args = parser.parse_args()

    model = mt.nn.MLP([1, 40, 40, 1], activation="relu", seed=0)
    learner = make_learner(args.learner, model)
    train = mt.tasks.Sinusoid(seed=1, support_rows=10, query_rows=10)
    held_out = mt.tasks.Sinusoid(seed=2).sample_batch(100)

    def evaluate() -> float:
        return float(np.mean([learner.evaluate(t, [learner.default_adapt_steps])[0]["loss"] for t in held_out]))

    print(f"{learner!r}\n  step 0: held-out loss after adaptation {evaluate():.4f}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        report = step % max(args.steps // 10, 1) == 0
        metrics = learner.meta_train_step(train.sample_batch(args.batch), metrics=report)  # metrics: one sync
        if report:
            print(f"  step {step}: train query loss {metrics['query_loss']:.4f}, held-out {evaluate():.4f} "
                  f"({(time.perf_counter() - start) / step * 1e3:.2f} ms per meta-step)")
    if args.save:
        learner.save(args.save)
        print(f"  checkpoint written to {args.save}")


if __name__ == "__main__":
    main()
