import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fashionrec.checkout import COMPILED_DIR, PIPELINE_MODULES, project_root
from fashionrec.config import CATALOG_MOUNT, FEAST_SECRET, PROJECT_IMAGE, REGISTRY_SECRET, STORAGE_SECRET
from fashionrec.local.deployment import NotPromoted, deployment_of, production_deployment
from fashionrec.local.pipeline_runner import compile_all, run_local
from fashionrec.params import TrainConfig


def compiled(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec and the kfp-kubernetes platform spec (the YAML's two documents)."""
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform


def test_every_pipeline_compiles(tmp_path: Path) -> None:
    written = compile_all(tmp_path)
    assert len(written) == len(PIPELINE_MODULES)
    spec, platform = compiled(written[0])
    tasks = spec["root"]["dag"]["tasks"]
    components = spec["components"]
    assert set(tasks) == {
        "condition-branches-1",  # the catalogue: imported from object storage, or on a volume
        "train-encoder",
        "evaluate-model",
        "gate-model",
        "embed-catalog",
        "materialize-features",
        "build-index",
        "package-model",
        "register-model",
        "deploy-model",  # takes the gate's decision as an input: kfp.local cannot branch on a task's output
    }
    storage, volume = (components["comp-condition-branches-1"]["dag"]["tasks"][c] for c in ("condition-2", "condition-3"))
    assert storage["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--catalog_pvc'] == ''"
    assert "!(" in volume["triggerPolicy"]["condition"]  # the else branch
    assert list(components["comp-condition-2"]["dag"]["tasks"]) == ["importer", "validate-catalog"]
    importer = components["comp-condition-2"]["dag"]["tasks"]["importer"]
    assert importer["inputs"]["parameters"]["uri"]["componentInputParameter"] == "pipelinechannel--catalog_uri"
    assert list(components["comp-condition-3"]["dag"]["tasks"]) == ["validate-catalog-on-volume"]
    deploy = tasks["deploy-model"]
    assert deploy["inputs"]["parameters"]["gate_passed"]["taskOutputParameter"] == {
        "outputParameterKey": "promote",
        "producerTask": "gate-model",
    }
    assert tasks["train-encoder"]["dependentTasks"] == ["condition-branches-1"]
    assert "register-model" in deploy["dependentTasks"]  # the deploy step moves the alias of the registered version
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {PROJECT_IMAGE}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) >= {"catalog_uri", "catalog_pvc", "deploy_target", "releases_uri", "canary_percent", "epochs"}
    assert "production_model_dir" not in parameters  # only a local run could use a folder
    assert all(p.get("description") for p in parameters.values())  # the KFP UI's run form explains every input
    assert not {name for name in parameters if "secret" in name or "password" in name or "token" in name}
    # Credentials come from Secrets, never as parameters; the PVC is mounted from the catalog_pvc parameter.
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secrets = {name: {s["secretName"] for s in e.get("secretAsEnv", [])} for name, e in executors.items()}
    assert secrets["exec-deploy-model"] == {STORAGE_SECRET, REGISTRY_SECRET, FEAST_SECRET}
    assert secrets["exec-materialize-features"] == {FEAST_SECRET}
    assert secrets["exec-gate-model"] == {REGISTRY_SECRET}
    assert all(s["optional"] for e in executors.values() for s in e.get("secretAsEnv", []))
    mount = executors["exec-validate-catalog-on-volume"]["pvcMount"][0]
    assert mount["mountPath"] == CATALOG_MOUNT and mount["pvcNameParameter"]["componentInputParameter"].endswith("catalog_pvc")


@pytest.mark.integration
def test_local_runs_release_canary_promote_and_a_rejected_run_leaves_production(tiny_catalog: Path, tmp_path: Path) -> None:
    """Run 1: nothing in production, its release is promoted. Run 2 (another seed, better on precision@5; the guards relaxed):
    rolled out as a canary on production's servers (started for the rollout), checked, promoted. Run 3 (the same
    model again): the gate rejects it, production serves on untouched."""
    from fashionrec.params import PipelineSettings
    from fashionrec.training.registry import MlflowRegistry, default_registry_uri

    work = tmp_path / "run"
    # One epoch on the tiny catalogue scores precision@5 near chance (~0.24 for 6 types): below the gate's default
    # floor, which tests/training/test_evaluate_gate.py covers; these runs are about the release and the rollout.
    near_chance = PipelineSettings(min_precision_at_5=0.0)
    first = run_local(tiny_catalog, work, TrainConfig(epochs=1, batch_size=16), near_chance)
    assert first.gate_passed and first.promoted
    served = production_deployment(work)
    assert served.model_version == first.deployment.model_version and served.model_store.is_relative_to(work / "releases")
    assert (served.feature_repo / "data" / "online_store.db").is_file() and (served.index_dir / "index.json").is_file()
    registry = MlflowRegistry(default_registry_uri(work))
    production = registry.production()
    assert production is not None and production.version == 1
    assert json.loads((work / "deployment.json").read_text())["promoted"] is True

    any_model = PipelineSettings(
        min_improvement=-1.0,
        min_precision_at_5=0.0,
        gate_guards={"catalogue_coverage_at_10": 1, "ndcg_at_10": 1},
        canary_percent=50,
    )
    second = run_local(tiny_catalog, work, TrainConfig(epochs=1, batch_size=16, seed=1), any_model)
    assert second.gate_passed and second.promoted
    assert production_deployment(work).model_version == second.deployment.model_version != first.deployment.model_version
    reports = sorted(work.glob("pipeline_root/*/deploy-model/report"), key=lambda p: p.stat().st_mtime)
    assert len(reports) == 2 and "promoted" in reports[-1].read_text() and "| canary |" in reports[-1].read_text()
    # The release's model store serves production's encoder beside the new one (a rollout never mixes models).
    archives = sorted(p.name for p in (production_deployment(work).model_store / "model-store").glob("*.mar"))
    assert archives == sorted(["fashionrec.mar", f"fashionrec-{first.deployment.model_version}.mar"])

    rejected = run_local(tiny_catalog, work, TrainConfig(epochs=1, batch_size=16, seed=1), near_chance)
    assert not rejected.gate_passed and not rejected.promoted
    assert json.loads((work / "deployment.json").read_text())["promoted"] is False
    assert production_deployment(work).model_version == second.deployment.model_version
    production = registry.production()
    assert production is not None and production.version == 2 and len(registry.versions()) == 3
    with pytest.raises(NotPromoted, match="never released"):
        deployment_of(work, "0123456789ab")


def test_gpu_request_is_a_compile_option(tmp_path: Path) -> None:
    def train_resources(gpu: bool) -> dict[str, Any]:
        spec, _ = compiled(compile_all(tmp_path / str(gpu), gpu=gpu)[0])
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
