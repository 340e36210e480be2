"""Running and compiling the KFP pipelines of the checkout (pipelines/ and components/ live at the repo root)."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

from fashionrec.serving import Deployment

DEPLOYMENT_FILE = "deployment.json"
PIPELINE_MODULES = ("pipelines.training_pipeline",)


def project_root() -> Path:
    """The checkout that holds pipelines/ and components/ (this package is installed from it in editable mode)."""
    candidates = [Path(__file__).resolve().parents[2], Path.cwd(), *Path.cwd().parents]
    for candidate in candidates:
        if (candidate / "pipelines").is_dir() and (candidate / "components").is_dir():
            return candidate
    raise FileNotFoundError("pipelines/ and components/ not found: run from a fashionrec checkout")


def load_pipeline_module(name: str = PIPELINE_MODULES[0]) -> ModuleType:
    root = str(project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(name)


def compile_all(out_dir: Path, gpu: bool = True) -> list[Path]:
    """Compile every pipeline module to out_dir/<module>.yaml (``gpu``: GPU steps request an NVIDIA GPU)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PIPELINE_MODULES:
        module = load_pipeline_module(name)
        path = out_dir / f"{name.rsplit('.', 1)[-1]}.yaml"
        module.compile_pipeline(str(path), gpu=gpu)
        written.append(path)
    return written


def run_local(catalog_dir: Path, work_dir: Path, **parameters: Any) -> Deployment:
    """Run the training pipeline with kfp.local (each component in a subprocess of this Python environment) and
    record where the serving artifacts are, and whether the gate promoted the model, in work_dir/deployment.json.
    The model registry defaults to work_dir/mlflow.db (``registry_uri`` overrides it)."""
    from kfp import local

    from fashionrec.registry import default_registry_uri

    work_dir = work_dir.resolve()
    parameters.setdefault("registry_uri", default_registry_uri(work_dir))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work_dir / "pipeline_root"), raise_on_error=True)
    module = load_pipeline_module()
    with warnings.catch_warnings():
        # kfp.local notes that cluster-only settings (resources, display names, the image) do not apply locally.
        warnings.filterwarnings("ignore", category=UserWarning, module="kfp.local")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="kfp.local")
        task = module.training_pipeline(catalog_dir=str(catalog_dir.resolve()), **parameters)
    deployment = Deployment(
        model_store=Path(task.outputs["model_store"].path),
        index_dir=Path(task.outputs["index"].path),
        feature_repo=Path(task.outputs["feature_repo"].path),
    )
    save_deployment(deployment, work_dir, promoted=bool(task.outputs["promoted"]))
    return deployment


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
