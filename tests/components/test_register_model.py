from pathlib import Path

from kfp.dsl import Artifact, Markdown, Model
from kfp_artifacts import artifact

from components.register_model import register_model
from fashionrec.local.stages import StageOutputs
from fashionrec.training.card import ModelCard
from fashionrec.training.registry import MlflowRegistry


def test_register_model_registers_every_run_and_leaves_the_production_alias_to_the_deploy_step(
    stages: StageOutputs, evaluation_dir: Path, tmp_path: Path
) -> None:
    decision = tmp_path / "decision.md"
    decision.write_text("# Model gate: PROMOTE\n")
    registry_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    inputs = {
        "model": artifact(Model, stages.model_dir.parent, stages.model_dir.name),
        "model_store": artifact(Model, stages.model_store.parent, stages.model_store.name),
        "index": artifact(Artifact, stages.index_dir.parent, stages.index_dir.name),
        "evaluation": artifact(Artifact, evaluation_dir.parent, evaluation_dir.name),
        "decision": artifact(Markdown, decision.parent, decision.name),
        "registry_uri": registry_uri,
        "params": {"epochs": 10, "backbone": "resnet18"},
    }
    first = register_model.python_func(**inputs)
    second = register_model.python_func(**inputs)
    registry = MlflowRegistry(registry_uri)
    assert (first, second) == (1, 2)
    assert registry.production() is None  # only a promoted rollout moves the alias
    assert register_model.python_func(**{**inputs, "registry_uri": ""}) == 0  # no registry configured
    version = registry.get(2)
    assert version.model_version == ModelCard.load(stages.model_dir).model_version
    assert version.params["epochs"] == "10" and "precision_at_5" in version.metrics
