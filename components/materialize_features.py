from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def materialize_features(
    embeddings: Input[Dataset], feature_repo: Output[Artifact], metrics: Output[Metrics], promote: bool = True
) -> None:
    """Stage the Feast repo with the embeddings as its offline source, then `feast apply` and `feast materialize`
    (in-process, the same calls the CLI makes) into the online store that serving reads.

    Only for a model the gate promoted: the online store serves production, and a rejected candidate's vectors
    must never replace (or mix with) production's. A rejected candidate's repo is staged but not materialized."""
    from dataclasses import asdict
    from pathlib import Path

    from fashionrec.retrieval.feast_store import apply_and_materialize, stage_repo

    repo = stage_repo(Path(embeddings.path), Path(feature_repo.path))
    if not promote:
        metrics.log_metric("rows_materialized", 0)
        feature_repo.metadata.update({"materialized": False, "reason": "the gate did not promote this model"})
        return
    window = apply_and_materialize(repo)
    metrics.log_metric("rows_materialized", window.rows)
    feature_repo.metadata.update({"materialized": True, **asdict(window)})
