"""Hot swap of a served model version with zero failed requests, in the order that never mixes two models, and
transactional: a swap that fails at any step puts back what was served.

1. TorchServe: copy the new .mar into the live model store and register it through the management API (loopback
   only) beside the running version, workers up before the call returns. The old version stays the default.
   A version already registered (a retry after a failed swap) is reused.
2. Transformer: point its ``--index_dir``/``--feature_repo`` at the new version (one atomic symlink rename) and call
   KServe's ``POST /v2/repository/models/<name>/load``. It now holds both index snapshots, so an embedding of either
   version is searched in its own index.
3. TorchServe: make the new version the default. New requests are embedded by the new model.
4. After a drain, unregister the old version. The transformer drops the old snapshot at its next swap.

If step 1, 2 or 3 fails: the old version is made the default again, the symlink points back at the old bundle, the
transformer reloads it (its current snapshot is the old one again), and the new version is unregistered. A failure in
step 4 leaves the old version registered beside the new one: harmless, and the next swap unregisters it.

On a cluster, KServe does the equivalent with a new revision of the InferenceService (canary rollout); the
transformer's per-version snapshots are what make old and new predictor pods safe to run side by side.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from fashionrec.config import MAR_FILE, MODEL_NAME, MODEL_STORE_DIR
from fashionrec.local.deployment import Deployment
from fashionrec.local.processes import LocalTorchServe, LocalTransformer, current_bundle, link_deployment, point_current
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


def set_default(predictor: LocalTorchServe, version: str) -> None:
    response = httpx.put(f"{predictor.management_url}/models/{MODEL_NAME}/{version}/set-default", timeout=30)
    _check(response, f"making {version} the default")


def unregister(predictor: LocalTorchServe, version: str) -> None:
    response = httpx.delete(f"{predictor.management_url}/models/{MODEL_NAME}/{version}", timeout=60)
    _check(response, f"unregistering {version}")


def reload_transformer(transformer: LocalTransformer) -> None:
    """KServe's repository load endpoint, with the admin token it requires."""
    url = f"{transformer.url}/v2/repository/models/{MODEL_NAME}/load"
    _check(httpx.post(url, headers=transformer.admin_headers, timeout=120), "transformer index load")


def swap(
    predictor: LocalTorchServe, transformer: LocalTransformer, live_dir: Path, new: Deployment, drain_s: float = 2.0
) -> tuple[str, str]:
    """Run the four steps; returns (old version, new version). On failure everything is put back and SwapError
    says what failed."""
    old = default_version(predictor)
    version = new.model_version
    if version == old:
        raise SwapError(f"version {old} is already the one served")
    old_bundle = current_bundle(live_dir)
    undo: list[tuple[str, Callable[[], None]]] = []
    try:
        if version not in served_versions(predictor):
            register_version(predictor, new.model_store)
            undo.append(("unregister the new version", lambda: unregister(predictor, version)))

        def point_back() -> None:
            point_current(live_dir, old_bundle)
            reload_transformer(transformer)

        undo.append(("point the transformer back at the old version", point_back))
        link_deployment(new, live_dir)
        reload_transformer(transformer)
        undo.append(("make the old version the default", lambda: set_default(predictor, old)))
        set_default(predictor, version)
    except (SwapError, httpx.HTTPError, OSError, ValueError) as exc:
        problems = _undo(undo)
        state = f"still serving {old}" if not problems else f"rollback incomplete ({'; '.join(problems)})"
        raise SwapError(f"swap to {version} failed ({exc}); rolled back, {state}") from exc
    time.sleep(drain_s)  # requests already queued on the old version finish before it goes
    with contextlib.suppress(SwapError, httpx.HTTPError):
        unregister(predictor, old)  # if this fails the old version stays registered beside the new: harmless
    return old, version


def _undo(steps: list[tuple[str, Callable[[], None]]]) -> list[str]:
    """Run the undo steps, last first; every step runs even when one fails. Returns what failed."""
    problems = []
    for name, step in reversed(steps):
        try:
            step()
        except (SwapError, httpx.HTTPError, OSError) as exc:
            problems.append(f"{name}: {exc}")
    return problems


def swap_if_newer(
    predictor: LocalTorchServe, transformer: LocalTransformer, live_dir: Path, latest: Deployment | None, drain_s: float = 2.0
) -> tuple[str, str] | None:
    """One tick of a watch loop: swap to ``latest`` when its model version is not the one served; None otherwise."""
    if latest is None or latest.model_version == default_version(predictor):
        return None
    return swap(predictor, transformer, live_dir, latest, drain_s)


def watch_tick(
    predictor: LocalTorchServe,
    transformer: LocalTransformer,
    live_dir: Path,
    production: Callable[[], Deployment],
    drain_s: float = 2.0,
) -> str:
    """One tick of ``fashionrec serve --watch``: follow the production alias. Never raises: a transient error
    (TorchServe's management API down, the registry locked, a failed swap, already rolled back) is reported and the
    next tick tries again."""
    try:
        swapped = swap_if_newer(predictor, transformer, live_dir, production(), drain_s)
    except SwapError as exc:
        return f"hot swap failed: {exc}"
    except Exception as exc:  # anything from the registry or the servers: report it, keep serving
        return f"could not check for a new production model ({type(exc).__name__}: {exc}); still serving"
    if swapped is None:
        return ""
    return f"hot-swapped model_version {swapped[0]} -> {swapped[1]} with no request dropped"
