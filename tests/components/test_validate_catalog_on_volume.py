from pathlib import Path

import pandas as pd
from kfp.dsl import HTML, Artifact, Dataset, Metrics
from kfp_artifacts import artifact

from components.validate_catalog_on_volume import validate_catalog_on_volume


def test_validate_catalog_on_volume_reads_the_folder_in_place_and_quarantines_nothing_silently(
    tiny_catalog: Path, tmp_path: Path
) -> None:
    outputs = {
        "valid_catalog": artifact(Dataset, tmp_path, "valid"),
        "quarantine": artifact(Dataset, tmp_path, "quarantine"),
        "report": artifact(HTML, tmp_path, "report"),
        "data_docs": artifact(HTML, tmp_path, "docs"),
        "dataset_manifest": artifact(Artifact, tmp_path, "manifest"),
        "metrics": artifact(Metrics, tmp_path, "metrics"),
    }
    validate_catalog_on_volume.python_func(catalog_dir=str(tiny_catalog), **outputs)  # the PVC's mount path
    valid, quarantined = pd.read_parquet(outputs["valid_catalog"].path), pd.read_csv(outputs["quarantine"].path)
    assert len(valid) + len(quarantined) == len(pd.read_csv(tiny_catalog / "styles.csv")) == 60
    assert outputs["metrics"].metadata["rows_valid"] == len(valid) and outputs["dataset_manifest"].metadata["dataset_digest"]
