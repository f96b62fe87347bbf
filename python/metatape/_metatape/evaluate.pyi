"""The few-shot benchmark harness, returning plain dicts."""

from collections.abc import Sequence
from typing import Any


def benchmark(market: object, families: Sequence[str] = ['price_direction'], learners: Sequence[str] = ['maml', 'meta-sgd', 'protonet'], shots: Sequence[int] = [1, 5, 10], steps: Sequence[int] = [1, 5, 10], episodes: int = 600, meta_steps: int = 200, meta_batch: int = 8, runs: int = 1, seed: int = 1, horizons: Sequence[int] = [4], query_size: int = 20, hidden: Sequence[int] = [64, 64], validate_every: int = 100, selection_episodes: int = 100, walk_forward: bool = True) -> dict[str, Any]:
    """
    The few-shot benchmark on a market (docs/evaluation.md): every learner is meta-trained per family, then it and the baselines are scored on the same test episodes. Returns the report as plain dicts and lists (report['verdicts'], report['cells'], report['comparisons'] load into pandas.DataFrame as they are). Releases the GIL; can take minutes with the defaults.
    """
