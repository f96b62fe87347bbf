"""Models: metatape.nn.MLP (parameters are NumPy views of the C++ tensors)."""

from ._metatape.nn import MLP

__all__ = ["MLP"]
