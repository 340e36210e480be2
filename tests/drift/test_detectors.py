"""Drift tests on generated data: the false-alarm rate is what alpha promises, real shifts are found, inputs are checked.

Embeddings are clustered unit vectors (cluster = article type), d=64 to keep the many seeded repetitions fast; the
reference and the window come from the same generator unless a test shifts one of them.
"""

from __future__ import annotations

import numpy as np
import pytest

from fashionrec.drift.detectors import (
    MIN_WINDOW,
    DriftResult,
    decide,
    image_stat_drift,
    ks_test,
    mmd_permutation_test,
    population_stability_index,
)

DIM = 64
N_TYPES = 8
NOISE = 0.35  # norm of the within-type spread, against ~1.4 between type centres


def _centres(seed: int, count: int = N_TYPES, dim: int = DIM) -> np.ndarray:
    centres = np.random.default_rng(seed).normal(size=(count, dim))
    unit: np.ndarray = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    return unit


def _embeddings(rng: np.random.Generator, centres: np.ndarray, n: int, shift: np.ndarray | None = None) -> np.ndarray:
    """n L2-normalised vectors around randomly chosen centres, optionally all moved by ``shift`` before normalising."""
    dim = centres.shape[1]
    x = centres[rng.integers(0, len(centres), n)] + NOISE * rng.normal(size=(n, dim)) / np.sqrt(dim)
    if shift is not None:
        x = x + shift
    unit: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return unit


CATALOGUE = _centres(123)
HELD_OUT_TYPES = _centres(456, count=3)


def test_mmd_false_alarm_rate_is_close_to_nominal() -> None:
    # 200 same-distribution (reference, window) pairs at alpha=0.05. The permutation p-value makes the test exact
    # (size 5/101 = 0.0495 with 100 permutations), so the alarm count is Binomial(200, 0.05): mean 10, sd 3.1.
    # [0.01, 0.10] is [2, 20] alarms, about -2.6 and +3.2 sd: a correct test lands inside it with probability ~0.99,
    # while one that is anti-conservative (say a biased bandwidth or an off-by-one p-value at rate >= 0.12) or
    # never fires does not. Measured: 11/200 = 0.055.
    alarms = 0
    trials = 200
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        reference = _embeddings(rng, CATALOGUE, 500)
        window = _embeddings(rng, CATALOGUE, 200)
        result = mmd_permutation_test(reference, window, permutations=100, alpha=0.05, seed=trial)
        alarms += result.drifted
    rate = alarms / trials
    assert 0.01 <= rate <= 0.10, f"false-alarm rate {rate:.3f} at alpha=0.05"


def test_mmd_detects_held_out_article_types() -> None:
    """A window of article types the reference never had is flagged in every one of 40 windows (measured 40/40)."""
    detected = 0
    for trial in range(40):
        rng = np.random.default_rng(2000 + trial)
        reference = _embeddings(rng, CATALOGUE, 500)
        window = _embeddings(rng, HELD_OUT_TYPES, 200)
        result = mmd_permutation_test(reference, window, permutations=100, alpha=0.01, seed=trial)
        assert result.statistic > 0.0
        detected += result.drifted
    assert detected / 40 >= 0.95, f"held-out types detected in {detected}/40 windows"


def test_mmd_detects_a_small_mean_shift() -> None:
    """The same types, every vector moved by 0.14 along one direction (0.4x the within-type spread) before normalising.

    Measured power at alpha=0.01 with 100 permutations: 0.80 over 200 seeded windows (0.46 at a 0.12 shift, 0.95 at
    0.16); these 40 windows give 33/40 = 0.825. The floor 0.65 sits ~2 binomial sd below 0.80.
    """
    direction = np.random.default_rng(7).normal(size=DIM)
    shift = 0.14 * direction / np.linalg.norm(direction)
    detected = 0
    for trial in range(40):
        rng = np.random.default_rng(3000 + trial)
        reference = _embeddings(rng, CATALOGUE, 500)
        window = _embeddings(rng, CATALOGUE, 200, shift=shift)
        detected += mmd_permutation_test(reference, window, permutations=100, alpha=0.01, seed=trial).drifted
    assert detected / 40 >= 0.65, f"small shift detected in {detected}/40 windows"


def test_mmd_result_fields_seed_and_reference_subsampling() -> None:
    rng = np.random.default_rng(5)
    reference = _embeddings(rng, CATALOGUE, 1500)  # above max_reference: subsampled with the seeded generator
    window = _embeddings(rng, CATALOGUE, 120)
    first = mmd_permutation_test(reference, window, permutations=50, alpha=0.05, seed=3)
    again = mmd_permutation_test(reference, window, permutations=50, alpha=0.05, seed=3)
    assert first == again  # the seed fixes both the subsample and the permutations
    assert first.signal == "embedding"
    assert first.window == 120
    assert first.threshold == 0.05
    # p = (1 + exceedances) / (1 + permutations): a multiple of 1/51 in [1/51, 1].
    exceed = first.p_value * 51 - 1
    assert abs(exceed - round(exceed)) < 1e-9 and 0 <= round(exceed) <= 50
    assert first.drifted == (first.p_value <= 0.05)
    # The smallest p-value reachable is 1/(1+permutations): a clear shift gets exactly that.
    far = mmd_permutation_test(reference, _embeddings(rng, HELD_OUT_TYPES, 120), permutations=50, alpha=0.05, seed=3)
    assert far.p_value == pytest.approx(1 / 51) and far.drifted
    # Too few permutations for alpha (smallest p-value 1/51 > 0.01) would make a test that never fires: refused.
    with pytest.raises(ValueError, match="at least 99 permutations"):
        mmd_permutation_test(reference, window, permutations=50, alpha=0.01)


def _image_stats(rng: np.random.Generator, n: int, brightness_shift: float = 0.0) -> dict[str, np.ndarray]:
    """Per-image statistics as a monitor would compute them: mean grey level, its std, mean saturation."""
    return {
        "brightness": np.clip(rng.normal(140.0, 25.0, n) + brightness_shift, 0.0, 255.0),
        "contrast": np.clip(rng.normal(55.0, 12.0, n), 0.0, None),
        "saturation": rng.beta(2.0, 5.0, n),
    }


def test_image_stat_drift_flags_only_the_shifted_statistic() -> None:
    rng = np.random.default_rng(11)
    reference = _image_stats(rng, 2000)
    results = image_stat_drift(reference, _image_stats(rng, 200, brightness_shift=30.0), alpha=0.01)
    by_name = {r.signal: r for r in results}
    assert [r.signal for r in results] == ["brightness", "contrast", "saturation"]
    assert by_name["brightness"].drifted and by_name["brightness"].p_value < 1e-6
    assert not by_name["contrast"].drifted and not by_name["saturation"].drifted


def test_image_stat_drift_false_alarms_stay_rare() -> None:
    """Unshifted windows: any of the three statistics fires in at most 10 of 100 windows (Bonferroni bounds the
    family's rate by 0.01; measured 1/100)."""
    reference = _image_stats(np.random.default_rng(12), 2000)
    quiet = 0
    for trial in range(100):
        results = image_stat_drift(reference, _image_stats(np.random.default_rng(4000 + trial), 200), alpha=0.01)
        quiet += not any(r.drifted for r in results)
    assert quiet >= 90, f"no alarm in only {quiet}/100 unshifted windows"


def test_bonferroni_threshold_is_reported_and_unshared_statistics_are_skipped() -> None:
    rng = np.random.default_rng(13)
    reference = _image_stats(rng, 500) | {"only_in_reference": rng.normal(size=500)}
    window = _image_stats(rng, 100) | {"only_in_window": rng.normal(size=100)}
    results = image_stat_drift(reference, window, alpha=0.03)
    assert [r.signal for r in results] == ["brightness", "contrast", "saturation"]
    assert all(r.threshold == pytest.approx(0.01) for r in results)
    assert all(r.window == 100 for r in results)
    # The corrected threshold is the one applied, to an unchanged p-value.
    assert all(r.drifted == (r.p_value <= r.threshold) for r in results)
    single = ks_test(reference["brightness"], window["brightness"], signal="brightness", alpha=0.03)
    assert single.p_value == pytest.approx(results[0].p_value)
    with pytest.raises(ValueError, match="no statistic in both"):
        image_stat_drift({"a": rng.normal(size=100)}, {"b": rng.normal(size=100)})


def test_ks_test_result() -> None:
    rng = np.random.default_rng(14)
    same = ks_test(rng.normal(size=1000), rng.normal(size=300), signal="sharpness", alpha=0.01)
    moved = ks_test(rng.normal(size=1000), rng.normal(loc=0.5, size=300), signal="sharpness", alpha=0.01)
    assert same.signal == "sharpness" and same.window == 300 and same.threshold == 0.01
    assert not same.drifted and same.p_value > 0.01
    assert moved.drifted and moved.statistic > same.statistic


def test_psi_separates_same_from_shifted() -> None:
    rng = np.random.default_rng(15)
    reference = _image_stats(rng, 5000)["brightness"]
    same = population_stability_index(reference, _image_stats(rng, 1000)["brightness"])
    shifted = population_stability_index(reference, _image_stats(rng, 1000, brightness_shift=30.0)["brightness"])
    assert 0.0 <= same < 0.1
    assert shifted > 0.25
    assert population_stability_index(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_finite_when_bins_are_empty() -> None:
    rng = np.random.default_rng(16)
    reference = rng.normal(size=1000)
    beyond = reference.max() + 1.0 + rng.random(100)  # every window value in the open top bin, nine bins empty
    psi = population_stability_index(reference, beyond)
    assert np.isfinite(psi) and psi > 1.0


def test_decide_reasons_name_each_drifted_signal() -> None:
    results = [
        DriftResult(signal="embedding", statistic=0.0123, p_value=0.005, drifted=True, threshold=0.01, window=200),
        DriftResult(signal="brightness", statistic=0.31, p_value=0.2, drifted=False, threshold=0.0033, window=200),
        DriftResult(signal="contrast", statistic=0.4, p_value=1e-9, drifted=True, threshold=0.0033, window=200),
    ]
    decision = decide(results)
    assert decision.drifted
    assert decision.results == results
    assert len(decision.reasons) == 2
    assert decision.reasons[0].startswith("embedding:") and "0.0123" in decision.reasons[0] and "0.005" in decision.reasons[0]
    assert decision.reasons[1].startswith("contrast:") and "1e-09" in decision.reasons[1]
    quiet = decide([results[1]])
    assert not quiet.drifted and quiet.reasons == []
    assert not decide([]).drifted


def test_small_windows_are_refused() -> None:
    rng = np.random.default_rng(17)
    reference = _embeddings(rng, CATALOGUE, 500)
    with pytest.raises(ValueError, match="window has 29 samples"):
        mmd_permutation_test(reference, _embeddings(rng, CATALOGUE, MIN_WINDOW - 1))
    mmd_permutation_test(reference, _embeddings(rng, CATALOGUE, MIN_WINDOW), permutations=10, alpha=0.1)  # the minimum passes
    with pytest.raises(ValueError, match="window has 10 samples"):
        ks_test(rng.normal(size=500), rng.normal(size=10), signal="brightness", alpha=0.01)
    with pytest.raises(ValueError, match="window has 5 samples"):
        population_stability_index(rng.normal(size=500), rng.normal(size=5))
    with pytest.raises(ValueError, match="window has 20 samples"):
        image_stat_drift(_image_stats(rng, 500), _image_stats(rng, 20))


def test_mismatched_or_malformed_inputs_are_refused() -> None:
    rng = np.random.default_rng(18)
    reference = _embeddings(rng, CATALOGUE, 200)
    with pytest.raises(ValueError, match=r"dimension mismatch.*d=64.*d=32"):
        mmd_permutation_test(reference, _embeddings(rng, _centres(1, dim=32), 100))
    with pytest.raises(ValueError, match="2-D"):
        mmd_permutation_test(reference, reference[:, 0])
    with pytest.raises(ValueError, match="NaN"):
        mmd_permutation_test(reference, np.full((100, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        ks_test(rng.normal(size=(100, 2)), rng.normal(size=100), signal="brightness", alpha=0.01)
    with pytest.raises(ValueError, match="alpha"):
        ks_test(rng.normal(size=100), rng.normal(size=100), signal="brightness", alpha=1.5)
