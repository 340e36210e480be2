"""Every stage of the training path called in-process, in pipeline order (for tests and benchmarks; the pipeline
itself runs them as KFP components)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fashionrec.config import EMBEDDINGS_FILE
from fashionrec.data.validation.quarantine import validate_catalog
from fashionrec.data.validation.report import output_paths, write_outputs
from fashionrec.drift.profile import write_profile
from fashionrec.local.deployment import Deployment
from fashionrec.params import TrainConfig
from fashionrec.retrieval.feast_store import apply_and_materialize, stage_repo
from fashionrec.retrieval.index import build_index
from fashionrec.serving.package import build_model_store
from fashionrec.training.embed import embed_catalog
from fashionrec.training.train import train


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


def run_stages(catalog: Path, root: Path, config: TrainConfig | None = None) -> StageOutputs:
    """validate -> train -> embed -> features -> index -> package, writing everything under root."""

    paths = output_paths(root / "validation")
    out = StageOutputs(paths.valid, root / "model", root / EMBEDDINGS_FILE, root / "repo", root / "index", root / "model_store")
    write_outputs(validate_catalog(catalog), catalog, paths)
    train(out.valid, out.model_dir, config or TrainConfig())
    embed_catalog(out.valid, out.model_dir, out.embeddings)
    apply_and_materialize(stage_repo(out.embeddings, out.feature_repo))
    build_index(out.embeddings, out.index_dir)
    write_profile(out.embeddings, out.valid, out.index_dir, (config or TrainConfig()).holdout_fraction)
    build_model_store(out.model_dir, out.model_store)
    return out
