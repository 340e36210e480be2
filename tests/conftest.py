"""Shared fixtures: a tiny generated catalogue and one run of every pipeline stage on it (session-scoped, so the
slow parts run once). Nothing here writes into the repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fashionrec.serving import Deployment

TINY_TYPES = 6
TINY_ITEMS_PER_TYPE = 10


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fashionrec.synth import synth_catalog

    root = tmp_path_factory.mktemp("catalog")
    synth_catalog(root, items_per_type=TINY_ITEMS_PER_TYPE, n_types=TINY_TYPES, seed=11)
    return root


@dataclass(frozen=True)
class StageOutputs:
    valid: Path
    model_dir: Path
    embeddings: Path
    feature_repo: Path
    index_dir: Path
    model_store: Path

    @property
    def deployment(self) -> Deployment:
        return Deployment(self.model_store, self.index_dir, self.feature_repo)


@pytest.fixture(scope="session")
def stages(tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> StageOutputs:
    """Every stage of the path, called as package functions, on the tiny catalogue."""
    from fashionrec.embed import embed_catalog
    from fashionrec.featurestore import apply_and_materialize, stage_repo
    from fashionrec.index import build_index
    from fashionrec.package import build_model_store
    from fashionrec.train import TrainConfig, train
    from fashionrec.validate import validate_catalog, write_outputs

    root = tmp_path_factory.mktemp("stages")
    out = StageOutputs(root / "valid.parquet", root / "model", root / "embeddings.parquet", root / "repo", root / "index", root / "model_store")
    write_outputs(validate_catalog(tiny_catalog), out.valid, root / "quarantine.csv", root / "report.html")
    train(out.valid, out.model_dir, TrainConfig(epochs=10, batch_size=16, holdout_fraction=0.2, seed=1))
    embed_catalog(out.valid, out.model_dir, out.embeddings)
    apply_and_materialize(stage_repo(out.embeddings, out.feature_repo))
    build_index(out.embeddings, out.index_dir)
    build_model_store(out.model_dir, out.model_store)
    return out
