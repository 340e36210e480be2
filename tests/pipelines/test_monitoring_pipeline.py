"""The monitoring pipeline compiles to: import the request log, monitor, and the trigger fed by the monitor's
decision; storage and registry credentials from Secrets; every parameter described."""

from pathlib import Path

import yaml

from fashionrec.config import REGISTRY_SECRET, STORAGE_SECRET
from fashionrec.local.pipeline_runner import compile_all


def test_the_monitoring_pipeline_feeds_the_decision_to_the_trigger(tmp_path: Path) -> None:
    written = {path.stem: path for path in compile_all(tmp_path)}
    spec, platform = yaml.safe_load_all(written["monitoring_pipeline"].read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"importer", "monitor-requests", "trigger-training"}
    retrain = tasks["trigger-training"]["inputs"]["parameters"]["retrain"]["taskOutputParameter"]
    assert retrain == {"outputParameterKey": "retrain", "producerTask": "monitor-requests"}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {"request_log_uri", "releases_uri", "catalog_uri", "registry_uri"} <= set(parameters)
    assert all(p.get("description") for p in parameters.values())
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-monitor-requests"]
    assert {s["secretName"] for s in executor["secretAsEnv"]} == {STORAGE_SECRET, REGISTRY_SECRET}
