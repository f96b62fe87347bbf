"""Optimizers: SGD, Adam, AdamW (given to a learner as its outer optimizer, or stepped by hand)."""

from ._metatape.optim import Adam, AdamW, Optimizer, SGD

__all__ = ["Adam", "AdamW", "Optimizer", "SGD"]
