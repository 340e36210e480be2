from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def validate_catalog(
    catalog_dir: str,
    valid_catalog: Output[Dataset],
    quarantine: Output[Dataset],
    report: Output[HTML],
    data_docs: Output[HTML],
    dataset_manifest: Output[Artifact],
    metrics: Output[Metrics],
    validation_settings: dict = {},  # noqa: B006 (KFP parameters need literal defaults)
) -> None:
    """Validate a Kaggle-layout catalogue (styles.csv + images/) with a Great Expectations suite.

    Outputs: the valid rows with their image bytes (parquet); the quarantine (CSV: kind, line, id, reason, measured
    value, detail); an HTML report with thumbnails of what was rejected; Great Expectations' Data Docs page; the
    dataset manifest (sha256 of every image and of styles.csv, class counts, dataset digest); counts as metrics.
    Every input row lands in exactly one of valid or quarantine. Fails when the valid fraction is below the floor
    (``validation_settings["min_valid_fraction"]``), after writing the reports.
    """
    import json
    from pathlib import Path

    from fashionrec.data.validation.checks import ValidationSettings
    from fashionrec.data.validation.quarantine import validate_catalog as run_validation
    from fashionrec.data.validation.report import OutputPaths, write_outputs

    settings = ValidationSettings.from_overrides(validation_settings)
    result = run_validation(Path(catalog_dir), settings)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    valid_catalog.metadata.update({"rows": len(result.valid), "format": "parquet"})
    quarantine.metadata.update({"rows": len(result.quarantine), "format": "csv"})
    paths = OutputPaths(
        Path(valid_catalog.path), Path(quarantine.path), Path(report.path), Path(data_docs.path), Path(dataset_manifest.path)
    )
    write_outputs(result, Path(catalog_dir), paths)
    manifest = json.loads(Path(dataset_manifest.path).read_text())
    dataset_manifest.metadata.update(
        {"dataset_digest": manifest["dataset_digest"], "styles_csv_sha256": manifest["styles_csv_sha256"]}
    )
