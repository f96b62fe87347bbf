"""Few-shot tasks: sinusoids, the market simulator, task families."""

from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray


class Task:
    """
    A few-shot task: support and query sets (fields are NumPy arrays sharing the task's memory), the kind and metadata.
    """

    def __init__(self, support_x: object, support_y: object, query_x: object, query_y: object, kind: str | None = None, num_classes: int = 0) -> None:
        """
        x: (rows, features); y: int64 labels (rows,) for classification (the default for integer y), float targets (rows, outputs) for regression; kind='portfolio' for asset returns. num_classes 0: one more than the largest label.
        """

    @property
    def support_x(self) -> NDArray: ...

    @property
    def support_y(self) -> NDArray: ...

    @property
    def query_x(self) -> NDArray: ...

    @property
    def query_y(self) -> NDArray: ...

    @property
    def kind(self) -> str: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def family(self) -> str: ...

    @property
    def symbols(self) -> list[str]: ...

    @property
    def support_begin_ms(self) -> int: ...

    @property
    def support_end_ms(self) -> int: ...

    @property
    def query_begin_ms(self) -> int: ...

    @property
    def query_end_ms(self) -> int: ...

    @property
    def difficulty(self) -> float: ...

    @property
    def quality(self) -> float: ...

    def __repr__(self) -> str: ...

class Sinusoid:
    """
    The MAML paper's sinusoid regression tasks: y = A sin(x - phi), A ~ U[amplitude), phi ~ U[phase), x ~ U[x_range).
    """

    def __init__(self, seed: int = 0, support_rows: int = 10, query_rows: int = 10, amplitude: tuple[float, float] = (0.1, 5.0), phase: tuple[float, float] = (0.0, 3.141592653589793), x_range: tuple[float, float] = (-5.0, 5.0), dtype: object | None = None) -> None:
        """
        Tasks drawn from Generator(seed): support_rows and query_rows rows each, float32 unless dtype.
        """

    def sample(self) -> Task:
        """One task."""

    def sample_batch(self, n: int) -> list[Task]:
        """A list of n tasks."""

class Market:
    """A market (aligned OHLCV series) with its features computed once."""

    @property
    def rows(self) -> int:
        """Bars on the common axis."""

    @property
    def symbols(self) -> list[str]: ...

    @property
    def series_labels(self) -> list[str]:
        """'BTC/USDT@binance 1h' per series, in index order."""

    def series(self, index: int) -> dict[str, Any]:
        """
        One series as a dict of NumPy columns (time_ms, open, high, low, close, volume) and its metadata; loads into pandas.DataFrame without conversion.
        """

def simulate(seed: int = 1, assets: int = 4, exchanges: int = 2, bars: int = 4000, cross_pairs: bool = False, return_autocorrelation: float = 0.0) -> Market:
    """
    The built-in market simulator (deterministic by seed): regimes, GARCH volatility, jumps, several exchanges with lags and spreads.
    """

def load_market(paths: Sequence[str]) -> Market:
    """Loads OHLCV files (CSV, Freqtrade JSON; .gz) and aligns them on time."""

def family_names() -> list[str]:
    """The task families."""

class TaskDistribution:
    """
    Families x series groups x periods x horizons, split forward in time (train / validation / test).
    """

    def __init__(self, market: Market, families: Sequence[str] = ['price_direction'], support_size: int = 20, query_size: int = 20, horizons: Sequence[int] = [4], embargo: int = 0, stride: int = 1, seed: int = 1, split: str = 'train', train_end: float = 0.6, validation_end: float = 0.8, holdout_symbols: Sequence[str] = []) -> None:
        """
        families: names from family_names(); horizons: label horizons in bars; embargo 0 = the horizon; splits cut the axis at train_end and validation_end (fractions); holdout_symbols appear in the test split only; sample_batch draws from Generator(seed) in `split` unless told otherwise.
        """

    def sample_batch(self, n: int, split: str | None = None) -> list[Task]:
        """n tasks of the split (default: the distribution's)."""

    def feature_dim(self) -> int:
        """The feature count (all families must share it)."""

    def split_rows(self, split: str) -> tuple[int, int]:
        """[begin, end) rows of a split on the common axis."""

    @property
    def fingerprint(self) -> str: ...
