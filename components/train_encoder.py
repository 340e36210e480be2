from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def train_encoder(
    valid_catalog: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    backbone: str = "resnet18",
    weights: str = "none",
    epochs: int = 8,
    batch_size: int = 64,
    learning_rate: float = 0.002,
    seed: int = 0,
    holdout_fraction: float = 0.2,
):
    """Fine-tune a torchvision CNN with a 256-d L2-normalised embedding head on articleType (GPU when present).

    The model artifact is a folder: encoder.pt (state_dict) and model.json (version, backbone, classes, dataset
    digest, metrics).
    """
    from pathlib import Path

    from fashionrec.train import TrainConfig, train

    config = TrainConfig(
        backbone=backbone,
        weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        holdout_fraction=holdout_fraction,
    )
    card = train(Path(valid_catalog.path), Path(model.path), config)
    for name, value in card.metrics.items():
        metrics.log_metric(name, value)
    model.metadata.update({"model_version": card.model_version, "backbone": card.backbone, "dataset_digest": card.dataset_digest})
