from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def build_index(embeddings: Input[Dataset], index: Output[Artifact]):
    """Build the FAISS index of all item embeddings (items.faiss + index.json with its model_version)."""
    from dataclasses import asdict
    from pathlib import Path

    from fashionrec.index import build_index as run_build

    meta = run_build(Path(embeddings.path), Path(index.path))
    index.metadata.update(asdict(meta))
