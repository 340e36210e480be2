from pathlib import Path

import numpy as np
from kfp.dsl import Dataset, Model
from kfp_artifacts import artifact

from components.embed_catalog import embed_catalog
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.training.card import ModelCard


def test_embed_catalog_writes_one_unit_vector_per_valid_item(stages: StageOutputs, tmp_path: Path) -> None:
    card = ModelCard.load(stages.model_dir)
    embeddings = artifact(Dataset, tmp_path, "embeddings")
    embed_catalog.python_func(
        valid_catalog=artifact(Dataset, stages.valid.parent, stages.valid.name),
        model=artifact(Model, stages.model_dir.parent, stages.model_dir.name),
        embeddings=embeddings,
    )
    assert embeddings.metadata == {"rows": 60, "model_version": card.model_version}
    table, vectors = read_embeddings(Path(embeddings.path))
    assert vectors.shape == (60, card.embedding_dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert set(table["model_version"]) == {card.model_version}
