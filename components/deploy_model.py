from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def deploy_model(
    model_store: Input[Model],
    index: Input[Artifact],
    feature_repo: Input[Artifact],
    valid_catalog: Input[Dataset],
    report: Output[Markdown],
    gate_passed: bool,
    deploy_target: str,
    releases_uri: str,
    registry_uri: str = "",
    registered_version: int = 0,
    canary_percent: int = 10,
    prometheus_url: str = "",
    scrape_interval_s: float = 30.0,
    allow_unregistered_deploy: bool = False,
    holdout_fraction: float = 0.2,
    catalog_changes_uri: str = "",
) -> NamedTuple("DeployOutputs", [("promoted", bool)]):  # type: ignore[valid-type]
    """When the gate passed (else: nothing is published or changed, and the report says so), publish the model as a release (model store, index and Feast repo under <releases_uri>/<model_version>/,
    never overwritten), roll it out on ``deploy_target`` (kserve://[NAMESPACE/]NAME, local:///WORKDIR or none) as a
    canary answering ``canary_percent``% of the traffic while probe queries from the held-out catalogue run, compare
    its error rate (4xx and 5xx) and latency with production's, on a Prometheus scrape (every ``scrape_interval_s``)
    taken after the probes, then promote it or roll it back. A kserve:// target without ``registry_uri`` is refused
    unless ``allow_unregistered_deploy``. The registry's production alias
    moves to ``registered_version`` only on promote. The decision and the observed numbers are the Markdown report.
    Products added through the catalogue change log ``catalog_changes_uri`` since the training run are encoded by
    the new model before its transformer loads; the replaced version's vectors leave a shared online store."""
    from collections import namedtuple
    from pathlib import Path

    from fashionrec.deploy.rollout import RolloutSettings
    from fashionrec.deploy.step import deploy, probe_requests
    from fashionrec.serving.release import Deployment

    if not gate_passed:
        Path(report.path).write_text("# Not deployed: the gate rejected the model; production untouched\n")
        report.metadata.update({"promoted": False})
        return namedtuple("DeployOutputs", ["promoted"])(False)  # type: ignore[arg-type]
    artifacts = Deployment(Path(model_store.path), Path(index.path), Path(feature_repo.path))
    release, result = deploy(
        artifacts,
        deploy_target,
        releases_uri,
        probe_requests(Path(valid_catalog.path), holdout_fraction),
        registry_uri=registry_uri,
        registered_version=registered_version,
        settings=RolloutSettings(canary_share=canary_percent / 100),
        prometheus_url=prometheus_url,
        scrape_interval_s=scrape_interval_s,
        allow_unregistered_deploy=allow_unregistered_deploy,
        catalog_changes_uri=catalog_changes_uri,
    )
    promoted = result is None or result.promoted
    text = result.markdown if result is not None else f"# Release `{release.model_version}` published (no rollout)\n"
    Path(report.path).write_text(f"{text}\nRelease: `{release.prefix}`\n")
    report.metadata.update({"promoted": promoted, "model_version": release.model_version, "release": release.prefix})
    return namedtuple("DeployOutputs", ["promoted"])(promoted)  # type: ignore[arg-type]
