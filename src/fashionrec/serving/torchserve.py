"""TorchServe as the predictor: its settings and config.properties, and the version recorded in a .mar. No torch here:
the process launcher and the hot swap use it too."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fashionrec.config import (
    DYNAMIC_BATCH_DELAY_MS,
    DYNAMIC_BATCH_SIZE,
    MAX_BATCH,
    PREDICTOR_CPUS,
    TORCHSERVE_GRPC_INFERENCE_PORT,
    TORCHSERVE_GRPC_MANAGEMENT_PORT,
    TORCHSERVE_INFERENCE_PORT,
    TORCHSERVE_MANAGEMENT_PORT,
    TORCHSERVE_METRICS_PORT,
    predictor_model_name,
)


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
    workers: int = PREDICTOR_CPUS  # one single-threaded worker per CPU of the pod (OMP_NUM_THREADS=1)
    batch_size: int = DYNAMIC_BATCH_SIZE
    max_batch_delay_ms: int = DYNAMIC_BATCH_DELAY_MS
    response_timeout_s: int = 60
    java_heap: str = "512m"


def torchserve_properties(settings: TorchServeSettings, archives: dict[str, str]) -> str:
    """config.properties registering each model version of ``archives`` (model_version -> .mar file name in the
    model store) under its own name, ``predictor_model_name(version)``: a store can serve the version in production
    and the one being rolled out side by side."""
    models = {
        predictor_model_name(version): {
            version: {
                "defaultVersion": True,
                "marName": mar,
                "minWorkers": settings.workers,
                "maxWorkers": settings.workers,
                "batchSize": settings.batch_size,
                "maxBatchDelay": settings.max_batch_delay_ms,
                "responseTimeout": settings.response_timeout_s,
            }
        }
        for version, mar in archives.items()
    }
    snapshot = {"name": "startup.cfg", "modelCount": len(models), "models": models}
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
        # The model API lets a new version be registered beside the served one; it is only reachable on loopback.
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


def mar_version(mar: Path) -> str:
    """The model version recorded in a .mar's manifest (the trained model's model_version)."""
    with zipfile.ZipFile(mar) as archive:
        return str(json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"])
