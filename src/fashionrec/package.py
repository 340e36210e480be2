"""The package stage: export the encoder and build a self-contained TorchServe model store for KServe.

Layout (KServe's TorchServe runtime reads exactly this from storageUri):
    config/config.properties
    model-store/fashionrec.mar   (encoder.pt2 + model.json + handler + the fashionrec modules the handler imports)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from fashionrec.config import (
    DYNAMIC_BATCH_DELAY_MS,
    DYNAMIC_BATCH_SIZE,
    MAR_FILE,
    MAX_BATCH,
    MODEL_NAME,
    MODEL_STORE_DIR,
    TORCHSERVE_GRPC_INFERENCE_PORT,
    TORCHSERVE_GRPC_MANAGEMENT_PORT,
    TORCHSERVE_INFERENCE_PORT,
    TORCHSERVE_MANAGEMENT_PORT,
    TORCHSERVE_METRICS_PORT,
    TS_CONFIG_FILE,
)
from fashionrec.encoder_service import CARD_FILE, EXPORTED_FILE
from fashionrec.train import load_encoder

# The fashionrec modules the handler needs at run time inside the stock TorchServe image.
HANDLER_MODULES = ("__init__.py", "config.py", "imaging.py", "encoder_service.py")


def handler_file() -> Path:
    """kserve/encoder_handler.py: next to the package in a checkout, or installed beside it in the image."""
    for candidate in (
        Path(__file__).resolve().parents[2] / "kserve" / "encoder_handler.py",
        Path(__file__).with_name("encoder_handler.py"),
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("encoder_handler.py not found")


def export_encoder(model_dir: Path, out_file: Path) -> None:
    """torch.export the trained encoder with a dynamic batch dimension; the result needs no fashionrec code."""
    encoder, card = load_encoder(model_dir)
    example = torch.zeros((2, 3, *card.image_size), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(encoder, (example,), dynamic_shapes={"images": {0: batch}})
    torch.export.save(program, str(out_file))


@dataclass(frozen=True)
class TorchServeSettings:
    """Addresses and batching of TorchServe. Cluster defaults: inference and management on the pod's loopback (the
    KServe wrapper in the same container is the only client), metrics on all interfaces for Prometheus."""

    inference_address: str = f"http://127.0.0.1:{TORCHSERVE_INFERENCE_PORT}"
    management_address: str = f"http://127.0.0.1:{TORCHSERVE_MANAGEMENT_PORT}"
    metrics_address: str = f"http://0.0.0.0:{TORCHSERVE_METRICS_PORT}"
    grpc_inference_port: int = TORCHSERVE_GRPC_INFERENCE_PORT
    grpc_management_port: int = TORCHSERVE_GRPC_MANAGEMENT_PORT
    model_store: str = "/mnt/models/model-store"
    workers: int = 1
    batch_size: int = DYNAMIC_BATCH_SIZE
    max_batch_delay_ms: int = DYNAMIC_BATCH_DELAY_MS
    response_timeout_s: int = 60
    java_heap: str = "512m"


def torchserve_properties(settings: TorchServeSettings, model_version: str) -> str:
    """config.properties; the model is registered under its model_version, so a hot swap can add the next one."""
    snapshot = {
        "name": "startup.cfg",
        "modelCount": 1,
        "models": {
            MODEL_NAME: {
                model_version: {
                    "defaultVersion": True,
                    "marName": MAR_FILE,
                    "minWorkers": settings.workers,
                    "maxWorkers": settings.workers,
                    "batchSize": settings.batch_size,
                    "maxBatchDelay": settings.max_batch_delay_ms,
                    "responseTimeout": settings.response_timeout_s,
                }
            }
        },
    }
    lines = {
        "inference_address": settings.inference_address,
        "management_address": settings.management_address,
        "metrics_address": settings.metrics_address,
        "grpc_inference_port": settings.grpc_inference_port,
        "grpc_management_port": settings.grpc_management_port,
        "grpc_inference_address": "127.0.0.1",
        "grpc_management_address": "127.0.0.1",
        "model_store": settings.model_store,
        "load_models": "all",
        "model_snapshot": json.dumps(snapshot, separators=(",", ":")),
        "default_workers_per_model": settings.workers,
        "enable_metrics_api": "true",
        "metrics_mode": "prometheus",
        "enable_envvars_config": "true",
        "install_py_dep_per_model": "false",
        # The model API lets a new version be registered (hot swap); it is only reachable on loopback.
        "enable_model_api": "true",
        # Token auth is on by default since 0.11; the management API is loopback-only and the data plane sits
        # behind KServe's own ingress and auth.
        "disable_token_authorization": "true",
        "number_of_netty_threads": 4,
        "job_queue_size": 100,
        "max_request_size": 6 * 1024 * 1024 * MAX_BATCH // 8,
        "vmargs": f"-Xmx{settings.java_heap} -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def build_model_store(model_dir: Path, out_dir: Path, settings: TorchServeSettings | None = None) -> Path:
    """Write config/config.properties and model-store/fashionrec.mar under out_dir; return the .mar path."""
    store = out_dir / MODEL_STORE_DIR
    store.mkdir(parents=True, exist_ok=True)
    (out_dir / TS_CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
    model_version = json.loads((model_dir / CARD_FILE).read_text(encoding="utf-8"))["model_version"]
    (out_dir / TS_CONFIG_FILE).write_text(
        torchserve_properties(settings or TorchServeSettings(), model_version), encoding="utf-8"
    )
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        export_encoder(model_dir, staging / EXPORTED_FILE)
        extra = staging / "extra"
        (extra / "fashionrec").mkdir(parents=True)
        package_dir = Path(__file__).resolve().parent
        for name in HANDLER_MODULES:
            shutil.copy2(package_dir / name, extra / "fashionrec" / name)
        shutil.copy2(model_dir / CARD_FILE, extra / CARD_FILE)
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
                str(staging / EXPORTED_FILE),
                "--handler",
                str(handler_file()),
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


def mar_version(mar: Path) -> str:
    """The model version recorded in a .mar's manifest (the trained model's model_version)."""
    with zipfile.ZipFile(mar) as archive:
        return str(json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"])
