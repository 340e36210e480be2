from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def train_encoder(valid_catalog: Input[Dataset], model: Output[Model], metrics: Output[Metrics], config: dict = {}) -> None:  # noqa: B006 (KFP parameters need literal defaults)
    """Fine-tune a torchvision CNN with a 256-d L2-normalised embedding head on articleType (GPU when present).

    ``config``: training parameters by name (fashionrec.params.TrainConfig: backbone, epochs, learning_rate, ...);
    the pipeline passes its own. Unknown names and values outside a parameter's choices fail the step. The model
    artifact is a folder: encoder.pt (state_dict) and model.json (version, backbone, classes, dataset digest, metrics).
    """
    from pathlib import Path

    from fashionrec.params import TrainConfig, from_values
    from fashionrec.training.train import train

    card = train(Path(valid_catalog.path), Path(model.path), from_values(TrainConfig, config))
    for name, value in card.metrics.items():
        metrics.log_metric(name, value)
    model.metadata.update({"model_version": card.model_version, "backbone": card.backbone, "dataset_digest": card.dataset_digest})
