from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def validate_catalog_on_volume(
    catalog_dir: str,
    valid_catalog: Output[Dataset],
    quarantine: Output[Dataset],
    report: Output[HTML],
    data_docs: Output[HTML],
    dataset_manifest: Output[Artifact],
    metrics: Output[Metrics],
    validation_settings: dict = {},  # noqa: B006 (KFP parameters need literal defaults)
) -> None:
    """The same validation as validate_catalog, of a catalogue on a PersistentVolumeClaim that the pipeline mounts
    (kfp-kubernetes) at ``catalog_dir``: large catalogues are read in place instead of copied through the artifact
    store. Same outputs, same failure on a valid fraction below the floor."""
    from pathlib import Path

    from fashionrec.data.validation.report import run_validation_step

    outputs = {"valid_catalog": valid_catalog, "quarantine": quarantine, "report": report, "data_docs": data_docs}
    outputs |= {"dataset_manifest": dataset_manifest, "metrics": metrics}
    run_validation_step(Path(catalog_dir), validation_settings, outputs)
