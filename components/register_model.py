from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    model_store: Input[Model],
    index: Input[Artifact],
    evaluation: Input[Artifact],
    decision: Input[Markdown],
    registry_uri: str,
    params: dict,
) -> int:
    """Log the training run (parameters, metrics, artifacts) to the model registry (MLflow), register it as a new
    version with the model, the TorchServe model store, the index, the evaluation, the gate decision, the dataset
    digest and the git commit. Returns the registry version number (0 when ``registry_uri`` is empty: no registry).
    The "production" alias is moved by the deploy step, once the rollout promoted the model."""
    import json
    from pathlib import Path

    from fashionrec.config import METRICS_FILE, MODEL_CARD_FILE
    from fashionrec.training.registry import MlflowRegistry

    if not registry_uri:
        return 0
    registry = MlflowRegistry(registry_uri)
    card = json.loads((Path(model.path) / MODEL_CARD_FILE).read_text())
    metrics = {
        **card["metrics"],
        **{
            k: v for k, v in json.loads((Path(evaluation.path) / METRICS_FILE).read_text()).items() if isinstance(v, (int, float))
        },
    }
    artifacts = {
        "model": Path(model.path),
        "model_store": Path(model_store.path),
        "index": Path(index.path),
        "evaluation": Path(evaluation.path),
        "gate": Path(decision.path),
    }
    return registry.log_and_register(artifacts, params, metrics, card).version
