"""Model tracking and registry, behind one small interface.

The default implementation is MLflow (tracking + model registry) with an embedded sqlite backend and a local
artifact store; a team points ``registry_uri`` at its tracking server instead. Kubeflow's Model Registry can stand
in by implementing ``ModelRegistry``. Each registered version carries the model, the TorchServe model store, the
index, the evaluation, the dataset digest, the git commit and the training parameters; "production" is an MLflow
alias, moved in one atomic update by promote and rollback.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fashionrec.config import MODEL_NAME, TRAINING_HISTORY_FILE
from fashionrec.provenance import built_by
from fashionrec.workdir import DEFAULT_WORKDIR, WorkDir

PRODUCTION = "production"
HISTORY_TAG = "production_history"  # JSON list of registry versions that held the production alias, oldest first
ENV_REGISTRY_URI = "FASHIONREC_REGISTRY_URI"


@dataclass(frozen=True)
class RegisteredVersion:
    version: int  # the registry's version number
    model_version: str  # the model's content hash (model.json)
    dataset_digest: str
    run_id: str
    aliases: list[str]
    metrics: dict[str, float]
    params: dict[str, str]
    git_commit: str


class ModelRegistry(Protocol):
    def log_and_register(
        self, artifacts: dict[str, Path], params: dict[str, Any], metrics: dict[str, float], card: dict[str, Any]
    ) -> RegisteredVersion: ...
    def versions(self) -> list[RegisteredVersion]: ...
    def get(self, version: int) -> RegisteredVersion: ...
    def production(self) -> RegisteredVersion | None: ...
    def promote(self, version: int) -> RegisteredVersion: ...
    def rollback(self) -> RegisteredVersion: ...
    def download(self, version: int, artifact: str, dest: Path) -> Path: ...


def default_registry_uri(work_dir: Path | None = None) -> str:
    if os.environ.get(ENV_REGISTRY_URI):
        return os.environ[ENV_REGISTRY_URI]
    database = WorkDir(work_dir or DEFAULT_WORKDIR).registry_db
    database.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{database}"


class RegistryError(RuntimeError):
    pass


class MlflowRegistry:
    def __init__(self, tracking_uri: str, name: str = MODEL_NAME, experiment: str = "fashionrec-training") -> None:
        import mlflow
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.name = name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.experiment = experiment
        self._mlflow = mlflow
        existing = self.client.get_experiment_by_name(experiment)
        if existing is None:
            artifact_root = None
            if tracking_uri.startswith("sqlite:///"):
                artifact_root = Path(tracking_uri.removeprefix("sqlite:///")).parent.joinpath("mlartifacts").as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_root)
        else:
            self.experiment_id = existing.experiment_id

    def log_and_register(
        self, artifacts: dict[str, Path], params: dict[str, Any], metrics: dict[str, float], card: dict[str, Any]
    ) -> RegisteredVersion:
        """Log one training run (params, metrics, artifacts) and register it as a new model version."""
        from mlflow.exceptions import MlflowException

        build = card.get("build") or built_by()  # the card's: what made the model, not what registers it
        run = self.client.create_run(
            self.experiment_id,
            tags={
                "model_version": card["model_version"],
                "dataset_digest": card["dataset_digest"],
                "git_commit": build["git_commit"],
                "image": build["image"],
                "packages": json.dumps(build["packages"], sort_keys=True),
            },
        )
        run_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(run_id, key, json.dumps(value) if isinstance(value, (dict, list)) else value)
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))
        if "model" in artifacts:
            self.log_training_history(run_id, artifacts["model"] / TRAINING_HISTORY_FILE)
        for name, path in artifacts.items():
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=name)
            else:
                self.client.log_artifact(run_id, str(path), artifact_path=name)
        self.client.set_terminated(run_id)
        with contextlib.suppress(MlflowException):  # already registered
            self.client.create_registered_model(self.name)
        source = f"{run.info.artifact_uri}/model"
        registered = self.client.create_model_version(
            self.name,
            source=source,
            run_id=run_id,
            tags={"model_version": card["model_version"], "dataset_digest": card["dataset_digest"]},
        )
        return self.get(int(registered.version))

    def log_training_history(self, run_id: str, history_file: Path) -> None:
        """Per-epoch loss, holdout accuracy and speed as MLflow metric histories (step: the epoch), when written."""
        if not history_file.is_file():
            return
        from mlflow.entities import Metric

        started_ms = self.client.get_run(run_id).info.start_time
        entries = [
            Metric(f"epoch_{name}", float(record[name]), started_ms + int(record["seconds"] * 1000), int(record["epoch"]))
            for record in json.loads(history_file.read_text())
            for name in ("loss", "holdout_accuracy", "images_per_second")
            if record[name] is not None  # null: no holdout
        ]
        for start in range(0, len(entries), 1000):  # MLflow's limit per batch
            self.client.log_batch(run_id, metrics=entries[start : start + 1000])

    def _describe(self, mv: Any) -> RegisteredVersion:
        run = self.client.get_run(mv.run_id)
        return RegisteredVersion(
            version=int(mv.version),
            model_version=str(mv.tags.get("model_version", "")),
            dataset_digest=str(mv.tags.get("dataset_digest", "")),
            run_id=str(mv.run_id),
            aliases=sorted(mv.aliases or []),
            metrics={k: float(v) for k, v in run.data.metrics.items()},
            params=dict(run.data.params),
            git_commit=str(run.data.tags.get("git_commit", "")),
        )

    def versions(self) -> list[RegisteredVersion]:
        found = self.client.search_model_versions(f"name='{self.name}'")
        # search results carry no aliases; a per-version read does
        return sorted((self.get(int(mv.version)) for mv in found), key=lambda v: v.version)

    def get(self, version: int) -> RegisteredVersion:
        from mlflow.exceptions import MlflowException

        try:
            return self._describe(self.client.get_model_version(self.name, str(version)))
        except MlflowException as exc:
            raise RegistryError(f"{self.name} has no version {version}") from exc

    def production(self) -> RegisteredVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._describe(self.client.get_model_version_by_alias(self.name, PRODUCTION))
        except MlflowException:
            return None

    def _history(self) -> list[int]:
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(self.name).tags
        except MlflowException:
            return []
        return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]

    def promote(self, version: int) -> RegisteredVersion:
        self.get(version)  # raises for an unknown version
        self.client.set_registered_model_alias(self.name, PRODUCTION, str(version))  # one atomic update
        history = [*self._history(), version]
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history[-50:]))
        return self.get(version)

    def rollback(self) -> RegisteredVersion:
        """Move production back to the version that held it before the current one."""
        history = self._history()
        current = self.production()
        previous = [v for v in history if current is None or v != current.version]
        if not previous:
            raise RegistryError("nothing to roll back to: no earlier production version")
        target = previous[-1]
        self.client.set_registered_model_alias(self.name, PRODUCTION, str(target))
        trimmed = history[: len(history) - 1 - history[::-1].index(target)] if target in history else history
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps([*trimmed, target]))
        return self.get(target)

    def download(self, version: int, artifact: str, dest: Path) -> Path:
        run_id = self.get(version).run_id
        dest.mkdir(parents=True, exist_ok=True)
        return Path(
            self._mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact, dst_path=str(dest), tracking_uri=self.tracking_uri
            )
        )


def production_model_dir(registry: ModelRegistry, dest: Path | None = None) -> Path | None:
    """The production model's folder (model.json + encoder.pt), downloaded; None when nothing is in production."""
    current = registry.production()
    if current is None:
        return None
    return registry.download(current.version, "model", dest or Path(tempfile.mkdtemp(prefix="fashionrec-production-")))
