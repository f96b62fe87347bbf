"""Models: MLP."""

from collections.abc import Sequence

from numpy.typing import NDArray

import metatape._metatape


class MLP:
    """
    A multi-layer perceptron: sizes [in, hidden..., out], the activation after every layer but the last. Parameters 'layer<i>.weight' (out, in) and 'layer<i>.bias' (out).
    """

    def __init__(self, sizes: Sequence[int], activation: str = 'relu', dtype: object | None = None, seed: int = 0, init: str = 'uniform_fan_in') -> None:
        """
        sizes: [in, hidden..., out]; activation: relu, tanh, sigmoid, gelu, leaky_relu, elu or none; dtype: 'float32' (default) or 'float64'; parameters drawn from Generator(seed) with `init` (uniform_fan_in is PyTorch's Linear default).
        """

    def parameters(self) -> dict[str, NDArray]:
        """
        Name -> NumPy array sharing the parameter's memory (writes change the model; a learner built on this model trains these very arrays).
        """

    def named_tensors(self) -> dict[str, metatape._metatape.Tensor]:
        """Name -> Tensor (the leaves, requiring grad)."""

    def tensors(self) -> list[metatape._metatape.Tensor]:
        """The parameter Tensors in order."""

    def names(self) -> list[str]:
        """The parameter names in order."""

    def load_parameters(self, params: object) -> None:
        """Copies values in (a dict name -> array or a list in order)."""

    def forward(self, x: object, params: object | None = None) -> metatape._metatape.Tensor:
        """
        The output (rows, out) as a Tensor, differentiable; params: other tensors (e.g. adapted) for the same names, as a dict or a list in order.
        """

    def __call__(self, x: object, params: object | None = None) -> metatape._metatape.Tensor: ...

    @property
    def in_features(self) -> int:
        """Input width."""

    @property
    def out_features(self) -> int:
        """Output width."""

    @property
    def dtype(self) -> str:
        """'float32' or 'float64'."""

    def describe(self) -> str:
        """e.g. 'mlp 1-40-40-1 relu f32'."""

    def __repr__(self) -> str: ...
