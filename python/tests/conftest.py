"""Shared helpers: W1-shaped classification tasks (MLP 50-128-128-3, 15 support and 45 query rows, 3
classes) and W2 sinusoid batches (MLP 1-40-40-1), as docs/speed.md defines the workloads."""

import numpy as np
import pytest

import metatape as mt


def w1_task(rng: np.random.Generator, dtype=np.float32, features: int = 50, classes: int = 3,
            support: int = 15, query: int = 45) -> "mt.tasks.Task":
    means = rng.normal(0.0, 1.0, size=(classes, features))
    def draw(rows):
        y = np.arange(rows) % classes
        rng.shuffle(y)
        x = means[y] + rng.normal(0.0, 1.0, size=(rows, features))
        return x.astype(dtype), y.astype(np.int64)
    sx, sy = draw(support)
    qx, qy = draw(query)
    return mt.tasks.Task(sx, sy, qx, qy)


def w1_batch(seed: int, n: int, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [w1_task(rng, dtype) for _ in range(n)]


@pytest.fixture
def torch():
    """torch, or a visible skip when it is not installed (pip install torch to run these tests)."""
    return pytest.importorskip("torch", reason="torch is not installed: DLPack and PyTorch-parity tests skipped")
