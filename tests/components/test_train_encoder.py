import json
from pathlib import Path

import pytest
from kfp.dsl import HTML, Metrics, Model
from kfp_artifacts import artifact

from components.train_encoder import train_encoder
from fashionrec.config import MODEL_CARD_FILE, WEIGHTS_FILE
from fashionrec.data.provenance import dataset_digest
from fashionrec.data.table import read_table
from fashionrec.local.stages import StageOutputs
from fashionrec.training.card import ModelCard


def test_train_encoder_takes_the_pipelines_training_parameters(stages: StageOutputs, tmp_path: Path) -> None:
    model, metrics = artifact(Model, tmp_path, "model"), artifact(Metrics, tmp_path, "metrics")
    curve = artifact(HTML, tmp_path, "curve.html")
    valid = artifact(Model, stages.valid.parent, stages.valid.name)
    config = {"epochs": 2, "batch_size": 16}
    train_encoder.python_func(valid_catalog=valid, model=model, metrics=metrics, curve=curve, config=config)
    card = ModelCard.load(Path(model.path))
    assert (Path(model.path) / WEIGHTS_FILE).is_file() and (Path(model.path) / MODEL_CARD_FILE).is_file()
    assert model.metadata["model_version"] == card.model_version and len(card.model_version) == 12
    assert model.metadata["dataset_digest"] == dataset_digest(read_table(stages.valid))  # provenance: the exact data
    assert {"train_loss", "holdout_accuracy", "kept_epoch"} <= set(metrics.metadata)
    page = Path(curve.path).read_text()  # the per-epoch curve beside the scalar metrics
    assert "<svg" in page and page.count("<tr") == 1 + 2 and card.model_version in page


def test_train_encoder_warm_starts_from_production(
    stages: StageOutputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fashionrec.training.registry import MlflowRegistry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    valid = artifact(Model, stages.valid.parent, stages.valid.name)
    config = {"epochs": 1, "batch_size": 16, "weights": "production"}

    def train_once(name: str) -> None:
        model, metrics = artifact(Model, tmp_path, f"{name}/model"), artifact(Metrics, tmp_path, f"{name}/metrics")
        curve = artifact(HTML, tmp_path, f"{name}/curve.html")
        train_encoder.python_func(valid_catalog=valid, model=model, metrics=metrics, curve=curve, config=config, registry_uri=uri)

    train_once("first")  # nothing in production yet: random weights
    assert "nothing is in production yet" in capsys.readouterr().err
    registry = MlflowRegistry(uri)
    card = json.loads((stages.model_dir / MODEL_CARD_FILE).read_text())
    registry.promote(registry.log_and_register({"model": stages.model_dir}, {}, {}, card).version)
    train_once("second")
    assert f"warm start from model {card['model_version']}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs the model registry"):
        model, metrics = artifact(Model, tmp_path, "third/model"), artifact(Metrics, tmp_path, "third/metrics")
        train_encoder.python_func(
            valid_catalog=valid, model=model, metrics=metrics, curve=artifact(HTML, tmp_path, "c"), config=config
        )


def test_train_encoder_refuses_an_unknown_parameter_or_choice(stages: StageOutputs, tmp_path: Path) -> None:
    valid = artifact(Model, stages.valid.parent, stages.valid.name)
    model, metrics = artifact(Model, tmp_path, "model"), artifact(Metrics, tmp_path, "metrics")
    curve = artifact(HTML, tmp_path, "curve.html")
    with pytest.raises(ValueError, match="unknown TrainConfig parameter"):
        train_encoder.python_func(valid_catalog=valid, model=model, metrics=metrics, curve=curve, config={"epoch": 1})
    with pytest.raises(ValueError, match="backbone must be one of"):
        train_encoder.python_func(valid_catalog=valid, model=model, metrics=metrics, curve=curve, config={"backbone": "vgg"})
