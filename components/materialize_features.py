from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def materialize_features(embeddings: Input[Dataset], feature_repo: Output[Artifact], metrics: Output[Metrics]):
    """Stage the Feast repo with the embeddings as its offline source, then `feast apply` and `feast materialize`
    (in-process, the same calls the CLI makes) into the online store that serving reads."""
    from dataclasses import asdict
    from pathlib import Path

    from fashionrec.featurestore import apply_and_materialize, stage_repo

    repo = stage_repo(Path(embeddings.path), Path(feature_repo.path))
    window = apply_and_materialize(repo)
    metrics.log_metric("rows_materialized", window.rows)
    feature_repo.metadata.update(asdict(window))
