from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def train_encoder(
    valid_catalog: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    curve: Output[HTML],
    config: dict = {},  # noqa: B006 (KFP parameters need literal defaults)
    request_log_uri: str = "",
    event_log_uri: str = "",
    registry_uri: str = "",
) -> None:
    """Fine-tune a torchvision CNN with a 256-d L2-normalised embedding head on articleType (GPU when present).

    ``config``: training parameters by name (fashionrec.params.TrainConfig: backbone, epochs, learning_rate, ...);
    the pipeline passes its own. Unknown names and values outside a parameter's choices fail the step. The model
    artifact is a folder: encoder.pt (state_dict), model.json (version, backbone, classes, dataset digest, metrics) and
    history.json (loss, holdout accuracy and speed per epoch; ``curve`` plots it). The epoch with the best holdout
    accuracy is kept (keep_best_epoch). weights=production warm-starts from the production model of the registry at
    ``registry_uri`` (random weights while there is none).
    With ``coclick_weight`` above 0 and both logs (the transformers' request log and event log), products shoppers
    clicked from the same item query are pulled together too (the sessions the evaluation replays are left out).
    """
    from pathlib import Path

    from fashionrec.engagement.replay import coclicked_pairs, logged_sessions
    from fashionrec.params import TrainConfig, from_values
    from fashionrec.training.curve import training_curve_html
    from fashionrec.training.train import train

    settings = from_values(TrainConfig, config)
    pairs = None
    if settings.coclick_weight > 0 and request_log_uri and event_log_uri:
        pairs = coclicked_pairs(logged_sessions(request_log_uri, event_log_uri)[0])
    card = train(Path(valid_catalog.path), Path(model.path), settings, pairs, registry_uri=registry_uri)
    Path(curve.path).write_text(training_curve_html(Path(model.path)), encoding="utf-8")
    for name, value in card.metrics.items():
        metrics.log_metric(name, value)
    model.metadata.update({"model_version": card.model_version, "backbone": card.backbone, "dataset_digest": card.dataset_digest})
