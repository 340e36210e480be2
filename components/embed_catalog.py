from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def embed_catalog(valid_catalog: Input[Dataset], model: Input[Model], embeddings: Output[Dataset]) -> None:
    """Embed every valid item with the trained encoder into Feast's offline source (parquet: item_id,
    event_timestamp, embedding, model_version, dataset_digest, attributes)."""
    from pathlib import Path

    from fashionrec.training.embed import embed_catalog as run_embedding

    table = run_embedding(Path(valid_catalog.path), Path(model.path), Path(embeddings.path))
    embeddings.metadata.update({"rows": len(table), "model_version": str(table["model_version"].iloc[0])})
