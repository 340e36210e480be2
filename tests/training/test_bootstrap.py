import numpy as np
import pandas as pd
import pytest

from fashionrec.training.bootstrap import group_bootstrap_interval
from fashionrec.training.evaluate import class_weighted_precision
from fashionrec.training.gate import paired_gain


def test_the_interval_holds_the_mean_and_a_seed_fixes_it() -> None:
    rng = np.random.default_rng(1)
    values, groups = rng.random(300), rng.integers(0, 60, 300)
    low, high = group_bootstrap_interval(values, groups)
    assert low < values.mean() < high
    assert group_bootstrap_interval(values, groups) == (low, high)
    with pytest.raises(ValueError, match="no queries"):
        group_bootstrap_interval(np.array([]), np.array([]))


def test_queries_that_succeed_together_widen_the_interval() -> None:
    """Ten queries per group, all right or all wrong: the draw has 40 independent units, not 400."""
    outcome = np.random.default_rng(2).integers(0, 2, 40).astype(float)
    values, groups = np.repeat(outcome, 10), np.repeat(np.arange(40), 10)

    def width(interval: tuple[float, float]) -> float:
        return interval[1] - interval[0]

    by_group, by_query = width(group_bootstrap_interval(values, groups)), width(group_bootstrap_interval(values, np.arange(400)))
    assert by_group > 2.5 * by_query  # about sqrt(10) wider


def test_the_95_percent_interval_covers_the_true_mean_about_95_times_in_100() -> None:
    """Holdouts drawn from a population of groups with their own success rates: coverage near the stated level."""
    rng = np.random.default_rng(3)
    rates = rng.beta(4, 1.5, 5000)  # each product group's own precision
    sizes = rng.integers(1, 12, 5000)
    truth = float((rates * sizes).sum() / sizes.sum())  # the catalogue's precision, per query
    covered = 0
    for _ in range(200):
        drawn = rng.choice(5000, 150, replace=False)
        groups = np.repeat(drawn, sizes[drawn])
        values = (rng.random(len(groups)) < rates[groups]).astype(float)
        low, high = group_bootstrap_interval(values, groups, rounds=400, seed=int(rng.integers(1 << 30)))
        covered += low <= truth <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_a_paired_gain_is_computed_on_the_same_queries() -> None:
    queries = pd.DataFrame({"item_id": [1, 2, 3, 4], "group": [10, 10, 20, 30], "precision_at_5": [0.2, 0.4, 0.6, 0.8]})
    better = queries.assign(precision_at_5=queries["precision_at_5"] + 0.2)
    gain = paired_gain(better, queries)
    assert (gain.queries, gain.groups) == (4, 3)
    assert gain.mean == pytest.approx(0.2) and gain.low == pytest.approx(0.2) and gain.high == pytest.approx(0.2)
    assert "0 is inside" not in gain.sentence()
    assert "0 is inside" in paired_gain(queries, queries).sentence()
    with pytest.raises(ValueError, match="not of the same queries"):
        paired_gain(queries, queries.iloc[:3])


def test_class_weights_undo_a_draw_that_over_represents_an_easy_class() -> None:
    """Catalogue: 20% easy (always right), 80% hard (right 1 in 4). A draw with half its queries easy over-states the
    shop's precision; weighting each class by its catalogue share gives the shop's own mean back."""
    catalogue = np.array(["easy"] * 20 + ["hard"] * 80)
    query_labels = np.array(["easy"] * 10 + ["hard"] * 10)
    per_query = np.array([1.0] * 10 + [1.0, 0, 0, 0] * 2 + [1.0, 0])
    assert per_query.mean() == pytest.approx(0.65)
    assert class_weighted_precision(per_query, query_labels, catalogue) == pytest.approx(0.2 * 1.0 + 0.8 * 0.3)
    # queries in the catalogue's own proportions: the plain mean
    assert class_weighted_precision(per_query[8:], query_labels[8:], np.array(["easy"] * 2 + ["hard"] * 10)) == (
        pytest.approx(per_query[8:].mean())
    )
    # a class without queries does not count: its weight goes to the others
    with_unqueried = np.concatenate([catalogue, ["never asked"] * 100])
    assert class_weighted_precision(per_query, query_labels, with_unqueried) == pytest.approx(0.44)
