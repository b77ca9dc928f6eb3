"""Bootstrap intervals: every interval `recover eval`, the selection rule and the probe simulation print."""
from __future__ import annotations

import numpy as np


def bootstrap_ci(x: np.ndarray, n: int = 1000, seed: int = 1234, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean, resampling rows with replacement."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
