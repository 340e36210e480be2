from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def build_index(
    embeddings: Input[Dataset],
    valid_catalog: Input[Dataset],
    index: Output[Artifact],
    index_kind: str = "auto",
    holdout_fraction: float = 0.2,
) -> None:
    """Build the FAISS index of all item embeddings (items.faiss + index.json with its model_version), and beside it
    the model's reference profile for monitoring (reference/: a sample of embeddings, the monitored statistics of
    catalogue photos, class shares, held-out items' top-1 scores), which travels with every served snapshot.

    ``index_kind``: auto picks exact search up to 100k items, HNSW above, IVF past 2M; flat, hnsw or ivf force one.
    """
    from dataclasses import asdict
    from pathlib import Path

    from fashionrec.monitoring.profile import write_profile
    from fashionrec.retrieval.index import build_index as run_build

    meta = run_build(Path(embeddings.path), Path(index.path), index_kind)
    profile = write_profile(Path(embeddings.path), Path(valid_catalog.path), Path(index.path), holdout_fraction)
    index.metadata.update({**asdict(meta), "low_score_threshold": profile.low_score_threshold})
