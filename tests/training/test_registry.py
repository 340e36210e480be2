"""The MLflow registry: every run logged, versions registered with their provenance, production moved atomically."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fashionrec.cli import app
from fashionrec.local.stages import StageOutputs
from fashionrec.training.registry import MlflowRegistry, RegisteredVersion, RegistryError, production_model_dir


@pytest.fixture
def registry(tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}")


def register(registry: MlflowRegistry, stages: StageOutputs, p_at_5: float) -> RegisteredVersion:
    card = json.loads((stages.model_dir / "model.json").read_text())
    artifacts = {"model": stages.model_dir, "index": stages.index_dir}
    return registry.log_and_register(artifacts, {"epochs": 10, "backbone": "resnet18"}, {"precision_at_5": p_at_5}, card)


def test_register_promote_rollback(registry: MlflowRegistry, stages: StageOutputs, tmp_path: Path) -> None:
    assert registry.production() is None and production_model_dir(registry) is None
    first = register(registry, stages, 0.5)
    card = json.loads((stages.model_dir / "model.json").read_text())
    assert (first.version, first.model_version, first.dataset_digest) == (1, card["model_version"], card["dataset_digest"])
    assert first.params["epochs"] == "10" and first.metrics["precision_at_5"] == 0.5 and len(first.git_commit) >= 7
    registry.promote(first.version)
    second = register(registry, stages, 0.6)
    registry.promote(second.version)
    assert registry.production().version == 2  # type: ignore[union-attr]
    assert [v.aliases for v in registry.versions()] == [[], ["production"]]
    assert registry.rollback().version == 1
    assert registry.production().version == 1  # type: ignore[union-attr]
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    with pytest.raises(RegistryError, match="no version 9"):
        registry.promote(9)
    downloaded = production_model_dir(registry, tmp_path / "prod")
    assert (
        downloaded is not None and json.loads((downloaded / "model.json").read_text())["model_version"] == card["model_version"]
    )


def test_model_cli(stages: StageOutputs, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'cli.db'}"
    registry = MlflowRegistry(uri)
    register(registry, stages, 0.4)
    register(registry, stages, 0.45)
    runner = CliRunner()
    assert runner.invoke(app, ["model", "promote", "1", "--registry", uri]).exit_code == 0
    assert runner.invoke(app, ["model", "promote", "2", "--registry", uri]).exit_code == 0
    listed = runner.invoke(app, ["model", "list", "--registry", uri], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "production" in listed.output
    shown = runner.invoke(app, ["model", "show", "2", "--registry", uri])
    assert shown.exit_code == 0 and '"precision_at_5": 0.45' in shown.output
    rolled = runner.invoke(app, ["model", "rollback", "--registry", uri])
    assert rolled.exit_code == 0 and "version 1" in rolled.output


def test_the_training_history_is_an_mlflow_metric_history(registry: MlflowRegistry, stages: StageOutputs) -> None:
    registered = register(registry, stages, 0.5)
    history = json.loads((stages.model_dir / "history.json").read_text())
    logged = registry.client.get_metric_history(registered.run_id, "epoch_holdout_accuracy")
    assert [m.step for m in sorted(logged, key=lambda m: m.step)] == [r["epoch"] for r in history]
    assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx([r["holdout_accuracy"] for r in history])
    assert len(registry.client.get_metric_history(registered.run_id, "epoch_loss")) == len(history)
