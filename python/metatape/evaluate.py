"""The few-shot benchmark harness: metatape.evaluate.benchmark(market, ...) returns plain dicts/lists."""

from ._metatape.evaluate import benchmark

__all__ = ["benchmark"]
