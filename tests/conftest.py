"""Shared fixtures: a tiny generated catalogue and one run of every pipeline stage on it (session-scoped, so the
slow parts run once). Nothing here writes into the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashionrec.stages import StageOutputs, run_stages

TINY_TYPES = 6
TINY_ITEMS_PER_TYPE = 10


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fashionrec.synth import synth_catalog

    root = tmp_path_factory.mktemp("catalog")
    synth_catalog(root, items_per_type=TINY_ITEMS_PER_TYPE, n_types=TINY_TYPES, seed=11)
    return root


@pytest.fixture(scope="session")
def stages(tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> StageOutputs:
    """Every stage of the path, called as package functions, on the tiny catalogue."""
    from fashionrec.train import TrainConfig

    return run_stages(
        tiny_catalog, tmp_path_factory.mktemp("stages"), TrainConfig(epochs=10, batch_size=16, holdout_fraction=0.2, seed=1)
    )
