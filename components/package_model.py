from kfp import dsl
from kfp.dsl import Input, Model, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def package_model(model: Input[Model], model_store: Output[Model]) -> None:
    """Package the encoder into a self-contained TorchServe .mar (safetensors weights, no pickle; the handler rebuilds
    the architecture from the model card), laid out as KServe's TorchServe runtime reads it from storageUri:
    config/config.properties + model-store/fashionrec.mar."""
    from pathlib import Path

    from fashionrec.serving.package import build_model_store

    mar = build_model_store(Path(model.path), Path(model_store.path))
    model_store.metadata.update({"mar_bytes": mar.stat().st_size, **model.metadata})
