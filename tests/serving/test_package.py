"""The package stage: the TorchServe model store that KServe's runtime reads, and the .mar inside it."""

import json
import zipfile
from pathlib import Path

from fashionrec.config import MODEL_CARD_FILE, MODEL_NAME, predictor_model_name
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.encoder_service import EncoderService
from fashionrec.serving.package import build_model_store
from fashionrec.serving.torchserve import mar_version


def test_model_store_layout_for_kserve(stages: StageOutputs) -> None:
    config = (stages.model_store / "config" / "config.properties").read_text()
    assert "model_store=/mnt/models/model-store" in config
    assert "service_envelope" not in config  # the handler parses v2 itself
    assert "management_address=http://127.0.0.1:" in config
    snapshot = json.loads(next(line for line in config.splitlines() if line.startswith("model_snapshot=")).split("=", 1)[1])
    version = json.loads((stages.model_dir / MODEL_CARD_FILE).read_text())["model_version"]
    # Served under a name of its own version, so a rollout can serve the next one beside it.
    assert snapshot["models"][predictor_model_name(version)][version]["marName"] == f"{MODEL_NAME}.mar"
    assert mar_version(stages.model_store / "model-store" / f"{MODEL_NAME}.mar") == version
    with zipfile.ZipFile(stages.model_store / "model-store" / f"{MODEL_NAME}.mar") as mar:
        names = set(mar.namelist())
    assert {
        "encoder.safetensors",
        "fashionrec/serving/weights.py",
        "fashionrec/training/model.py",
        MODEL_CARD_FILE,
        "encoder_handler.py",
        "fashionrec/serving/encoder_service.py",
        "fashionrec/imaging.py",
        "MAR-INF/MANIFEST.json",
    } <= names
    assert not any(n.endswith(("cli.py", "train.py")) for n in names)


def test_build_model_store_from_a_model_folder(stages: StageOutputs, tmp_path: Path) -> None:
    mar = build_model_store(stages.model_dir, tmp_path / "store")
    assert mar.is_file() and mar.stat().st_size > 1_000_000
    extracted = tmp_path / "extracted"
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(extracted)
    service = EncoderService.load(extracted)
    assert service.model_version == json.loads((stages.model_dir / MODEL_CARD_FILE).read_text())["model_version"]
