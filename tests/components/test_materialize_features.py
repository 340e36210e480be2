from pathlib import Path

from kfp.dsl import Artifact, Dataset, Metrics
from kfp_artifacts import artifact

from components.materialize_features import materialize_features
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.feast_store import OnlineFeatures
from fashionrec.training.card import ModelCard


def test_materialize_features_fills_the_online_store_only_for_a_promoted_model(stages: StageOutputs, tmp_path: Path) -> None:
    embeddings = artifact(Dataset, stages.embeddings.parent, stages.embeddings.name)
    repo, metrics = artifact(Artifact, tmp_path, "repo"), artifact(Metrics, tmp_path, "metrics")
    materialize_features.python_func(embeddings=embeddings, feature_repo=repo, metrics=metrics)
    assert metrics.metadata["rows_materialized"] == 60 and repo.metadata["materialized"] is True
    version = ModelCard.load(stages.model_dir).model_version
    assert OnlineFeatures(Path(repo.path)).embeddings([10000], version)[0] is not None
    assert OnlineFeatures(Path(repo.path)).embeddings([10000], "another-version") == [None]  # keyed by version

    rejected, rejected_metrics = artifact(Artifact, tmp_path, "rejected"), artifact(Metrics, tmp_path, "rejected_metrics")
    materialize_features.python_func(embeddings=embeddings, feature_repo=rejected, metrics=rejected_metrics, promote=False)
    assert rejected_metrics.metadata["rows_materialized"] == 0 and rejected.metadata["materialized"] is False
    assert not list(Path(rejected.path).rglob("online_store.db"))
