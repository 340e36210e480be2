"""The deployment record: where one trained model's serving artifacts are, and whether the gate promoted it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from fashionrec.config import DEPLOYMENT_FILE


@dataclass(frozen=True)
class Deployment:
    """Where one trained model's serving artifacts are: the package, index and features stages' outputs."""

    model_store: Path
    index_dir: Path
    feature_repo: Path


class NotPromoted(RuntimeError):
    """The gate rejected the model of this run: it must not be served."""


def save_deployment(deployment: Deployment, work_dir: Path, promoted: bool = True) -> Path:
    path = work_dir / DEPLOYMENT_FILE
    record = {**{k: str(v) for k, v in asdict(deployment).items()}, "promoted": promoted}
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return path


def load_deployment(work_dir: Path) -> Deployment:
    path = work_dir / DEPLOYMENT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `fashionrec pipeline run --workdir {work_dir}` first")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not data.get("promoted", True):
        raise NotPromoted(f"the gate rejected the model of the run in {work_dir}: see its gate decision; production is unchanged")
    return Deployment(
        model_store=Path(data["model_store"]), index_dir=Path(data["index_dir"]), feature_repo=Path(data["feature_repo"])
    )
