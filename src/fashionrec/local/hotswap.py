"""Hot swap of a served model version with zero failed requests, in the order that never mixes two models.

1. TorchServe: copy the new .mar into the live model store and register it through the management API (loopback
   only) beside the running version, workers up before the call returns. The old version stays the default.
2. Transformer: point its ``--index_dir``/``--feature_repo`` at the new version (one atomic symlink rename) and call
   KServe's ``POST /v2/repository/models/<name>/load``. It now holds both index snapshots, so an embedding of either
   version is searched in its own index.
3. TorchServe: make the new version the default. New requests are embedded by the new model.
4. After a drain, unregister the old version. The transformer drops the old snapshot at its next swap.

On a cluster, KServe does the equivalent with a new revision of the InferenceService (canary rollout); the
transformer's per-version snapshots are what make old and new predictor pods safe to run side by side.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx

from fashionrec.config import MAR_FILE, MODEL_NAME, MODEL_STORE_DIR
from fashionrec.local.deployment import Deployment
from fashionrec.local.processes import LocalTorchServe, link_deployment
from fashionrec.serving.torchserve import TorchServeSettings, mar_version


class SwapError(RuntimeError):
    """A swap step failed; the message says which, and what is served now."""


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        raise SwapError(f"{what} failed with {response.status_code}: {response.text[:500]}")


def register_version(predictor: LocalTorchServe, model_store: Path, settings: TorchServeSettings | None = None) -> str:
    """Step 1: the new .mar registered beside the running version, its workers ready; returns its version."""
    settings = settings or predictor.settings
    source = model_store / MODEL_STORE_DIR / MAR_FILE
    version = mar_version(source)
    archive = f"{MODEL_NAME}-{version}.mar"
    shutil.copy2(source, predictor.live_store / archive)
    response = httpx.post(
        f"{predictor.management_url}/models",
        params={
            "url": archive,
            "model_name": MODEL_NAME,
            "initial_workers": settings.workers,
            "batch_size": settings.batch_size,
            "max_batch_delay": settings.max_batch_delay_ms,
            "response_timeout": settings.response_timeout_s,
            "synchronous": "true",
        },
        timeout=300,
    )
    _check(response, f"registering {MODEL_NAME} version {version} in TorchServe")
    return version


def served_versions(predictor: LocalTorchServe) -> dict[str, bool]:
    """TorchServe's registered versions of the model, and which is the default."""
    response = httpx.get(f"{predictor.management_url}/models/{MODEL_NAME}/all", timeout=10)
    _check(response, "listing model versions")
    versions: dict[str, bool] = {}
    for entry in response.json():
        versions[str(entry["modelVersion"])] = False
    default = httpx.get(f"{predictor.management_url}/models/{MODEL_NAME}", timeout=10).json()[0]["modelVersion"]
    versions[str(default)] = True
    return versions


def default_version(predictor: LocalTorchServe) -> str:
    """The version TorchServe answers with now."""
    return next(v for v, default in served_versions(predictor).items() if default)


def deployment_version(deployment: Deployment) -> str:
    return mar_version(deployment.model_store / MODEL_STORE_DIR / MAR_FILE)


def swap(
    predictor: LocalTorchServe, transformer_url: str, live_dir: Path, new: Deployment, drain_s: float = 2.0
) -> tuple[str, str]:
    """Run the four steps; returns (old version, new version)."""
    old = default_version(predictor)
    if deployment_version(new) == old:
        raise SwapError(f"version {old} is already the one served")
    version = register_version(predictor, new.model_store)
    link_deployment(new, live_dir)
    _check(httpx.post(f"{transformer_url}/v2/repository/models/{MODEL_NAME}/load", timeout=120), "transformer index load")
    _check(
        httpx.put(f"{predictor.management_url}/models/{MODEL_NAME}/{version}/set-default", timeout=30),
        f"making {version} the default",
    )
    time.sleep(drain_s)  # requests already queued on the old version finish before it goes
    _check(httpx.delete(f"{predictor.management_url}/models/{MODEL_NAME}/{old}", timeout=60), f"unregistering {old}")
    return old, version


def swap_if_newer(
    predictor: LocalTorchServe, transformer_url: str, live_dir: Path, latest: Deployment | None, drain_s: float = 2.0
) -> tuple[str, str] | None:
    """One tick of a watch loop: swap to ``latest`` when its model version is not the one served; None otherwise."""
    if latest is None or deployment_version(latest) == default_version(predictor):
        return None
    return swap(predictor, transformer_url, live_dir, latest, drain_s)
