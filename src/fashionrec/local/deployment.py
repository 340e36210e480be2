"""Deployment records of a local work dir: where each run's serving artifacts are, and which one is served.

A run whose model the gate passed publishes it as a release under ``<workdir>/releases/<model_version>/`` (the
deploy step, fashionrec.deploy: the same layout as in a bucket on a cluster). Every run writes ``deployment.json``,
the last run's outputs, for people. What is served is the release of the model holding the registry's
``production`` alias: a rejected or rolled-back run changes nothing, and ``fashionrec model rollback`` or
``promote`` changes what ``fashionrec serve --watch`` serves.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from fashionrec.serving.release import Deployment, read_release
from fashionrec.training.registry import MlflowRegistry, default_registry_uri
from fashionrec.workdir import WorkDir

__all__ = [
    "Deployment",
    "NotPromoted",
    "deployment_of",
    "production_deployment",
    "save_deployment",
]


class NotPromoted(RuntimeError):
    """Nothing servable: no model holds the production alias, or it has no release in this work dir."""


def save_deployment(deployment: Deployment, work_dir: Path, promoted: bool) -> Path:
    """Record the last run's outputs in deployment.json, for people."""
    fields = {k: str(v) for k, v in asdict(deployment).items()}
    record = json.dumps({**fields, "model_version": deployment.model_version, "promoted": promoted}, indent=2)
    path = WorkDir(work_dir).deployment_record
    path.write_text(record, encoding="utf-8")
    return path


def deployment_of(work_dir: Path, model_version: str) -> Deployment:
    release = read_release(WorkDir(work_dir).releases, model_version)
    if release is None:
        raise NotPromoted(
            f"model {model_version} was never released by a pipeline run in {work_dir}: nothing to serve "
            f"(no {Path(WorkDir(work_dir).releases) / model_version})"
        )
    return release.deployment()


def production_deployment(work_dir: Path, registry_uri: str | None = None) -> Deployment:
    """The release of the model holding the registry's production alias (default registry: the work dir's)."""
    releases = WorkDir(work_dir).releases
    if not Path(releases).is_dir():
        raise FileNotFoundError(f"{releases} not found: run `fashionrec pipeline run --workdir {work_dir}` first")
    production = MlflowRegistry(registry_uri or default_registry_uri(work_dir)).production()
    if production is None:
        raise NotPromoted(f"no model in {work_dir} holds the production alias: none was promoted")
    return deployment_of(work_dir, production.model_version)
