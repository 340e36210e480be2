"""What happens between epochs: progress lines, the kept epoch, the moving average, warm starts, history.json."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fashionrec.config import TRAINING_HISTORY_FILE, WEIGHTS_FILE
from fashionrec.local.stages import StageOutputs
from fashionrec.params import TrainConfig
from fashionrec.training.card import ModelCard
from fashionrec.training.model import CosineClassifier, build_encoder
from fashionrec.training.train import (
    EpochRecord,
    Trainer,
    cpu_state,
    format_duration,
    history_row,
    initial_encoder,
    moving_average,
    progress_line,
    train,
)


def test_progress_line_says_epoch_loss_accuracy_speed_and_time_left() -> None:
    record = EpochRecord(epoch=3, loss=0.5, seconds=90.0, images_per_second=212.4, holdout_accuracy=0.8123)
    line = progress_line(record, epochs=10, first_epoch=0, best_so_far=True)
    # 3 epochs in 1:30 -> 30 s each -> 7 left: 3:30
    assert line == "epoch 3/10: loss 0.500, holdout accuracy 0.812 (best so far), 212 images/s, 1:30 elapsed, about 3:30 left"
    # A resumed run estimates from the epochs it ran itself; no holdout: no accuracy and no "best".
    resumed = EpochRecord(epoch=3, loss=0.5, seconds=60.0, images_per_second=100.0)
    assert progress_line(resumed, epochs=4, first_epoch=2, best_so_far=True) == (
        "epoch 3/4: loss 0.500, 100 images/s, 1:00 elapsed, about 1:00 left"
    )
    assert format_duration(3725) == "1:02:05" and format_duration(59.6) == "1:00"


def test_a_history_line_is_strict_json_without_a_holdout() -> None:
    line = history_row(EpochRecord(epoch=1, loss=0.5, seconds=3.0, images_per_second=10.0))
    assert json.loads(json.dumps(line, allow_nan=False)) == {
        "epoch": 1,
        "loss": 0.5,
        "seconds": 3.0,
        "images_per_second": 10.0,
        "holdout_accuracy": None,
    }


def snapshots_of(stages: StageOutputs, tmp_path: Path, config: TrainConfig) -> tuple[ModelCard, list[dict], dict]:
    """Train, recording each epoch's candidate weights; return the card, the snapshots and history.json."""
    snapshots: list[dict] = []

    def remember(trainer: Trainer, record: EpochRecord) -> None:
        encoder, _ = trainer.candidate()
        snapshots.append({"record": record, "candidate": cpu_state(encoder), "raw": cpu_state(trainer.encoder)})

    card = train(stages.valid, tmp_path, config, on_epoch=remember)
    history = json.loads((tmp_path / TRAINING_HISTORY_FILE).read_text())
    return card, snapshots, history


def same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("keep_best_epoch", [True, False])
def test_the_best_or_the_last_epoch_is_written_and_every_epoch_is_in_the_history(
    stages: StageOutputs, tmp_path: Path, keep_best_epoch: bool
) -> None:
    config = TrainConfig(epochs=4, batch_size=16, seed=4, holdout_fraction=0.3, keep_best_epoch=keep_best_epoch)
    card, snapshots, history = snapshots_of(stages, tmp_path, config)
    accuracies = [s["record"].holdout_accuracy for s in snapshots]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["holdout_accuracy"] for r in history] == pytest.approx(accuracies)
    assert all(r["images_per_second"] > 0 and r["seconds"] > 0 for r in history)
    # Ties go to the later epoch: the last index of the maximum.
    best = max(range(4), key=lambda i: (accuracies[i], i)) if keep_best_epoch else 3
    assert card.metrics["kept_epoch"] == best + 1
    assert card.metrics["holdout_accuracy"] == pytest.approx(accuracies[best])
    written = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert same_weights(written, snapshots[best]["candidate"])


def test_the_moving_average_is_the_model_and_differs_from_the_raw_weights(stages: StageOutputs, tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, batch_size=16, seed=4, ema_decay=0.7, keep_best_epoch=False)
    card, snapshots, _ = snapshots_of(stages, tmp_path, config)
    last = snapshots[-1]
    assert not same_weights(last["candidate"], last["raw"])
    assert same_weights(torch.load(tmp_path / WEIGHTS_FILE, weights_only=True), last["candidate"])
    assert card.metrics["kept_epoch"] == 2
    with pytest.raises(ValueError, match="below 1"):
        moving_average(build_encoder("resnet18", "none", 8), CosineClassifier(8, 3), decay=1.0)


def test_moving_average_follows_its_decay() -> None:
    encoder, classifier = build_encoder("resnet18", "none", 8), CosineClassifier(8, 3)
    averaged = moving_average(encoder, classifier, decay=0.75)
    assert averaged is not None
    start = classifier.proxies.detach().clone()
    both = torch.nn.ModuleList([encoder, classifier])
    averaged.update_parameters(both)  # the first step takes the weights as they are
    with torch.no_grad():
        classifier.proxies.add_(1.0)
    averaged.update_parameters(both)
    mean = averaged.module[1].proxies.detach()  # type: ignore[index]
    assert torch.allclose(mean, 0.75 * start + 0.25 * (start + 1.0), atol=1e-6)


def test_a_trained_model_folder_warm_starts_the_whole_encoder(stages: StageOutputs, tmp_path: Path) -> None:
    card = ModelCard.load(stages.model_dir)
    config = TrainConfig(weights=str(stages.model_dir), embedding_dim=card.embedding_dim)
    warm = initial_encoder(config)
    assert same_weights(cpu_state(warm), torch.load(stages.model_dir / WEIGHTS_FILE, weights_only=True))
    cold = initial_encoder(TrainConfig(embedding_dim=card.embedding_dim))
    assert not same_weights(cpu_state(cold), cpu_state(warm))
    with pytest.raises(ValueError, match="cannot warm-start"):
        initial_encoder(TrainConfig(weights=str(stages.model_dir), embedding_dim=card.embedding_dim * 2))


def test_a_warm_start_begins_where_the_model_left_off(stages: StageOutputs, tmp_path: Path) -> None:
    """One epoch from the trained model starts from its embeddings (only the class proxies are new): a lower loss and
    a better holdout accuracy than one epoch from random weights."""
    config = TrainConfig(epochs=1, batch_size=16, seed=1, holdout_fraction=0.2)
    warm = train(stages.valid, tmp_path / "warm", replace(config, weights=str(stages.model_dir)))
    cold = train(stages.valid, tmp_path / "cold", config)
    assert not math.isnan(warm.metrics["holdout_accuracy"])
    assert warm.metrics["holdout_accuracy"] > cold.metrics["holdout_accuracy"]
    assert warm.metrics["train_loss"] < cold.metrics["train_loss"]


def test_label_smoothing_reaches_the_loss(stages: StageOutputs, tmp_path: Path) -> None:
    """The same seed and data, smoothing on and off: the first step already differs, and a smoothed loss cannot fall
    to zero (its floor is the entropy of the smoothed target), so with smoothing the recorded loss is higher."""
    config = TrainConfig(epochs=1, batch_size=16, seed=4, keep_best_epoch=False)
    plain, _, plain_history = snapshots_of(stages, tmp_path / "plain", replace(config, label_smoothing=0.0))
    smoothed, _, smoothed_history = snapshots_of(stages, tmp_path / "smoothed", replace(config, label_smoothing=0.4))
    assert plain.model_version != smoothed.model_version
    assert smoothed_history[0]["loss"] > plain_history[0]["loss"]


def test_a_time_budget_plans_the_epochs_that_fit_and_trains_what_those_epochs_would(stages: StageOutputs, tmp_path: Path) -> None:
    """A budget far below one epoch: one epoch is planned, and the model is the one a run asked for one epoch
    gives (the measurement touches neither the weights nor the random streams). A budget that fits changes nothing."""
    config = TrainConfig(epochs=3, batch_size=16, seed=4, keep_best_epoch=False)
    squeezed = train(stages.valid, tmp_path / "squeezed", replace(config, time_budget_minutes=1e-6))
    one_epoch = train(stages.valid, tmp_path / "one", replace(config, epochs=1, time_budget_minutes=0))
    assert (squeezed.metrics["epochs_planned"], squeezed.metrics["epochs_requested"]) == (1, 3)
    assert squeezed.model_version == one_epoch.model_version  # the hash of the weights
    roomy = train(stages.valid, tmp_path / "roomy", replace(config, time_budget_minutes=600))
    assert (roomy.metrics["epochs_planned"], roomy.metrics["epochs_requested"]) == (3, 3)
