"""Few-shot tasks: the sinusoid benchmark, the market simulator and loaders, task families."""

from typing import Any, Optional, Sequence

from ._metatape.tasks import Market, Sinusoid, Task, TaskDistribution, family_names, load_market, simulate


def family(
    name: str,
    market: Optional[Market] = None,
    *,
    support_size: int = 20,
    query_size: int = 20,
    horizon: int = 4,
    seed: int = 1,
    split: str = "train",
    **kwargs: Any,
) -> TaskDistribution:
    """One task family on a market (default: the built-in simulator with seed 1) as a TaskDistribution.

    ``family("price_direction").sample_batch(8)`` gives 8 tasks of NumPy arrays. Other keyword arguments
    go to TaskDistribution (embargo, stride, train_end, validation_end, holdout_symbols).
    """
    if market is None:
        market = simulate(seed=1)
    return TaskDistribution(
        market,
        families=[name],
        support_size=support_size,
        query_size=query_size,
        horizons=[horizon],
        seed=seed,
        split=split,
        **kwargs,
    )


def sinusoid_batch(n: int, seed: int = 0, support_rows: int = 10, query_rows: int = 10,
                   dtype: str = "float32") -> Sequence[Task]:
    """n sinusoid tasks (the MAML paper's benchmark) from a fresh generator seeded with seed."""
    return Sinusoid(seed=seed, support_rows=support_rows, query_rows=query_rows, dtype=dtype).sample_batch(n)


__all__ = ["Market", "Sinusoid", "Task", "TaskDistribution", "family", "family_names", "load_market",
           "simulate", "sinusoid_batch"]
