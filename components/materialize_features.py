from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def materialize_features(
    embeddings: Input[Dataset],
    feature_repo: Output[Artifact],
    metrics: Output[Metrics],
    promote: bool = True,
    online_store: str = "",
    feast_registry: str = "",
) -> None:
    """Stage the Feast repo with the embeddings as its offline source (online store and registry switched by
    ``online_store`` / ``feast_registry``: embedded sqlite by default, a shared Redis and SQL registry in production),
    then `feast apply` and materialize every row into the online store that serving reads.

    Only for a model the gate promoted. Its vectors are keyed by its model version, so in a shared store they land
    beside production's without touching them; the deploy step deletes the old version's once the rollout is done."""
    from dataclasses import asdict
    from pathlib import Path

    from fashionrec.retrieval.feast_store import StoreSettings, apply_and_materialize, stage_repo

    settings = StoreSettings(online_store=online_store, registry=feast_registry)
    repo = stage_repo(Path(embeddings.path), Path(feature_repo.path), settings=settings)
    if not promote:
        metrics.log_metric("rows_materialized", 0)
        feature_repo.metadata.update({"materialized": False, "reason": "the gate did not promote this model"})
        return
    window = apply_and_materialize(repo)
    metrics.log_metric("rows_materialized", window.rows)
    feature_repo.metadata.update({"materialized": True, **asdict(window)})
