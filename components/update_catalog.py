from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def update_catalog(
    additions: Input[Dataset],
    report: Output[HTML],
    quarantine: Output[Dataset],
    metrics: Output[Metrics],
    releases_uri: str,
    catalog_changes_uri: str,
    serving_target: str = "kserve://fashionrec",
    remove_ids: list = [],  # noqa: B006 (KFP parameters need literal defaults)
    catalog_dir: str = "",
) -> None:
    """A batch of catalogue changes without retraining. ``additions`` (styles.csv + images/, or an empty folder) is
    validated by the pipeline's Great Expectations suite (invalid rows quarantined and reported, never dropped); the
    valid products are encoded with the encoder of every version the InferenceService ``serving_target``
    (kserve://[NAMESPACE/]NAME, as the training pipeline's deploy_target) serves now, read from it at the start of
    the step (production, and the canary during a rollout), by its predictor (v2), written to the shared online store
    their releases under ``releases_uri`` name, and recorded in the change log ``catalog_changes_uri`` that every
    transformer applies to its live index within seconds. ``remove_ids`` are deleted from the store and the indexes.
    With ``catalog_dir`` (a mounted catalogue folder), its styles.csv and images follow, for the next retrain."""
    import shutil
    import tempfile
    from pathlib import Path

    from fashionrec.catalog.update import run_catalog_update
    from fashionrec.config import QUARANTINE_FILE, REPORT_FILE
    from fashionrec.deploy.step import serving_on

    model_versions, predictor_host = serving_on(serving_target, releases_uri)
    with tempfile.TemporaryDirectory() as tmp:
        counts = run_catalog_update(
            Path(additions.path),
            [int(i) for i in remove_ids],
            releases_uri,
            model_versions,
            predictor_host,
            catalog_changes_uri,
            Path(catalog_dir) if catalog_dir else None,
            Path(tmp),
        )
        for name, value in counts.items():
            metrics.log_metric(name, value)
        written = Path(tmp)
        if (written / REPORT_FILE).exists():
            shutil.copy2(written / REPORT_FILE, report.path)
            shutil.copy2(written / QUARANTINE_FILE, quarantine.path)
        else:
            Path(report.path).write_text("<p>No additions in this batch.</p>")
            Path(quarantine.path).write_text("")
