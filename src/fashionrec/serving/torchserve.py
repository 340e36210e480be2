"""TorchServe as the predictor: its settings and config.properties, and the version recorded in a .mar. No torch here:
the process launcher and the hot swap use it too."""

from __future__ import annotations

import json
import re
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
    # Token auth (TorchServe >= 0.11: every API call needs a key from key_file.json). Off on a cluster: KServe's
    # wrapper in the same container calls TorchServe without a key, and nothing outside the pod reaches its loopback
    # ports. On for local serving (LocalTorchServe), where any local process could reach them.
    token_auth: bool = False


# TorchServe's keys expire after 60 minutes unless renewed through its token API; local keys are new at every start
# and die with the server, so they last as long as it may run (ten years).
TOKEN_EXPIRATION_MIN = 10 * 365 * 24 * 60


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
        # Registrations come only from the model store (the hot swap copies a release's archive in, then names it):
        # TorchServe's default would fetch and run a .mar from any http(s):// or file:// URL.
        "allowed_urls": allowed_urls(settings.model_store),
        "disable_token_authorization": "false" if settings.token_auth else "true",
        **({"token_expiration_min": TOKEN_EXPIRATION_MIN} if settings.token_auth else {}),
        "number_of_netty_threads": 4,
        "job_queue_size": 100,
        "max_request_size": 6 * 1024 * 1024 * MAX_BATCH // 8,
        "vmargs": f"-Xmx{settings.java_heap} -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def allowed_urls(model_store: str) -> str:
    """TorchServe's ``allowed_urls`` (a comma-separated list of Java regexes) admitting only archives of its model
    store, written for config.properties. A bare archive name (what the hot swap registers) is looked up in the
    store and never matched; every URL that does not match is refused with a 404."""
    if "," in model_store:
        raise ValueError(f"TorchServe splits allowed_urls on ',': a model store path cannot hold one ({model_store!r})")
    pattern = f"file://{re.escape(model_store.rstrip('/'))}/[^/]+\\.mar"
    return pattern.replace("\\", "\\\\")  # java.util.Properties reads a backslash as an escape: double each


@dataclass(frozen=True)
class TorchServeKeys:
    """The keys TorchServe writes to its key_file.json at start when token auth is on (new ones at every start)."""

    management: str
    inference: str

    @classmethod
    def read(cls, key_file: Path) -> TorchServeKeys:
        """Raises OSError while the file is not there yet, ValueError while it is half written."""
        data = json.loads(key_file.read_text(encoding="utf-8"))
        try:
            return cls(str(data["management"]["key"]), str(data["inference"]["key"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{key_file.name} holds no management and inference keys") from exc


def bearer(key: str) -> dict[str, str]:
    """The header TorchServe's token auth reads a key from."""
    return {"Authorization": f"Bearer {key}"}


def management_headers(key_file: Path | None) -> dict[str, str]:
    """The headers of a management API call: the management key, read now (a restarted TorchServe has new ones);
    none for a TorchServe without token auth (``key_file`` None)."""
    return {} if key_file is None else bearer(TorchServeKeys.read(key_file).management)


def mar_version(mar: Path) -> str:
    """The model version recorded in a .mar's manifest (the trained model's model_version)."""
    with zipfile.ZipFile(mar) as archive:
        return str(json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"])
