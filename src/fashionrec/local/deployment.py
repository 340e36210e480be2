"""Deployment records of a local work dir: where each run's serving artifacts are, and which one is served.

Every run the gate promoted writes ``deployments/<model_version>.json`` (its Feast store was materialized, so it can be
served); every run writes ``deployment.json``, the last run, for people. What is served is the model that holds the
registry's ``production`` alias: a run the gate rejected changes nothing, and ``fashionrec model rollback`` or
``promote`` changes what ``fashionrec serve --watch`` serves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from fashionrec.config import DEPLOYMENT_FILE, MAR_FILE, MODEL_STORE_DIR

DEPLOYMENTS_DIR = "deployments"  # one record per run, named after its model version


@dataclass(frozen=True)
class Deployment:
    """Where one trained model's serving artifacts are: the package, index and features stages' outputs."""

    model_store: Path
    index_dir: Path
    feature_repo: Path

    @property
    def model_version(self) -> str:
        """The version inside its .mar (the trained model's model_version)."""
        from fashionrec.serving.torchserve import mar_version

        return mar_version(self.model_store / MODEL_STORE_DIR / MAR_FILE)


class NotPromoted(RuntimeError):
    """Nothing servable: no model holds the production alias, or its run's artifacts are not in this work dir."""


def _read(path: Path) -> Deployment:
    data = json.loads(path.read_text(encoding="utf-8"))
    return Deployment(Path(data["model_store"]), Path(data["index_dir"]), Path(data["feature_repo"]))


def save_deployment(deployment: Deployment, work_dir: Path, promoted: bool = True) -> Path:
    """Record a run: deployment.json (the last run); deployments/<model_version>.json too if it was promoted (a
    rejected run, even of the same model version, never replaces a servable record)."""
    model_version = deployment.model_version  # read from the .mar once
    fields = {k: str(v) for k, v in asdict(deployment).items()}
    record = json.dumps({**fields, "model_version": model_version, "promoted": promoted}, indent=2)
    (work_dir / DEPLOYMENT_FILE).write_text(record, encoding="utf-8")
    (work_dir / DEPLOYMENTS_DIR).mkdir(parents=True, exist_ok=True)
    path = work_dir / DEPLOYMENTS_DIR / f"{model_version}.json"
    if promoted:
        path.write_text(record, encoding="utf-8")
    return path


def deployment_of(work_dir: Path, model_version: str) -> Deployment:
    path = work_dir / DEPLOYMENTS_DIR / f"{model_version}.json"
    if not path.is_file():
        raise NotPromoted(
            f"model {model_version} was never promoted by a pipeline run in {work_dir}: nothing to serve (no {path})"
        )
    return _read(path)


def production_deployment(work_dir: Path, registry_uri: str | None = None) -> Deployment:
    """The deployment of the model holding the registry's production alias (default registry: the work dir's)."""
    from fashionrec.training.registry import MlflowRegistry, default_registry_uri

    if not (work_dir / DEPLOYMENTS_DIR).is_dir():
        raise FileNotFoundError(
            f"{work_dir / DEPLOYMENTS_DIR} not found: run `fashionrec pipeline run --workdir {work_dir}` first"
        )
    production = MlflowRegistry(registry_uri or default_registry_uri(work_dir)).production()
    if production is None:
        raise NotPromoted(f"no model in {work_dir} holds the production alias: the gate has promoted none")
    return deployment_of(work_dir, production.model_version)
