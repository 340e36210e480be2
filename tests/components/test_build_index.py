from pathlib import Path

from kfp.dsl import Artifact, Dataset
from kfp_artifacts import artifact

from components.build_index import build_index
from fashionrec.data.imagefacts import IMAGE_STATS
from fashionrec.local.stages import StageOutputs
from fashionrec.monitoring.profile import ReferenceProfile
from fashionrec.retrieval.index import ItemIndex
from fashionrec.training.card import ModelCard


def test_build_index_writes_the_kind_it_was_asked_for_and_the_reference_profile(stages: StageOutputs, tmp_path: Path) -> None:
    embeddings = artifact(Dataset, stages.embeddings.parent, stages.embeddings.name)
    valid = artifact(Dataset, stages.valid.parent, stages.valid.name)
    card = ModelCard.load(stages.model_dir)
    index = artifact(Artifact, tmp_path, "index")
    build_index.python_func(embeddings=embeddings, valid_catalog=valid, index=index)
    profile = ReferenceProfile.of_index(Path(index.path))
    assert profile is not None and profile.model_version == card.model_version and profile.catalogue_size == 60
    assert profile.embeddings.shape == (60, card.embedding_dim) and set(profile.image_stats) == set(IMAGE_STATS)
    assert len(profile.top1_scores) == 12 and index.metadata["low_score_threshold"] == profile.low_score_threshold  # held out
    assert abs(sum(profile.class_shares.values()) - 1) < 1e-9
    assert index.metadata["count"] == 60 and index.metadata["model_version"] == card.model_version
    assert index.metadata["dataset_digest"] == card.dataset_digest and index.metadata["index_kind"] == "flat"  # 60 items
    assert ItemIndex.load(Path(index.path)).meta.count == 60
    hnsw = artifact(Artifact, tmp_path, "hnsw")
    build_index.python_func(embeddings=embeddings, valid_catalog=valid, index=hnsw, index_kind="hnsw")
    assert hnsw.metadata["index_kind"] == "hnsw" and hnsw.metadata["index_params"]["ef_search"] > 0
