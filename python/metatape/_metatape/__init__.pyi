"""
metatape: tape-based autodiff with exact higher-order gradients and few-shot meta-learning.
"""

from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray

from metatape._metatape import (
    evaluate as evaluate,
    nn as nn,
    optim as optim,
    tasks as tasks
)


class Error(RuntimeError):
    """
    An error from the C++ library; the message names the problem and the fix.
    """

class Generator:
    """A deterministic random generator (same seed, same numbers)."""

    def __init__(self, seed: int = 24301) -> None:
        """A generator seeded with seed."""

    def uniform(self) -> float:
        """A number in [0, 1)."""

    def normal(self) -> float:
        """A standard normal number."""

    def split(self) -> Generator:
        """An independent generator derived from this one (one draw)."""

class Tensor:
    """
    A tensor: shared storage (CPU or CUDA), shape (rank <= 4), dtype (float32, float64, int64) and autograd state. Copying a Tensor copies the handle, not the values.
    """

    def __init__(self, data: object, dtype: object | None = None, requires_grad: bool = False) -> None:
        """
        Wraps an array-like: a C-contiguous float32/float64/int64 NumPy array (or any DLPack / buffer object) is shared without a copy; anything else is converted (a copy).
        """

    @property
    def shape(self) -> tuple:
        """The shape, as a tuple."""

    @property
    def ndim(self) -> int:
        """The rank."""

    @property
    def dtype(self) -> str:
        """'float32', 'float64' or 'int64'."""

    @property
    def device(self) -> str:
        """'cpu' or 'cuda'."""

    @property
    def name(self) -> str:
        """The tensor's name (used in error messages)."""

    @name.setter
    def name(self, arg: str, /) -> None: ...

    def numel(self) -> int:
        """The number of elements."""

    def __len__(self) -> int:
        """The size of the first dimension."""

    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow to this tensor."""

    @property
    def is_leaf(self) -> bool:
        """True unless a recorded op produced it."""

    @property
    def grad(self) -> Tensor | None:
        """The gradient accumulated by backward() (None when there is none)."""

    @grad.setter
    def grad(self, value: Tensor | None) -> None: ...

    def zero_grad(self) -> None:
        """Clears the accumulated gradient."""

    def backward(self, grad_output: Tensor | None = None, create_graph: bool = False) -> None:
        """
        Accumulates d(self)/d(leaf) into the .grad of every leaf requiring grad (self must be a scalar unless grad_output is given).
        """

    def item(self) -> float:
        """The value of a one-element tensor."""

    def numpy(self) -> NDArray:
        """A NumPy array sharing this tensor's memory (CPU tensors; no copy)."""

    def __array__(self, dtype: object | None = None, copy: object | None = None) -> NDArray:
        """
        numpy.asarray(tensor): the shared array (a converted copy when dtype or copy=True asks for one).
        """

    def tolist(self) -> Any:
        """The values as nested lists (a float for a rank-0 tensor)."""

    def __dlpack__(self, **kwargs) -> object:
        """
        A DLPack capsule over this tensor's memory (no copy); torch.from_dlpack(t) shares it.
        """

    def __dlpack_device__(self) -> tuple:
        """(device type, device id) as DLPack numbers: (1, 0) CPU, (2, 0) CUDA."""

    def detach(self) -> Tensor:
        """A tensor sharing the storage, without autograd history."""

    def copy(self) -> Tensor:
        """A deep copy without autograd history."""

    def clone(self) -> Tensor:
        """A deep copy without autograd history (same as copy())."""

    def to(self, target: str) -> Tensor:
        """
        A copy converted to a dtype ('float64', ...) or moved to a device ('cpu', 'cuda').
        """

    def __repr__(self) -> str:
        """Shape, dtype and the values."""

    def __add__(self, arg: object, /) -> Tensor: ...

    def __radd__(self, arg: object, /) -> Tensor: ...

    def __sub__(self, arg: object, /) -> Tensor: ...

    def __rsub__(self, arg: object, /) -> Tensor: ...

    def __mul__(self, arg: object, /) -> Tensor: ...

    def __rmul__(self, arg: object, /) -> Tensor: ...

    def __truediv__(self, arg: object, /) -> Tensor: ...

    def __rtruediv__(self, arg: object, /) -> Tensor: ...

    def __matmul__(self, arg: object, /) -> Tensor: ...

    def __rmatmul__(self, arg: object, /) -> Tensor: ...

    def __neg__(self) -> Tensor: ...

    def __pow__(self, arg: float, /) -> Tensor: ...

    def __abs__(self) -> Tensor: ...

    def sum(self, axis: int | None = None, keepdim: bool = False) -> Tensor:
        """The sum over all elements or one axis."""

    def mean(self, axis: int | None = None, keepdim: bool = False) -> Tensor:
        """The mean over all elements or one axis."""

    def reshape(self, shape: Sequence[int]) -> Tensor:
        """The same values in a new shape (shares storage)."""

    @property
    def T(self) -> Tensor:
        """The last two dimensions swapped."""

    def exp(self) -> Tensor:
        """e^self (metatape.exp)."""

    def log(self) -> Tensor:
        """The natural logarithm (metatape.log)."""

    def relu(self) -> Tensor:
        """max(self, 0) (metatape.relu)."""

    def tanh(self) -> Tensor:
        """tanh(self) (metatape.tanh)."""

    def sigmoid(self) -> Tensor:
        """1 / (1 + e^-self) (metatape.sigmoid)."""

def tensor(data: object, dtype: object | None = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (an array-like or a Tensor)."""

def from_numpy(array: NDArray) -> Tensor:
    """
    A tensor sharing the NumPy array's memory (no copy; C-contiguous float32, float64 or int64). Raises naming the problem otherwise.
    """

def from_dlpack(obj: NDArray) -> Tensor:
    """
    A tensor sharing the memory of any object with __dlpack__ (torch, JAX, NumPy, CuPy; no copy).
    """

def zeros(shape: Sequence[int], dtype: object | None = None) -> Tensor:
    """A tensor of zeros (float32 unless dtype is given)."""

def ones(shape: Sequence[int], dtype: object | None = None) -> Tensor:
    """A tensor of ones."""

def full(shape: Sequence[int], value: float, dtype: object | None = None) -> Tensor:
    """A tensor filled with value."""

def arange(n: int, dtype: object | None = None) -> Tensor:
    """0, 1, ..., n - 1."""

def normal(shape: Sequence[int], mean: float, std: float, generator: Generator, dtype: object | None = None) -> Tensor:
    """Normal random values from `generator`."""

def uniform(shape: Sequence[int], low: float, high: float, generator: Generator, dtype: object | None = None) -> Tensor:
    """Uniform random values in [low, high) from `generator`."""

def indices(values: Sequence[int]) -> Tensor:
    """An int64 rank-1 tensor (class labels, row indices)."""

def add(a: Tensor, b: Tensor) -> Tensor:
    """a + b (broadcasting)."""

def sub(a: Tensor, b: Tensor) -> Tensor:
    """a - b (broadcasting)."""

def mul(a: Tensor, b: Tensor) -> Tensor:
    """a * b (broadcasting)."""

def div(a: Tensor, b: Tensor) -> Tensor:
    """a / b (broadcasting)."""

def affine(x: Tensor, alpha: float, beta: float) -> Tensor:
    """alpha * x + beta."""

def neg(x: Tensor) -> Tensor:
    """-x."""

def exp(x: Tensor) -> Tensor:
    """e^x."""

def log(x: Tensor) -> Tensor:
    """The natural logarithm."""

def sqrt(x: Tensor) -> Tensor:
    """The square root."""

def square(x: Tensor) -> Tensor:
    """x^2."""

def abs(x: Tensor) -> Tensor:
    """|x|."""

def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""

def tanh(x: Tensor) -> Tensor:
    """tanh(x)."""

def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x)."""

def softplus(x: Tensor) -> Tensor:
    """log(1 + e^x)."""

def gelu(x: Tensor) -> Tensor:
    """GELU (tanh approximation)."""

def transpose(x: Tensor) -> Tensor:
    """The last two dimensions swapped."""

def softmax(x: Tensor) -> Tensor:
    """Softmax over the last axis."""

def log_softmax(x: Tensor) -> Tensor:
    """Log-softmax over the last axis."""

def pow(x: Tensor, p: float) -> Tensor:
    """x^p."""

def leaky_relu(x: Tensor, slope: float = 0.01) -> Tensor:
    """x if x > 0 else slope * x."""

def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """ELU."""

def clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """x limited to [lo, hi]."""

def where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """a where mask is nonzero, else b (mask: same dtype, no gradient)."""

def dropout(x: Tensor, p: float, generator: Generator, training: bool = True) -> Tensor:
    """Inverted dropout."""

def sum(x: Tensor, axis: int | None = None, keepdim: bool = False) -> Tensor:
    """Sum over all elements or one axis."""

def mean(x: Tensor, axis: int | None = None, keepdim: bool = False) -> Tensor:
    """Mean over all elements or one axis."""

def max(x: Tensor, axis: int, keepdim: bool = False) -> Tensor:
    """Maximum along an axis (gradient to the first maximum)."""

def sum_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Sums x down to a shape that broadcasts to x's."""

def expand(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Broadcasts x to shape."""

def gemm(a: Tensor, trans_a: bool, b: Tensor, trans_b: bool) -> Tensor:
    """op(a) @ op(b) over the last two dims (rank 2 or 3)."""

def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b."""

def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias as one op."""

def pairwise_sqdist(a: Tensor, b: Tensor) -> Tensor:
    """out[i, j] = |a_i - b_j|^2."""

def cosine_similarity(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """out[i, j] = <a_i, b_j> / (|a_i| |b_j|)."""

def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    """The same values in a new shape (shares storage)."""

def concat(parts: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Concatenation along an axis."""

def slice(x: Tensor, axis: int, start: int, end: int) -> Tensor:
    """x[start:end] along an axis."""

def index_select(x: Tensor, index: Tensor) -> Tensor:
    """Rows of axis 0 (index: int64)."""

def index_add(src: Tensor, index: Tensor, rows: int) -> Tensor:
    """The adjoint of index_select."""

def pad_axis(x: Tensor, full: Sequence[int], axis: int, start: int) -> Tensor:
    """The adjoint of slice."""

def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """
    Mean cross-entropy of logits (rows, classes) against int64 labels (rows).
    """

def nll(log_probs: Tensor, labels: Tensor) -> Tensor:
    """Mean negative log-likelihood."""

def mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error."""

def one_hot(labels: Tensor, classes: int, dtype: object | None = None) -> Tensor:
    """One-hot rows (not differentiable)."""

def argmax(x: Tensor, axis: int) -> Tensor:
    """Indices of the maxima (int64; not differentiable)."""

def greater(a: Tensor, b: Tensor) -> Tensor:
    """1 where a > b else 0 (not differentiable)."""

def grad(outputs: object, inputs: object, grad_outputs: object | None = None, create_graph: bool = False, retain_graph: bool | None = None, allow_unused: bool = False) -> list[Tensor]:
    """
    d(sum_k <grad_outputs[k], outputs[k]>)/d(inputs[j]) for every input j, as a list. create_graph records the backward so it can be differentiated again; retain_graph (default: create_graph) keeps the graph for another pass; allow_unused gives zeros (not an error) for an input the outputs do not reach.
    """

def backward(output: Tensor, grad_output: Tensor | None = None, create_graph: bool = False) -> None:
    """
    Accumulates into .grad of every leaf requiring grad reached from output.
    """

def hvp(f: object, inputs: object, vectors: object) -> list[Tensor]:
    """
    Hessian-vector products H v of a scalar: f is the scalar Tensor (recorded from inputs) or a callable f(*inputs) returning it; one vector per input. Exact (double backward).
    """

class GradMode:
    """
    Context manager that sets grad mode on this thread (no_grad, enable_grad).
    """

    def __enter__(self) -> None: ...

    def __exit__(self, *args) -> bool: ...

class DetectAnomaly:
    """Context manager for anomaly detection on this thread."""

    def __enter__(self) -> None: ...

    def __exit__(self, *args) -> bool: ...

def no_grad() -> GradMode:
    """
    with metatape.no_grad(): nothing inside is recorded on this thread's tape.
    """

def enable_grad() -> GradMode:
    """with metatape.enable_grad(): recording on."""

def detect_anomaly(enabled: bool = True) -> DetectAnomaly:
    """
    with metatape.detect_anomaly(): every recorded op's output and gradient is checked for NaN/Inf and the first offending op is named in the exception (slow: a debugging mode).
    """

def is_grad_enabled() -> bool:
    """Whether ops are recorded on this thread."""

def tape_size(compact: bool = False) -> int:
    """Nodes alive on this thread's tape."""

class TapeScope:
    """
    with metatape.scope(): releases everything recorded inside on exit (values stay valid, gradients can no longer flow through them).
    """

    def __enter__(self) -> None: ...

    def __exit__(self, *args) -> bool: ...

def scope() -> TapeScope:
    """A TapeScope context manager."""

class Adapted:
    """A model adapted to one support set (no autograd history)."""

    def parameters(self) -> dict[str, NDArray]:
        """Name -> NumPy array."""

    def named_tensors(self) -> dict[str, Tensor]:
        """Name -> Tensor."""

class Learner:
    """
    A meta-learner (MAML, MetaSGD, Reptile, ANIL, ProtoNet, MatchingNet). It trains the model's own parameter arrays in place. Calls release the GIL.
    """

    @property
    def name(self) -> str:
        """'maml', 'fomaml', 'maml++', ..."""

    @property
    def meta_steps(self) -> int:
        """Meta-steps completed (restored by load())."""

    @property
    def default_adapt_steps(self) -> int:
        """The inner steps adapt() uses when steps < 0 (0 for metric learners)."""

    def config(self) -> str:
        """The options as JSON text."""

    def meta_parameters(self) -> dict[str, NDArray]:
        """
        Name -> NumPy view of everything the outer optimizer updates (the model's parameters first, then learned inner rates or alphas).
        """

    def meta_train_step(self, batch: object, metrics: bool = True) -> dict[str, Any]:
        """
        One outer update from a list of Tasks; returns the metrics dict (query_loss, support_loss, query_accuracy, grad_norm, step).
        """

    def meta_gradient(self, batch: object, metrics: bool = True) -> tuple[dict[str, NDArray], dict[str, Any]]:
        """
        The outer gradient of one meta-step, not applied: (name -> NumPy array, metrics dict).
        """

    def adapt(self, support_x: object, support_y: object, steps: int = -1, kind: str | None = None, num_classes: int = 0) -> Adapted:
        """
        Adapts to a support set (int64 labels: classification; floats: regression, or kind='portfolio'); steps < 0: the learner's default. Returns the Adapted model and remembers it for predict().
        """

    def predict(self, x: object, adapted: Adapted | None = None) -> NDArray:
        """
        The adapted model's outputs on x as a NumPy array: regression outputs, classification logits (log-probabilities for MatchingNet), portfolio scores.
        """

    def evaluate(self, task: tasks.Task, steps: Sequence[int]) -> list[dict[str, Any]]:
        """
        Adapts on the task's support set with each number of steps and scores the query set: a list of {'steps', 'loss', 'accuracy'} dicts.
        """

    def save(self, path: str) -> None:
        """
        Writes a checkpoint (meta-parameters, optimizer state, step, options; loadable by load() and by metatape.InferenceModel / the C API).
        """

    def load(self, path: str) -> None:
        """
        Restores a checkpoint written by the same learner kind with the same parameter layout.
        """

    def __repr__(self) -> str: ...

def MAML(model: nn.MLP, lr: float = 0.01, first_order: bool = False, steps: int = 1, optimizer: object | None = None, multi_step_loss: bool = False, msl_anneal_steps: int = 1000, learn_inner_lrs: bool = False, first_order_until: int = 0, recompute_inner: bool = False, fused: bool = True) -> Learner:
    """
    MAML (second order unless first_order) with the MAML++ options multi_step_loss, learn_inner_lrs and first_order_until. lr: inner learning rate; steps: inner steps; optimizer: the outer optimizer (default metatape.optim.Adam(lr=1e-3)).
    """

def MetaSGD(model: nn.MLP, lr: float = 0.01, steps: int = 1, alpha_l2: float = 0.0, first_order: bool = False, optimizer: object | None = None, recompute_inner: bool = False, fused: bool = True) -> Learner:
    """Meta-SGD: learned per-parameter inner rates, initialised to lr."""

def Reptile(model: nn.MLP, lr: float = 0.01, steps: int = 5, epsilon: float = 1.0, decay_steps: int = 0, inner_adam: bool = False, use_query_in_inner: bool = False, optimizer: object | None = None) -> Learner:
    """
    Reptile: k inner steps, then theta += epsilon_t (mean phi - theta) (outer optimizer default: SGD).
    """

def ANIL(model: nn.MLP, lr: float = 0.01, steps: int = 1, first_order: bool = False, optimizer: object | None = None, recompute_inner: bool = False, fused: bool = True) -> Learner:
    """ANIL: only the last layer adapts in the inner loop."""

def ProtoNet(model: nn.MLP, distance: str = 'sqeuclidean', cosine_scale: float = 10.0, optimizer: object | None = None) -> Learner:
    """Prototypical Networks (the model is the embedding)."""

def MatchingNet(model: nn.MLP, cosine_scale: float = 1.0, optimizer: object | None = None) -> Learner:
    """Matching Networks (the model is the embedding)."""

def learner_names() -> list[str]:
    """The registry's learner kinds."""

class InferenceAdapted:
    """A support set's adaptation by an InferenceModel."""

    @property
    def support_rows(self) -> int: ...

    @property
    def steps(self) -> int: ...

    @property
    def bytes(self) -> int: ...

class InferenceModel:
    """
    A meta-trained checkpoint (from `metatape train`, learner.save() or the C API) loaded for adaptation and prediction, float32. Thread-safe after loading.
    """

    @staticmethod
    def load(path: str) -> InferenceModel:
        """Loads a checkpoint; raises naming the file and the problem."""

    @property
    def learner(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def in_features(self) -> int: ...

    @property
    def out_features(self) -> int: ...

    @property
    def task_kind(self) -> str: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def default_steps(self) -> int: ...

    @property
    def step(self) -> int: ...

    def set_task(self, kind: str, num_classes: int = 0) -> None:
        """
        Sets the task kind ('regression', 'classification', 'portfolio'); refuses one that contradicts the checkpoint's recorded kind.
        """

    def adapt(self, x: object, y: object, steps: int = -1) -> InferenceAdapted:
        """
        Adapts to a support set: x (rows, features) float32, y (rows, outputs) or class labels (rows,).
        """

    def predict(self, adapted: InferenceAdapted, x: object) -> NDArray:
        """Predictions (rows, columns) as a NumPy array."""

def cuda_built() -> bool:
    """
    Whether this build has the CUDA backend (tensors can then move with t.to('cuda')).
    """
