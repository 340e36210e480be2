import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fashionrec.config import PROJECT_IMAGE
from fashionrec.local.deployment import NotPromoted, deployment_of, production_deployment
from fashionrec.local.pipeline_runner import COMPILED_DIR, PIPELINE_MODULES, compile_all, project_root, run_local
from fashionrec.params import TrainConfig


def test_every_pipeline_compiles(tmp_path: Path) -> None:
    written = compile_all(tmp_path)
    assert len(written) == len(PIPELINE_MODULES)
    spec = yaml.safe_load(written[0].read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "validate-catalog",
        "train-encoder",
        "evaluate-model",
        "gate-model",
        "embed-catalog",
        "materialize-features",
        "build-index",
        "package-model",
        "condition-1",  # registration runs only when a registry_uri is given
    }
    registration = spec["root"]["dag"]["tasks"]["condition-1"]
    assert registration["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--registry_uri'] != ''"
    assert list(spec["components"]["comp-condition-1"]["dag"]["tasks"]) == ["register-model"]
    assert tasks["train-encoder"]["dependentTasks"] == ["validate-catalog"]
    assert tasks["gate-model"]["dependentTasks"] == ["evaluate-model", "validate-catalog"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {PROJECT_IMAGE}
    assert set(spec["root"]["outputDefinitions"]["artifacts"]) == {"model_store", "index", "feature_repo"}
    parameters = set(spec["root"]["inputDefinitions"]["parameters"])
    assert parameters >= {
        "catalog_dir",
        "epochs",
        "backbone",
        "weights",
        "validation_settings",
        "production_model_dir",
        "min_improvement",
        "index_kind",
    }


@pytest.mark.integration
def test_pipeline_runs_locally_with_kfp_local(tiny_catalog: Path, tmp_path: Path) -> None:
    deployment = run_local(tiny_catalog, tmp_path / "run", TrainConfig(epochs=1, batch_size=16))
    assert production_deployment(tmp_path / "run") == deployment
    assert (deployment.model_store / "model-store" / "fashionrec.mar").is_file()
    assert (deployment.index_dir / "index.json").is_file()
    assert (deployment.feature_repo / "data" / "online_store.db").is_file()
    # The first model is promoted (no production yet) and registered with its provenance.
    from fashionrec.training.registry import MlflowRegistry, default_registry_uri

    production = MlflowRegistry(default_registry_uri(tmp_path / "run")).production()
    assert production is not None and production.version == 1
    assert (
        json.loads((deployment.model_store.parent.parent / "train-encoder" / "model" / "model.json").read_text())["model_version"]
        == production.model_version
    )
    # A second run of the same data and seed trains the same model: no improvement, so the gate rejects it. What is
    # served does not change: still the first run's artifacts (the rejected run's Feast store was not materialized).
    rejected = run_local(tiny_catalog, tmp_path / "run", TrainConfig(epochs=1, batch_size=16))
    assert rejected != deployment and json.loads((tmp_path / "run" / "deployment.json").read_text())["promoted"] is False
    assert production_deployment(tmp_path / "run") == deployment
    with pytest.raises(NotPromoted, match="never promoted"):
        deployment_of(tmp_path / "run", "0123456789ab")
    production = MlflowRegistry(default_registry_uri(tmp_path / "run")).production()
    assert production is not None and production.version == 1


def test_gpu_request_is_a_compile_option(tmp_path: Path) -> None:
    def train_resources(gpu: bool) -> dict[str, Any]:
        spec = yaml.safe_load(compile_all(tmp_path / str(gpu), gpu=gpu)[0].read_text())
        executor = next(e for name, e in spec["deploymentSpec"]["executors"].items() if "train-encoder" in name)
        return dict(executor["container"]["resources"])

    assert train_resources(True)["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "accelerator" not in train_resources(False)


def test_missing_deployment_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pipeline run"):
        production_deployment(tmp_path)


def test_the_committed_pipeline_yaml_is_what_the_code_compiles_to(tmp_path: Path) -> None:
    """What a user uploads in the KFP UI (pipelines/compiled/) is the reviewed pipeline: any change to a component or
    the pipeline must be compiled (`make compile`) and committed with it."""
    for written in compile_all(tmp_path):
        committed = project_root() / COMPILED_DIR / written.name
        assert committed.is_file(), f"{committed} is missing: run `make compile` and commit it"
        assert committed.read_text() == written.read_text(), f"{committed} is stale: run `make compile` and commit it"
