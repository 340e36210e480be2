from pathlib import Path

from kfp.dsl import Artifact, Dataset
from kfp_artifacts import artifact

from components.build_index import build_index
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.index import ItemIndex
from fashionrec.training.card import ModelCard


def test_build_index_writes_the_kind_it_was_asked_for(stages: StageOutputs, tmp_path: Path) -> None:
    embeddings = artifact(Dataset, stages.embeddings.parent, stages.embeddings.name)
    card = ModelCard.load(stages.model_dir)
    index = artifact(Artifact, tmp_path, "index")
    build_index.python_func(embeddings=embeddings, index=index)
    assert index.metadata["count"] == 60 and index.metadata["model_version"] == card.model_version
    assert index.metadata["dataset_digest"] == card.dataset_digest and index.metadata["index_kind"] == "flat"  # 60 items
    assert ItemIndex.load(Path(index.path)).meta.count == 60
    hnsw = artifact(Artifact, tmp_path, "hnsw")
    build_index.python_func(embeddings=embeddings, index=hnsw, index_kind="hnsw")
    assert hnsw.metadata["index_kind"] == "hnsw" and hnsw.metadata["index_params"]["ef_search"] > 0
