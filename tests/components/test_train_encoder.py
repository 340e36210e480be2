from pathlib import Path

import pytest
from kfp.dsl import Metrics, Model
from kfp_artifacts import artifact

from components.train_encoder import train_encoder
from fashionrec.config import MODEL_CARD_FILE, WEIGHTS_FILE
from fashionrec.data.provenance import dataset_digest
from fashionrec.data.table import read_table
from fashionrec.local.stages import StageOutputs
from fashionrec.training.card import ModelCard


def test_train_encoder_takes_the_pipelines_training_parameters(stages: StageOutputs, tmp_path: Path) -> None:
    model, metrics = artifact(Model, tmp_path, "model"), artifact(Metrics, tmp_path, "metrics")
    valid = artifact(Model, stages.valid.parent, stages.valid.name)
    train_encoder.python_func(valid_catalog=valid, model=model, metrics=metrics, config={"epochs": 1, "batch_size": 16})
    card = ModelCard.load(Path(model.path))
    assert (Path(model.path) / WEIGHTS_FILE).is_file() and (Path(model.path) / MODEL_CARD_FILE).is_file()
    assert model.metadata["model_version"] == card.model_version and len(card.model_version) == 12
    assert model.metadata["dataset_digest"] == dataset_digest(read_table(stages.valid))  # provenance: the exact data
    assert {"train_loss", "holdout_accuracy"} <= set(metrics.metadata)


def test_train_encoder_refuses_an_unknown_parameter_or_choice(stages: StageOutputs, tmp_path: Path) -> None:
    valid = artifact(Model, stages.valid.parent, stages.valid.name)
    model, metrics = artifact(Model, tmp_path, "model"), artifact(Metrics, tmp_path, "metrics")
    with pytest.raises(ValueError, match="unknown TrainConfig parameter"):
        train_encoder.python_func(valid_catalog=valid, model=model, metrics=metrics, config={"epoch": 1})
    with pytest.raises(ValueError, match="backbone must be one of"):
        train_encoder.python_func(valid_catalog=valid, model=model, metrics=metrics, config={"backbone": "vgg"})
