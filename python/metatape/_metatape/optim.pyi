"""Optimizers: SGD, Adam, AdamW."""



class Optimizer:
    """
    An optimizer (SGD, Adam, AdamW). Given to a learner, the learner gets a fresh optimizer with these options; step() updates tensors in place.
    """

    @property
    def kind(self) -> str:
        """'sgd', 'adam' or 'adamw'."""

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""

    @property
    def steps_taken(self) -> int:
        """Updates applied by step()."""

    def step(self, params: object, grads: object) -> bool:
        """
        Applies one update to params (an MLP or a list of Tensors) from grads (same order); returns True when an update was applied (gradient accumulation may defer it).
        """

def SGD(lr: float = 0.001, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0, clip_norm: float = 0.0) -> Optimizer:
    """SGD with optional momentum / Nesterov, L2 and clipping by global norm."""

def Adam(lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.0, clip_norm: float = 0.0) -> Optimizer:
    """Adam."""

def AdamW(lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-08, weight_decay: float = 0.01, clip_norm: float = 0.0) -> Optimizer:
    """AdamW (decoupled weight decay)."""
