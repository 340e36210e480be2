"""The ``local`` rollout target: the TorchServe and transformer processes of `fashionrec serve` on loopback.

- The predictor: a release's encoder is registered in TorchServe through the management API (loopback only, with
  the management key of TorchServe's key_file.json; TorchServe takes archives of its model store only) under
  its own name (``predictor_model_name``) beside production's, workers up before the call returns; the old one is
  unregistered after a promote (or the new one after a rollback).
- The transformer: live/current links the stable index + Feast repo, live/canary the canary's with its traffic share
  (``canary.json``); KServe's ``POST /v2/repository/models/<name>/load`` (admin token) reloads both. Every flip is an
  atomic symlink rename, so no request fails or mixes two models.

`fashionrec serve` writes where its servers listen to ``<workdir>/serving.json``; a pipeline run's deploy step rolls
out onto them. When none run, the deploy step starts production's servers for the rollout and stops them after.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from fashionrec.catalog.update import ServedVersion, reencode_additions, replay_changes
from fashionrec.config import (
    MAR_FILE,
    MODEL_NAME,
    MODEL_STORE_DIR,
    SNAPSHOT_FEATURE_REPO_DIR,
    SNAPSHOT_INDEX_DIR,
    predictor_model_name,
)
from fashionrec.data.changes import ChangeLog
from fashionrec.deploy.rollout import Servable, federated_metrics, switch
from fashionrec.retrieval.feast_store import ensure_materialized, retire_model_version
from fashionrec.retrieval.index import IndexMeta
from fashionrec.serving.guard import ADMIN_HEADER
from fashionrec.serving.predictor_client import PredictorClient, make_predictor
from fashionrec.serving.processes import (
    LIVE_CANARY,
    LIVE_CURRENT,
    LIVE_DIR,
    LocalTorchServe,
    LocalTransformer,
    make_bundle,
    point_current,
    serve_locally,
)
from fashionrec.serving.release import Deployment, Release
from fashionrec.serving.torchserve import TorchServeSettings, management_headers, mar_version
from fashionrec.serving.transformer import CANARY_FILE
from fashionrec.storage import absolute_location
from fashionrec.workdir import WorkDir


class LocalRolloutError(RuntimeError):
    """A call to the local servers failed; the message says which."""


@dataclass(frozen=True)
class LocalServing:
    """Where the local servers listen and what the rollout needs to drive them."""

    management_url: str  # TorchServe's management API
    live_store: Path  # TorchServe's model store
    transformer_url: str
    admin_token_file: Path  # the transformer's repository API token
    live_dir: Path  # live/current and live/canary
    inference_url: str  # TorchServe's inference API (v2): the encoders `fashionrec catalog add` uses
    catalog_changes: str = ""  # the catalogue change log the transformer applies ("": none)
    # TorchServe's key_file.json: both of its APIs want a key from it (None: a TorchServe without token auth)
    predictor_key_file: Path | None = None

    @classmethod
    def of(cls, predictor: LocalTorchServe, transformer: LocalTransformer, live_dir: Path) -> LocalServing:
        changes = absolute_location(transformer.catalog_changes) if transformer.catalog_changes is not None else ""
        return cls(
            predictor.management_url, predictor.live_store, transformer.url, transformer.admin_token_file, live_dir,
            predictor.inference_url, changes, predictor.key_file,
        )  # fmt: skip

    def predictor(self) -> PredictorClient:
        """A v2 client of TorchServe's encoders (each model version under its own name)."""
        return make_predictor("v2", self.inference_url.removeprefix("http://"), key_file=self.predictor_key_file)

    def management_headers(self) -> dict[str, str]:
        """The management key, read at each call: a restarted TorchServe has new keys."""
        try:
            return management_headers(self.predictor_key_file)
        except (OSError, ValueError) as exc:  # TorchServe (re)starting: the caller retries as for a refused call
            raise LocalRolloutError(f"TorchServe's key file cannot be read: {exc}") from exc

    def served(self) -> list[ServedVersion]:
        """The model versions the transformer serves now (production, and a canary during a rollout) and the Feast
        repo each reads."""
        bundles = [self.live_dir / LIVE_CURRENT, self.live_dir / LIVE_CANARY]
        return [
            ServedVersion(
                IndexMeta.load(bundle / SNAPSHOT_INDEX_DIR).model_version, (bundle / SNAPSHOT_FEATURE_REPO_DIR).resolve()
            )
            for bundle in bundles
            if (bundle / SNAPSHOT_INDEX_DIR).is_dir()
        ]

    def save(self, work_dir: Path) -> Path:
        path = WorkDir(work_dir).serving_state
        state = {k: "" if v is None else str(v) for k, v in asdict(self).items()}  # the key file's path, never a key
        path.write_text(json.dumps(state, indent=2), encoding="utf-8")
        return path

    @classmethod
    def running(cls, work_dir: Path) -> LocalServing | None:
        """The servers `fashionrec serve --workdir work_dir` runs, if they answer."""
        path = WorkDir(work_dir).serving_state
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        serving = cls(
            data["management_url"], Path(data["live_store"]), data["transformer_url"], Path(data["admin_token_file"]),
            Path(data["live_dir"]), data.get("inference_url", ""), data.get("catalog_changes", ""),
            Path(data["predictor_key_file"]) if data.get("predictor_key_file") else None,
        )  # fmt: skip
        try:
            ready = httpx.get(f"{serving.transformer_url}/v2/health/ready", timeout=3).status_code == 200
        except httpx.HTTPError:
            ready = False
        return serving if ready else None


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        raise LocalRolloutError(f"{what} failed with {response.status_code}: {response.text[:500]}")


def served_versions(serving: LocalServing) -> set[str]:
    """The model versions whose encoder TorchServe serves now."""
    response = httpx.get(
        f"{serving.management_url}/models", params={"limit": 1000}, headers=serving.management_headers(), timeout=10
    )
    _check(response, "listing TorchServe's models")
    prefix = predictor_model_name("")
    return {m["modelName"].removeprefix(prefix) for m in response.json()["models"] if m["modelName"].startswith(prefix)}


def register_encoder(serving: LocalServing, model_store: Path, settings: TorchServeSettings | None = None) -> str:
    """The release's encoder registered in TorchServe under its own name, workers ready; returns its version."""
    settings = settings or TorchServeSettings()
    source = model_store / MODEL_STORE_DIR / MAR_FILE
    version = mar_version(source)
    archive = f"{predictor_model_name(version)}.mar"
    shutil.copy2(source, serving.live_store / archive)
    response = httpx.post(
        f"{serving.management_url}/models",
        params={
            "url": archive,
            "model_name": predictor_model_name(version),
            "initial_workers": settings.workers,
            "batch_size": settings.batch_size,
            "max_batch_delay": settings.max_batch_delay_ms,
            "response_timeout": settings.response_timeout_s,
            "synchronous": "true",
        },
        headers=serving.management_headers(),
        timeout=300,
    )
    _check(response, f"registering the encoder of {version} in TorchServe")
    return version


def unregister_encoder(serving: LocalServing, version: str) -> None:
    response = httpx.delete(
        f"{serving.management_url}/models/{predictor_model_name(version)}", headers=serving.management_headers(), timeout=60
    )
    _check(response, f"unregistering the encoder of {version}")


def reload_transformer(serving: LocalServing) -> None:
    """KServe's repository load endpoint, with the admin token it requires."""
    token = serving.admin_token_file.read_text(encoding="utf-8").strip()
    url = f"{serving.transformer_url}/v2/repository/models/{MODEL_NAME}/load"
    _check(httpx.post(url, headers={ADMIN_HEADER: f"Bearer {token}"}, timeout=120), "transformer index load")


def stable_version(live_dir: Path) -> str:
    """The model version of the index live/current links."""
    return IndexMeta.load(live_dir / LIVE_CURRENT / SNAPSHOT_INDEX_DIR).model_version


def as_deployment(release: Servable) -> Deployment:
    return release.deployment() if isinstance(release, Release) else release


class LocalTarget:
    """Rolls releases out onto local servers (fashionrec.deploy.rollout drives it)."""

    name = "local"

    def __init__(
        self, serving: LocalServing, drain_s: float = 2.0, prometheus_url: str = "", scrape_interval_s: float = 0.0
    ) -> None:
        self.serving = serving
        self.drain_s = drain_s
        # The canary check reads the transformer's /metrics, or a Prometheus that scrapes it (as on a cluster).
        self.prometheus_url = prometheus_url
        self.scrape_interval_s = scrape_interval_s if prometheus_url else 0.0
        self._registered: set[str] = set()  # encoders this rollout registered (a rollback unregisters them)

    def stable_version(self) -> str | None:
        return stable_version(self.serving.live_dir)

    def endpoint(self) -> str:
        return self.serving.transformer_url

    def metrics_text(self) -> str:
        if self.prometheus_url:
            return federated_metrics(self.prometheus_url)
        response = httpx.get(f"{self.serving.transformer_url}/metrics", timeout=10)
        _check(response, "reading the transformer's metrics")
        return response.text

    def start_canary(self, release: Servable, share: float) -> None:
        release = as_deployment(release)
        version = release.model_version
        if version not in served_versions(self.serving):  # a retry finds it registered already
            register_encoder(self.serving, release.model_store)
            self._registered.add(version)
        changes = ChangeLog(self.serving.catalog_changes) if self.serving.catalog_changes else None
        # A shared online store may have retired this version's vectors (a rollback to it): put them back first,
        # then the catalogue changes made since its training run.
        ensure_materialized(release.feature_repo, version, replay_changes(changes, version) if changes else None)
        if changes is not None:  # products added since its training run, encoded by its own encoder
            reencode_additions(changes, ServedVersion(version, release.feature_repo.resolve()), self.serving.predictor())
        bundle = make_bundle(release, self.serving.live_dir)
        (bundle / CANARY_FILE).write_text(json.dumps({"share": share}), encoding="utf-8")
        point_current(self.serving.live_dir, bundle.name, LIVE_CANARY)
        reload_transformer(self.serving)

    def promote(self, release: Servable) -> None:
        old = self.stable_version()
        canary = self.serving.live_dir / LIVE_CANARY
        point_current(self.serving.live_dir, canary.readlink().name)  # the canary's bundle becomes the stable one
        canary.unlink()
        reload_transformer(self.serving)
        time.sleep(self.drain_s)  # requests already on the old encoder finish before it goes
        if old is not None and old != release.model_version:
            with contextlib.suppress(LocalRolloutError, httpx.HTTPError):
                unregister_encoder(self.serving, old)  # if this fails it stays registered beside the new: harmless

    def rollback(self, release: Servable) -> None:
        problems = []
        with contextlib.suppress(FileNotFoundError):
            (self.serving.live_dir / LIVE_CANARY).unlink()
        try:
            reload_transformer(self.serving)
        except (LocalRolloutError, httpx.HTTPError, OSError) as exc:
            problems.append(f"transformer reload: {exc}")
        if release.model_version in self._registered and release.model_version != self.stable_version():
            time.sleep(self.drain_s)  # requests the canary already took finish on its encoder before it goes
            try:
                unregister_encoder(self.serving, release.model_version)
                self._registered.discard(release.model_version)
            except (LocalRolloutError, httpx.HTTPError) as exc:
                problems.append(f"unregistering {release.model_version}: {exc}")
        if problems:
            raise LocalRolloutError("; ".join(problems))

    def first_deploy(self, release: Servable) -> None:
        raise LocalRolloutError("the local servers always serve a model: nothing to deploy first")


@contextlib.contextmanager
def local_target(work_dir: Path, production: Deployment | None) -> Iterator[LocalTarget | None]:
    """The servers of `fashionrec serve --workdir work_dir` if they run; else production's, started for the rollout
    and stopped after; None when nothing is in production (the first release is served as it is)."""
    if (serving := LocalServing.running(work_dir)) is not None:
        yield LocalTarget(serving)
        return
    if production is None:
        yield None
        return
    changes = WorkDir(work_dir).catalog_changes
    with (
        tempfile.TemporaryDirectory(prefix="fashionrec-rollout-") as tmp,
        serve_locally(production, Path(tmp), catalog_changes=changes) as servers,
    ):
        predictor, transformer = servers
        assert isinstance(predictor, LocalTorchServe)
        yield LocalTarget(LocalServing.of(predictor, transformer, Path(tmp) / LIVE_DIR), drain_s=0.5)


def watch_tick(target: LocalTarget, production: Callable[[], Deployment]) -> str:
    """One tick of ``fashionrec serve --watch``: follow the production alias. Never raises: a transient error
    (TorchServe's management API down, the registry locked, a failed switch, already rolled back) is reported and
    the next tick tries again."""
    try:
        deployment = production()
        replaced = switch(target, deployment)
        retired = retire_model_version(deployment.feature_repo, replaced) if replaced is not None else None
    except Exception as exc:  # anything from the registry or the servers: report it, keep serving
        return f"could not switch to the production model ({type(exc).__name__}: {exc}); still serving"
    if replaced is None:
        return ""
    cleaned = f"; {retired} vectors of {replaced} deleted from the shared online store" if retired is not None else ""
    return f"switched model_version {replaced} -> {target.stable_version()} with no request dropped{cleaned}"
