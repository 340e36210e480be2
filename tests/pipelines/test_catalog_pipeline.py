"""The catalogue-update pipeline compiles to what a KFP server runs: import the batch, one update step with the
shared store's and the storage's credentials from Secrets, every parameter described."""

from pathlib import Path

import yaml

from fashionrec.config import FEAST_SECRET, STORAGE_SECRET
from fashionrec.local.pipeline_runner import compile_all


def test_the_catalog_pipeline_imports_the_batch_and_updates_with_secrets_as_env(tmp_path: Path) -> None:
    written = {path.stem: path for path in compile_all(tmp_path)}
    spec, platform = yaml.safe_load_all(written["catalog_pipeline"].read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"importer", "update-catalog"}
    assert tasks["update-catalog"]["inputs"]["artifacts"]["additions"]["taskOutputArtifact"]["producerTask"] == "importer"
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {
        "additions_uri",
        "releases_uri",
        "catalog_changes_uri",
        "serving_target",
        "remove_ids",
    }
    assert all(p.get("description") for p in parameters.values())
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-update-catalog"]
    assert {s["secretName"] for s in executor["secretAsEnv"]} == {STORAGE_SECRET, FEAST_SECRET}
