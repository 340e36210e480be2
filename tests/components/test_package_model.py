import json
from pathlib import Path

from kfp.dsl import Model
from kfp_artifacts import artifact

from components.package_model import package_model
from fashionrec.config import MAR_FILE, MODEL_STORE_DIR, TS_CONFIG_FILE
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.torchserve import mar_version
from fashionrec.training.card import ModelCard


def test_package_model_writes_the_model_store_kserve_reads(stages: StageOutputs, tmp_path: Path) -> None:
    model = artifact(Model, stages.model_dir.parent, stages.model_dir.name)
    model.metadata.update({"model_version": ModelCard.load(stages.model_dir).model_version})
    store = artifact(Model, tmp_path, "store")
    package_model.python_func(model=model, model_store=store)
    mar = Path(store.path) / MODEL_STORE_DIR / MAR_FILE
    assert mar.is_file() and (Path(store.path) / TS_CONFIG_FILE).is_file()
    assert mar_version(mar) == model.metadata["model_version"]
    assert json.loads(json.dumps(store.metadata))["model_version"] == model.metadata["model_version"]
    assert store.metadata["mar_bytes"] == mar.stat().st_size
