"""The package stage: export the encoder and build a self-contained TorchServe model store for KServe.

Layout (KServe's TorchServe runtime reads exactly this from storageUri):
    config/config.properties
    model-store/fashionrec.mar   (encoder.safetensors + model.json + handler + the fashionrec modules the handler imports)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fashionrec.config import MAR_FILE, MODEL_CARD_FILE, MODEL_NAME, MODEL_STORE_DIR, SERVED_WEIGHTS_FILE, TS_CONFIG_FILE
from fashionrec.serving.entrypoints import kserve_file
from fashionrec.serving.torchserve import TorchServeSettings, torchserve_properties
from fashionrec.training.train import load_encoder

# The fashionrec modules the handler needs at run time inside the stock TorchServe image (paths in the package).
HANDLER_MODULES = (
    "__init__.py",
    "config.py",
    "imaging.py",
    "serving/__init__.py",
    "serving/encoder_service.py",
    "serving/weights.py",
    "training/__init__.py",
    "training/model.py",
)
HANDLER_FILE = "encoder_handler.py"  # in kserve/


def save_served_weights(model_dir: Path, out_file: Path) -> None:
    """The trained encoder's weights as safetensors (no pickle); serving rebuilds the architecture from the card."""
    from safetensors.torch import save_file

    encoder, _ = load_encoder(model_dir)
    save_file({name: tensor.contiguous() for name, tensor in encoder.state_dict().items()}, str(out_file))


def build_model_store(model_dir: Path, out_dir: Path, settings: TorchServeSettings | None = None) -> Path:
    """Write config/config.properties and model-store/fashionrec.mar under out_dir; return the .mar path."""
    store = out_dir / MODEL_STORE_DIR
    store.mkdir(parents=True, exist_ok=True)
    (out_dir / TS_CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
    model_version = json.loads((model_dir / MODEL_CARD_FILE).read_text(encoding="utf-8"))["model_version"]
    (out_dir / TS_CONFIG_FILE).write_text(
        torchserve_properties(settings or TorchServeSettings(), {model_version: MAR_FILE}), encoding="utf-8"
    )
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        save_served_weights(model_dir, staging / SERVED_WEIGHTS_FILE)
        extra = staging / "extra"
        package_dir = Path(__file__).resolve().parents[1]
        for name in HANDLER_MODULES:
            (extra / "fashionrec" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(package_dir / name, extra / "fashionrec" / name)
        shutil.copy2(model_dir / MODEL_CARD_FILE, extra / MODEL_CARD_FILE)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "model_archiver.model_packaging",
                "--model-name",
                MODEL_NAME,
                "--version",
                model_version,
                "--serialized-file",
                str(staging / SERVED_WEIGHTS_FILE),
                "--handler",
                str(kserve_file(HANDLER_FILE)),
                "--extra-files",
                str(extra),
                "--export-path",
                str(store),
                "--force",
            ],
            check=True,
            capture_output=True,
        )
    return store / MAR_FILE
