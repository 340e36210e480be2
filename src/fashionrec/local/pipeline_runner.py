"""Running and compiling the KFP pipelines of the checkout (pipelines/ and components/ live at the repo root)."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TextIO

from fashionrec.console import console
from fashionrec.local.deployment import Deployment, save_deployment
from fashionrec.params import PipelineSettings, TrainConfig, plain_values

PIPELINE_MODULES = ("pipelines.training_pipeline",)
# The reviewed, committed YAML a user uploads in the KFP UI (`make compile` writes it; a test keeps it current).
COMPILED_DIR = Path("pipelines") / "compiled"


def project_root() -> Path:
    """The checkout that holds pipelines/ and components/ (this package is installed from it in editable mode)."""
    candidates = [Path(__file__).resolve().parents[3], Path.cwd(), *Path.cwd().parents]
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


class TaskProgress(io.TextIOBase):
    """Where kfp.local's output goes: all of it into the log file; one line per task start and end, and the few lines
    a person wants from inside the steps, onto the console."""

    TASK = re.compile(r"(Executing task|Task) '?([\w-]+)'?(?: finished with status (\w+))?")
    RELAYED = re.compile(r"^\s*(validation: .*|training \S+ on .*|resuming from .*)$")
    ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, sink: TextIO) -> None:
        self.sink = sink
        self.pending = ""
        self.started: dict[str, float] = {}

    def write(self, text: str) -> int:
        self.sink.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._relay(self.ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.sink.flush()

    def _relay(self, line: str) -> None:
        task = self.TASK.search(line)
        if task and task.group(1) == "Executing task":
            self.started[task.group(2)] = time.perf_counter()
            console.print(f"  [bold]{task.group(2)}[/bold] ...")
        elif task and task.group(3):
            seconds = time.perf_counter() - self.started.get(task.group(2), time.perf_counter())
            colour = "green" if task.group(3) == "SUCCESS" else "red"
            console.print(f"  [bold]{task.group(2)}[/bold] [{colour}]{task.group(3).lower()}[/{colour}] in {seconds:.0f}s")
        elif relayed := self.RELAYED.match(line):
            console.print(f"      {relayed.group(1)}")


def run_local(
    catalog_dir: Path,
    work_dir: Path,
    config: TrainConfig | None = None,
    settings: PipelineSettings | None = None,
    log_file: Path | None = None,
) -> Deployment:
    """Run the training pipeline with kfp.local (each component in a subprocess of this Python environment) and
    record where the serving artifacts are and whether the gate promoted the model (fashionrec.local.deployment).
    The model registry defaults to work_dir/mlflow.db (``settings.registry_uri`` overrides it). With ``log_file``,
    kfp.local's output (every step's log and outputs) goes there and the console shows one line per step."""
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as sink, contextlib.redirect_stdout(TaskProgress(sink)):
            return run_local(catalog_dir, work_dir, config, settings)
    from kfp import local

    from fashionrec.training.registry import default_registry_uri

    work_dir = work_dir.resolve()
    settings = settings or PipelineSettings()
    settings = replace(settings, registry_uri=settings.registry_uri or default_registry_uri(work_dir))
    parameters = plain_values(config or TrainConfig(), pipeline=True) | plain_values(settings, pipeline=True)
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
