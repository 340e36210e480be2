from pathlib import Path

from kfp.dsl import Artifact, Dataset, Metrics
from kfp_artifacts import artifact

from components.build_index import build_index
from fashionrec.data.imagefacts import IMAGE_STATS
from fashionrec.data.split import holdout_mask
from fashionrec.data.table import read_table
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.index import ItemIndex
from fashionrec.training.card import ModelCard


def test_build_index_writes_the_kind_it_was_asked_for_and_the_reference_profile(stages: StageOutputs, tmp_path: Path) -> None:
    embeddings = artifact(Dataset, stages.embeddings.parent, stages.embeddings.name)
    valid = artifact(Dataset, stages.valid.parent, stages.valid.name)
    card = ModelCard.load(stages.model_dir)
    index = artifact(Artifact, tmp_path, "index")
    build_index.python_func(
        embeddings=embeddings, valid_catalog=valid, index=index, calibration=artifact(Metrics, tmp_path, "exact")
    )
    profile = ReferenceProfile.of_index(Path(index.path))
    assert profile is not None and profile.model_version == card.model_version and profile.catalogue_size == 60
    assert profile.embeddings.shape == (60, card.embedding_dim) and set(profile.image_stats) == set(IMAGE_STATS)
    held_out = int(holdout_mask(read_table(stages.valid), 0.2).sum())
    assert (
        len(profile.top1_scores) == held_out and index.metadata["low_score_threshold"] == profile.low_score_threshold
    )  # held out
    assert abs(sum(profile.class_shares.values()) - 1) < 1e-9
    assert index.metadata["count"] == 60 and index.metadata["model_version"] == card.model_version
    assert index.metadata["dataset_digest"] == card.dataset_digest and index.metadata["index_kind"] == "flat"  # 60 items
    assert ItemIndex.load(Path(index.path)).meta.count == 60
    hnsw = artifact(Artifact, tmp_path, "hnsw")
    measured = artifact(Metrics, tmp_path, "measured")
    build_index.python_func(
        embeddings=embeddings, valid_catalog=valid, index=hnsw, calibration=measured, index_kind="hnsw", index_recall_target=0.9
    )
    assert hnsw.metadata["index_kind"] == "hnsw" and hnsw.metadata["index_params"]["ef_search"] > 0
    # Forced HNSW is tuned on the catalogue's own vectors: what was measured is in the metrics and index.json.
    assert hnsw.metadata["calibration"]["target_recall"] == 0.9
    assert measured.metadata["chosen_recall_at_10"] == hnsw.metadata["calibration"]["chosen"]["recall"] >= 0.9
    assert (
        measured.metadata["index_kind"] == "hnsw"
        and measured.metadata["param_ef_search"] == hnsw.metadata["index_params"]["ef_search"]
    )
