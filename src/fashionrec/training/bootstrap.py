"""Confidence intervals for retrieval metrics: a bootstrap over product groups, the unit the holdout draws."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_ROUNDS = 2000
CONFIDENCE = 0.95


def group_bootstrap_interval(
    values: np.ndarray, groups: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, level: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of per-query ``values`` when whole ``groups`` are resampled with replacement.

    Queries of one product group (colour variants, near-duplicate photos) succeed or fail together, so resampling
    queries one by one would understate the luck of the draw; resampling groups keeps them together. The same
    ``values`` and ``seed`` give the same interval. Paired differences (candidate minus production on the same
    queries) give the interval of a gain."""
    if len(values) == 0:
        raise ValueError("no queries to bootstrap")
    _, group_index = np.unique(groups, return_inverse=True)
    sums = np.bincount(group_index, weights=values.astype(np.float64))
    counts = np.bincount(group_index).astype(np.float64)
    drawn = np.random.default_rng(seed).integers(0, len(sums), size=(rounds, len(sums)))
    means = sums[drawn].sum(1) / counts[drawn].sum(1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
