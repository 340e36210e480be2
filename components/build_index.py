from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def build_index(embeddings: Input[Dataset], index: Output[Artifact], index_kind: str = "auto") -> None:
    """Build the FAISS index of all item embeddings (items.faiss + index.json with its model_version).

    ``index_kind``: auto picks exact search up to 100k items, HNSW above, IVF past 2M; flat, hnsw or ivf force one.
    """
    from dataclasses import asdict
    from pathlib import Path

    from fashionrec.retrieval.index import build_index as run_build

    meta = run_build(Path(embeddings.path), Path(index.path), index_kind)
    index.metadata.update(asdict(meta))
