"""Shared fixtures: a tiny generated catalogue and one run of every pipeline stage on it (session-scoped, so the
slow parts run once). Nothing here writes into the repository.

A test that uses ``stages`` (a trained model) is marked ``trained`` here, so that ``make unit`` can leave it out."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from fashionrec.local.stages import StageOutputs, run_stages

TINY_TYPES = 6
TINY_ITEMS_PER_TYPE = 10


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis caches what it learns of the code (constants) under .hypothesis/ of the working directory, the
    # checkout: it goes to a temporary folder instead, removed when the run ends.
    home = Path(tempfile.mkdtemp(prefix="fashionrec-hypothesis-"))
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
    set_hypothesis_home_dir(home)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"stages", "second_version"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.trained)


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fashionrec.data.synth import synth_catalog

    root = tmp_path_factory.mktemp("catalog")
    synth_catalog(root, items_per_type=TINY_ITEMS_PER_TYPE, n_types=TINY_TYPES, seed=11)
    return root


@pytest.fixture(scope="session")
def stages(tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> StageOutputs:
    """Every stage of the path, called as package functions, on the tiny catalogue."""
    from fashionrec.params import TrainConfig

    return run_stages(
        tiny_catalog, tmp_path_factory.mktemp("stages"), TrainConfig(epochs=10, batch_size=16, holdout_fraction=0.2, seed=1)
    )


@pytest.fixture(scope="session")
def second_version(tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> StageOutputs:
    """Another model trained on the same catalogue (other seed, so other weights and another model_version)."""
    from fashionrec.params import TrainConfig

    return run_stages(tiny_catalog, tmp_path_factory.mktemp("v2"), TrainConfig(epochs=2, batch_size=16, seed=7))


@pytest.fixture(scope="session")
def evaluation_dir(stages: StageOutputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evaluate stage's output for the session's model (metrics.json, confusion.json, report.html)."""
    from fashionrec.training.card import ModelCard
    from fashionrec.training.evaluate import evaluate_embeddings, write_evaluation

    card = ModelCard.load(stages.model_dir)
    out = tmp_path_factory.mktemp("evaluation")
    write_evaluation(evaluate_embeddings(stages.valid, stages.embeddings, card.model_version), card, out)
    return out


# No example database either (it would also live under Hypothesis's home): failures are reproduced by their seed.
settings.register_profile("fashionrec", database=None)
settings.load_profile("fashionrec")
