"""The index is chosen and tuned by recall measured on the catalogue's own vectors, not by size alone."""

import json
from pathlib import Path

import numpy as np
import pytest

from fashionrec.retrieval import index as index_module
from fashionrec.retrieval.calibration import HNSW_EF_SWEEP, calibrate, recall_at_k
from fashionrec.retrieval.index import ItemIndex


def clustered(n: int, dim: int = 32, clusters: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_recall_counts_the_true_neighbours_found() -> None:
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    assert recall_at_k(np.array([[3, 2, 1], [4, 9, -1]]), truth) == pytest.approx(4 / 6)


def test_auto_takes_a_kind_that_meets_the_target_and_reports_every_candidate() -> None:
    calibration = calibrate(clustered(4000), target_recall=0.95)
    assert {c.kind for c in calibration.candidates} == {"hnsw", "ivf", "flat"}
    chosen = calibration.chosen
    assert chosen.meets_target and chosen.recall >= 0.95 and chosen.p50_ms > 0
    assert chosen.p50_ms == min(c.p50_ms for c in calibration.candidates if c.meets_target)
    flat = next(c for c in calibration.candidates if c.kind == "flat")
    assert flat.recall == 1.0 and calibration.queries == 400 and calibration.k == 10


def test_a_forced_kind_gets_the_smallest_knob_that_reaches_the_target() -> None:
    vectors = clustered(4000, seed=1)
    chosen = calibrate(vectors, kinds=("hnsw",), target_recall=0.99).chosen
    assert chosen.kind == "hnsw" and chosen.recall >= 0.99
    assert chosen.params["ef_search"] in HNSW_EF_SWEEP
    # An unreachable target sweeps to the end and says it fell short; the best recall is still taken.
    short = calibrate(vectors, kinds=("hnsw",), target_recall=1.01)
    assert not short.chosen.meets_target and short.chosen.params["ef_search"] == HNSW_EF_SWEEP[-1]
    assert short.chosen.recall >= chosen.recall
    ivf = calibrate(vectors, kinds=("ivf",), target_recall=0.9).chosen
    assert ivf.kind == "ivf" and ivf.recall >= 0.9 and 1 <= ivf.params["nprobe"] <= ivf.params["nlist"]


def test_the_built_index_records_what_was_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = clustered(3000, seed=2)
    ids = np.arange(50_000, 53_000)
    small = ItemIndex.build(ids, vectors, "v1", "digest")
    assert small.meta.index_kind == "flat" and small.meta.calibration is None  # below EXACT_BELOW: exact, unmeasured
    monkeypatch.setattr(index_module, "EXACT_BELOW", 1000)
    measured = ItemIndex.build(ids, vectors, "v1", "digest", recall_target=0.97)
    calibration = measured.meta.calibration
    assert calibration is not None and calibration["target_recall"] == 0.97
    assert measured.meta.index_kind == calibration["chosen"]["kind"]
    assert measured.meta.index_params == calibration["chosen"]["params"]
    measured.save(tmp_path)
    assert json.loads((tmp_path / "index.json").read_text())["calibration"]["chosen"]["recall"] >= 0.97
    loaded = ItemIndex.load(tmp_path)
    _, found = loaded.search(vectors[:50], 10)
    exact = np.argsort(-(vectors[:50] @ vectors.T), axis=1)[:, :10] + 50_000
    assert recall_at_k(found, exact) >= 0.9  # the full index searches as calibrated (queries here are in it)
