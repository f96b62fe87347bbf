"""Loads a meta-trained checkpoint (from `metatape train`, learner.save() or the C API) and adapts it to
a few-shot support set, then predicts on the query set.

    build/apps/metatape train --learners maml --families risk --meta-steps 50 --out runs/tiny
    python examples/python/adapt_checkpoint.py runs/tiny/.../maml.ckpt

Without a path it first meta-trains a small sinusoid MAML and saves it to a temporary file.
"""

import argparse
import os
import tempfile

import numpy as np

import metatape as mt


def tiny_checkpoint(path: str) -> None:
    learner = mt.MAML(mt.nn.MLP([1, 40, 40, 1], seed=0), lr=0.01, steps=5)
    tasks = mt.tasks.Sinusoid(seed=1)
    for _ in range(200):
        learner.meta_train_step(tasks.sample_batch(10), metrics=False)
    learner.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", default="")
    parser.add_argument("--steps", type=int, default=-1, help="adaptation steps (default: the checkpoint's)")
    args = parser.parse_args()

    path = args.checkpoint
    if not path:
        path = os.path.join(tempfile.mkdtemp(), "sinusoid-maml.ckpt")
        tiny_checkpoint(path)
    model = mt.InferenceModel.load(path)
    print(f"{path}: {model.learner} on {model.model}, {model.step} meta-steps, task {model.task_kind}, "
          f"default {model.default_steps} adaptation steps")

    rng = np.random.default_rng(0)
    if model.in_features == 1 and model.task_kind == "regression":
        task = mt.tasks.Sinusoid(seed=7).sample()
        sx, sy, qx, qy = task.support_x, task.support_y, task.query_x, task.query_y
    else:  # any checkpoint: random inputs of the right width, just to show the calls
        sx = rng.normal(size=(20, model.in_features)).astype(np.float32)
        qx = rng.normal(size=(10, model.in_features)).astype(np.float32)
        if model.task_kind == "classification":
            classes = model.num_classes or model.out_features
            sy = (np.arange(20) % classes).astype(np.float32)
            qy = np.zeros(10, dtype=np.float32)
        else:
            sy = rng.normal(size=(20, model.out_features)).astype(np.float32)
            qy = np.zeros((10, model.out_features), dtype=np.float32)
    before = model.predict(model.adapt(sx, sy, steps=0), qx)
    adapted = model.adapt(sx, sy, steps=args.steps)
    after = model.predict(adapted, qx)
    print(f"adapted on {adapted.support_rows} support rows in {adapted.steps} steps; predictions {after.shape}")
    if model.task_kind == "regression":
        print(f"query MSE before adaptation {np.mean((before - qy) ** 2):.4f}, after {np.mean((after - qy) ** 2):.4f}")


if __name__ == "__main__":
    main()
