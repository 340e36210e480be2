import json
from pathlib import Path

import pandas as pd
from kfp.dsl import HTML, Artifact, Dataset, Metrics
from kfp_artifacts import artifact

from components.validate_catalog import validate_catalog


def test_validate_catalog_writes_every_output_with_its_metadata(tiny_catalog: Path, tmp_path: Path) -> None:
    valid, quarantine = artifact(Dataset, tmp_path, "valid"), artifact(Dataset, tmp_path, "quarantine")
    report, docs = artifact(HTML, tmp_path, "report"), artifact(HTML, tmp_path, "docs")
    manifest, metrics = artifact(Artifact, tmp_path, "manifest"), artifact(Metrics, tmp_path, "metrics")
    validate_catalog.python_func(
        catalog=artifact(Dataset, tiny_catalog.parent, tiny_catalog.name),  # what dsl.importer hands over
        valid_catalog=valid,
        quarantine=quarantine,
        report=report,
        data_docs=docs,
        dataset_manifest=manifest,
        metrics=metrics,
        validation_settings={"min_sharpness": 5.0},
    )
    assert metrics.metadata["rows_valid"] == 60 and valid.metadata["rows"] == 60
    assert len(pd.read_parquet(valid.path)) == 60
    assert pd.read_csv(quarantine.path).empty and "<html" in Path(report.path).read_text()
    assert "Great Expectations" in Path(docs.path).read_text()
    written = json.loads(Path(manifest.path).read_text())
    assert written["validation_settings"]["min_sharpness"] == 5.0
    assert manifest.metadata["dataset_digest"] == written["dataset_digest"]
