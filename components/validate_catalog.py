from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def validate_catalog(
    catalog: Input[Dataset],
    valid_catalog: Output[Dataset],
    quarantine: Output[Dataset],
    report: Output[HTML],
    data_docs: Output[HTML],
    dataset_manifest: Output[Artifact],
    metrics: Output[Metrics],
    validation_settings: dict = {},  # noqa: B006 (KFP parameters need literal defaults)
) -> None:
    """Validate a Kaggle-layout catalogue (styles.csv + images/) with a Great Expectations suite. The catalogue is
    an artifact: the pipeline imports it from object storage (gs://, s3://, minio://) with dsl.importer, and KFP's
    launcher downloads it; kfp.local reads a local path.

    Outputs: the valid rows with their image bytes (parquet); the quarantine (CSV: kind, line, id, reason, measured
    value, detail); an HTML report with thumbnails of what was rejected; Great Expectations' Data Docs page; the
    dataset manifest (sha256 of every image and of styles.csv, class counts, dataset digest); counts as metrics.
    Every input row lands in exactly one of valid or quarantine. Fails when the valid fraction is below the floor
    (``validation_settings["min_valid_fraction"]``), after writing the reports.
    """
    from pathlib import Path

    from fashionrec.data.validation.report import run_validation_step

    outputs = {"valid_catalog": valid_catalog, "quarantine": quarantine, "report": report, "data_docs": data_docs}
    outputs |= {"dataset_manifest": dataset_manifest, "metrics": metrics}
    run_validation_step(Path(catalog.path), validation_settings, outputs)
