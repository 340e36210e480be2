"""Drift tests: is a live window of inputs still drawn from the distribution the model was evaluated on?

Two kinds of signal, each compared between a reference (a sample kept from the evaluated catalogue) and a window
(recent traffic):

* ``embedding``: the encoder's vectors, with a kernel two-sample test (MMD, RBF kernel, permutation p-value). It sees
  any change of distribution in the space the recommendations are made in, new article types included.
* image statistics (brightness, contrast, ...): one Kolmogorov-Smirnov test per 1-D statistic, Bonferroni-corrected
  so that the family of tests keeps the false-alarm rate of a single one. They say *what* changed (a darker studio).

``population_stability_index`` gives the usual effect size for a 1-D statistic next to the tests' p-values, and
``decide`` folds results into one decision with a line of reasons per drifted signal.

Pure numpy/scipy: this runs in the transformer and in the monitoring job, neither of which needs torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Below ~30 samples a window says little (KS critical values are large, MMD permutations are coarse), and a tiny
# window is most often a bug upstream (an empty scrape, a wrong filter), so it is refused rather than tested.
MIN_WINDOW = 30
# PSI takes log(window share / reference share): an empty bin would give log(0). Shares are floored at this value,
# which caps one empty bin's contribution at about share * log(share / 1e-4) (0.1 * 6.9 = 0.69 for decile bins).
PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one test: ``drifted`` is ``p_value <= threshold``, the alpha the test was run at."""

    signal: str
    statistic: float
    p_value: float
    drifted: bool
    threshold: float
    window: int


@dataclass(frozen=True)
class DriftDecision:
    """Drifted if any signal drifted; ``reasons`` has one readable line per drifted signal."""

    drifted: bool
    reasons: list[str]
    results: list[DriftResult]


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _check_sizes(reference_rows: int, window_rows: int, what: str) -> None:
    if window_rows < MIN_WINDOW:
        raise ValueError(f"{what}: the window has {window_rows} samples; at least MIN_WINDOW={MIN_WINDOW} are needed")
    if reference_rows < MIN_WINDOW:
        raise ValueError(f"{what}: the reference has {reference_rows} samples; at least MIN_WINDOW={MIN_WINDOW} are needed")


def _as_1d(values: np.ndarray, name: str, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what}: {name} must be 1-D (one value per sample), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: {name} holds NaN or infinite values")
    return array


def mmd_permutation_test(
    reference: np.ndarray,
    window: np.ndarray,
    permutations: int = 200,
    alpha: float = 0.01,
    seed: int = 0,
    max_reference: int = 500,
) -> DriftResult:
    """Kernel two-sample test on embeddings ([n, d] each, rows typically L2-normalised).

    The statistic is the *unbiased* squared MMD (it can be slightly negative when nothing changed) with the RBF kernel
    ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))``, where ``sigma`` is the median pairwise distance within the
    (subsampled) reference: the median heuristic, computed once per call. The p-value is
    ``(1 + #{permuted statistics >= observed}) / (1 + permutations)``, which makes the test exact at level ``alpha``
    (it never rejects a same-distribution window more often than ``alpha``), up to the resolution ``1/(1+permutations)``.

    The reference is subsampled to ``max_reference`` rows with the seeded generator: the cost grows with the square
    of the pooled size, and a few hundred reference rows already estimate the kernel mean well.
    """
    what = "mmd_permutation_test"
    _check_alpha(alpha)
    if permutations < 1:
        raise ValueError(f"{what}: permutations must be >= 1, got {permutations}")
    if 1.0 / (1 + permutations) > alpha:
        # The smallest reachable p-value is 1/(1+permutations): with fewer permutations the test could never fire.
        raise ValueError(
            f"{what}: with {permutations} permutations the smallest p-value is {1 / (1 + permutations):.3g}, above "
            f"alpha={alpha}; use at least {math.ceil(1 / alpha) - 1} permutations"
        )
    if max_reference < MIN_WINDOW:
        raise ValueError(f"{what}: max_reference must be >= MIN_WINDOW={MIN_WINDOW}, got {max_reference}")
    ref = np.asarray(reference)
    win = np.asarray(window)
    if ref.ndim != 2 or win.ndim != 2:
        raise ValueError(f"{what}: reference and window must be 2-D [n, d], got shapes {ref.shape} and {win.shape}")
    if ref.shape[1] != win.shape[1]:
        raise ValueError(f"{what}: dimension mismatch, reference has d={ref.shape[1]} and window has d={win.shape[1]}")
    _check_sizes(ref.shape[0], win.shape[0], what)
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(win))):
        raise ValueError(f"{what}: the embeddings hold NaN or infinite values")

    rng = np.random.default_rng(seed)
    if ref.shape[0] > max_reference:
        ref = ref[np.sort(rng.choice(ref.shape[0], size=max_reference, replace=False))]
    m, n = ref.shape[0], win.shape[0]
    size = m + n

    # float64 throughout: the statistic is a small difference of large kernel sums.
    pooled = np.vstack([ref, win]).astype(np.float64)
    sq_norms = np.einsum("ij,ij->i", pooled, pooled)
    sq_dist = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (pooled @ pooled.T)
    np.maximum(sq_dist, 0.0, out=sq_dist)  # rounding can leave tiny negatives
    np.fill_diagonal(sq_dist, 0.0)  # so that k(x, x) is exactly 1, which the diagonal correction below relies on

    # Median heuristic on the reference alone, so the bandwidth does not move with the window under test.
    # (sqrt is monotone: the median of squared distances gives the median distance.)
    rows, cols = np.triu_indices(m, k=1)
    sigma_sq = float(np.median(sq_dist[rows, cols]))
    if sigma_sq <= 0.0:
        # More than half the reference pairs coincide (duplicated rows): fall back to the mean positive distance.
        positive = sq_dist[sq_dist > 0.0]
        sigma_sq = float(positive.mean()) if positive.size else 1.0
    kernel = np.exp(sq_dist / (-2.0 * sigma_sq))

    # Column 0 is the observed split (reference first), the others random relabellings of the pooled sample.
    # Every within-group sum then comes from one matrix product instead of one kernel gather per permutation:
    # with a = the 0/1 reference labels and b = 1 - a, S_xx = a'Ka, S_xy = a'K1 - S_xx, S_yy = 1'K1 - 2 a'K1 + S_xx.
    labels = np.zeros(size)
    labels[:m] = 1.0
    shuffled = rng.permuted(np.tile(labels, (permutations, 1)), axis=1)
    assignment = np.vstack([labels[None, :], shuffled]).T  # [size, permutations + 1]
    row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())
    s_xx = np.einsum("ij,ij->j", assignment, kernel @ assignment)
    a_k_1 = assignment.T @ row_sums
    s_xy = a_k_1 - s_xx
    s_yy = total - 2.0 * a_k_1 + s_xx
    # Unbiased estimator: drop the diagonal (k(x, x) = 1, m and n terms) from the within-group sums.
    mmd2 = (s_xx - m) / (m * (m - 1)) + (s_yy - n) / (n * (n - 1)) - 2.0 * s_xy / (m * n)

    observed = float(mmd2[0])
    exceed = int(np.count_nonzero(mmd2[1:] >= observed))
    p_value = (1 + exceed) / (1 + permutations)
    return DriftResult(
        signal="embedding", statistic=observed, p_value=p_value, drifted=p_value <= alpha, threshold=alpha, window=n
    )


def ks_test(reference: np.ndarray, window: np.ndarray, signal: str, alpha: float) -> DriftResult:
    """Two-sample Kolmogorov-Smirnov test of one 1-D statistic (scipy's ``ks_2samp``, two-sided)."""
    what = f"ks_test[{signal}]"
    _check_alpha(alpha)
    ref = _as_1d(reference, "reference", what)
    win = _as_1d(window, "window", what)
    _check_sizes(ref.size, win.size, what)
    result = stats.ks_2samp(ref, win)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    return DriftResult(
        signal=signal, statistic=statistic, p_value=p_value, drifted=p_value <= alpha, threshold=alpha, window=win.size
    )


def population_stability_index(reference: np.ndarray, window: np.ndarray, bins: int = 10) -> float:
    """PSI = sum over bins of (window share - reference share) * ln(window share / reference share).

    Bins are quantiles of the reference (each holds ~1/bins of it; ties in discrete data merge bins), with open outer
    bins so that window values beyond the reference's range still count. Shares are floored at ``PSI_EPSILON``
    (1e-4) so that an empty bin adds a large but finite term instead of infinity. Rule of thumb: < 0.1 stable,
    0.1-0.25 a moderate shift, > 0.25 a major one.
    """
    what = "population_stability_index"
    if bins < 2:
        raise ValueError(f"{what}: bins must be >= 2, got {bins}")
    ref = _as_1d(reference, "reference", what)
    win = _as_1d(window, "window", what)
    _check_sizes(ref.size, win.size, what)
    inner_edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    # side="right": a value equal to an edge goes to the bin above it, the same for both samples.
    ref_share = np.bincount(np.searchsorted(inner_edges, ref, side="right"), minlength=inner_edges.size + 1) / ref.size
    win_share = np.bincount(np.searchsorted(inner_edges, win, side="right"), minlength=inner_edges.size + 1) / win.size
    ref_share = np.maximum(ref_share, PSI_EPSILON)
    win_share = np.maximum(win_share, PSI_EPSILON)
    return float(np.sum((win_share - ref_share) * np.log(win_share / ref_share)))


def image_stat_drift(
    reference: Mapping[str, np.ndarray], window: Mapping[str, np.ndarray], alpha: float = 0.01
) -> list[DriftResult]:
    """One KS test per statistic present in both, each at ``alpha / (number of statistics)`` (Bonferroni).

    The correction keeps the chance that *any* statistic false-alarms on an unchanged window at or below ``alpha``;
    each result's ``threshold`` is the corrected alpha. Results come in sorted statistic-name order.
    """
    _check_alpha(alpha)
    names = sorted(set(reference) & set(window))
    if not names:
        raise ValueError(
            f"image_stat_drift: no statistic in both the reference ({sorted(reference)}) and the window ({sorted(window)})"
        )
    corrected = alpha / len(names)
    return [ks_test(reference[name], window[name], signal=name, alpha=corrected) for name in names]


def decide(results: list[DriftResult]) -> DriftDecision:
    """Drifted if any result drifted; one reason line per drifted signal, in the order given."""
    reasons = [
        f"{r.signal}: statistic {r.statistic:.4g}, p-value {r.p_value:.3g} <= {r.threshold:.3g} (window of {r.window})"
        for r in results
        if r.drifted
    ]
    return DriftDecision(drifted=bool(reasons), reasons=reasons, results=list(results))
