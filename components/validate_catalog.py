from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def validate_catalog(
    catalog_dir: str,
    valid_catalog: Output[Dataset],
    quarantine: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """Validate a Kaggle-layout catalogue (styles.csv + images/) with a Great Expectations suite.

    Writes the valid rows with their image bytes (parquet), the quarantined rows with a reason each (CSV), an HTML
    report for the KFP UI, and counts as metrics. Every input row lands in exactly one of the two tables.
    """
    from pathlib import Path

    from fashionrec.validate import validate_catalog as run_validation
    from fashionrec.validate import write_outputs

    result = run_validation(Path(catalog_dir))
    counts = write_outputs(result, Path(valid_catalog.path), Path(quarantine.path), Path(report.path))
    for name, value in counts.items():
        metrics.log_metric(name, value)
    valid_catalog.metadata.update({"rows": len(result.valid), "format": "parquet"})
    quarantine.metadata.update({"rows": len(result.quarantine), "format": "csv"})
