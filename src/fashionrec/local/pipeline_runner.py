"""Running and compiling the KFP pipelines of the checkout (pipelines/ and components/ live at the repo root)."""

from __future__ import annotations

import contextlib
import io
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from fashionrec.checkout import PIPELINE_MODULES, load_pipeline_module
from fashionrec.config import PROJECT_IMAGE
from fashionrec.console import console
from fashionrec.local.deployment import Deployment, save_deployment
from fashionrec.params import PipelineSettings, TrainConfig, plain_values
from fashionrec.storage import refuse_literal_passwords
from fashionrec.training.registry import MlflowRegistry, default_registry_uri
from fashionrec.workdir import WorkDir


def compile_all(out_dir: Path, gpu: bool = True, image: str = "") -> list[Path]:
    """Compile every pipeline module to out_dir/<module>.yaml (``gpu``: GPU steps request an NVIDIA GPU; ``image``:
    the image every step runs in, default the project's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PIPELINE_MODULES:
        module = load_pipeline_module(name)
        path = out_dir / f"{name.rsplit('.', 1)[-1]}.yaml"
        module.compile_pipeline(str(path), gpu=gpu)
        if image:
            path.write_text(with_image(path.read_text(encoding="utf-8"), image), encoding="utf-8")
        written.append(path)
    return written


STEP_IMAGE = re.compile(r"^(?P<indent>\s+image: )(?P<image>\S+)$", re.MULTILINE)


def with_image(compiled_yaml: str, image: str) -> str:
    """The compiled YAML with every step's image (the components name PROJECT_IMAGE when decorated) set to ``image``."""
    if not re.fullmatch(r"[\w.:/@-]+", image):
        raise ValueError(f"not an image reference: {image!r}")
    other = {m.group("image") for m in STEP_IMAGE.finditer(compiled_yaml)} - {PROJECT_IMAGE}
    if other:
        raise ValueError(f"the compiled pipeline names images other than {PROJECT_IMAGE}: {sorted(other)}")
    return STEP_IMAGE.sub(lambda m: f"{m.group('indent')}{image}", compiled_yaml)


class TaskProgress(io.TextIOBase):
    """Where kfp.local's output goes: all of it into the log file; one line per task start and end, and the few lines
    a person wants from inside the steps, onto the console."""

    TASK = re.compile(r"(Executing task|Task) '?([\w-]+)'?(?: finished with status (\w+))?")
    RELAYED = re.compile(
        r"^\s*(validation: .*|training \S+ on .*|resuming from .*|warm start from .*|epoch \d+/\d+: .*|rollout: .*)$"
    )
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
            console.print(f"      {relayed.group(1)}", markup=False, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class LocalRun:
    deployment: Deployment  # this run's serving artifacts
    gate_passed: bool
    promoted: bool  # the rollout promoted it: it is production now


@contextlib.contextmanager
def one_of_support() -> Iterator[None]:
    """kfp.local 2.17 cannot resolve a ``dsl.OneOf`` of artifacts (the pipeline's catalogue comes from object storage
    or a volume): it raises "Expected 1 artifact in ArtifactSelectorSpec". Take the selector whose producer ran,
    as the KFP backend does, for the duration of a local run."""
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

    original = OrchestratorUtils.__dict__["get_dag_output_artifacts"]

    def first_produced(cls: type, dag_outputs_spec: Any, io_store: Any) -> dict[str, Any]:
        outputs = {}
        for key, spec in dag_outputs_spec.artifacts.items():
            for selector in spec.artifact_selectors:
                with contextlib.suppress(ValueError, KeyError):
                    outputs[key] = io_store.get_task_output(selector.producer_subtask, selector.output_artifact_key)
                    break
            else:
                raise ValueError(f"no task producing the pipeline output {key!r} ran")
        return outputs

    OrchestratorUtils.get_dag_output_artifacts = classmethod(first_produced)
    try:
        yield
    finally:
        OrchestratorUtils.get_dag_output_artifacts = original


def run_local(
    catalog_dir: Path,
    work_dir: Path,
    config: TrainConfig | None = None,
    settings: PipelineSettings | None = None,
    log_file: Path | None = None,
) -> LocalRun:
    """Run the training pipeline with kfp.local (each component in a subprocess of this Python environment). Its
    deploy step rolls a model the gate passed out onto the local target: the servers of `fashionrec serve
    --workdir work_dir` if they run (a canary on them), else production's started for the check; releases go to
    work_dir/releases. The model registry defaults to work_dir/mlflow.db (``settings.registry_uri`` overrides it).
    With ``log_file``, kfp.local's output (every step's log and outputs) goes there and the console shows one line
    per step."""
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as sink, contextlib.redirect_stdout(TaskProgress(sink)):
            return run_local(catalog_dir, work_dir, config, settings)
    from kfp import local

    work_dir = work_dir.resolve()
    settings = settings or PipelineSettings()
    registry_uri = settings.registry_uri or default_registry_uri(work_dir)
    settings = replace(
        settings,
        registry_uri=registry_uri,
        deploy_target=f"local://{work_dir}",
        catalog_changes_uri=str(WorkDir(work_dir).catalog_changes),
    )
    task = run_pipeline(
        "training_pipeline",
        {"catalog_uri": str(catalog_dir.resolve())}
        | plain_values(config or TrainConfig(), pipeline=True)
        | plain_values(settings, pipeline=True),
        WorkDir(work_dir).pipeline_root,
        local.SubprocessRunner(use_venv=False),
    )
    deployment = Deployment(
        model_store=Path(task.outputs["model_store"].path),
        index_dir=Path(task.outputs["index"].path),
        feature_repo=Path(task.outputs["feature_repo"].path),
    )
    gate_passed = bool(task.outputs["gate_passed"])
    production = MlflowRegistry(registry_uri).production()
    promoted = gate_passed and production is not None and production.model_version == deployment.model_version
    save_deployment(deployment, work_dir, promoted=promoted)
    return LocalRun(deployment, gate_passed, promoted)


def run_pipeline(pipeline: str | Path, arguments: dict[str, Any], pipeline_root: Path, runner: Any) -> Any:
    """Run one pipeline with kfp.local and ``runner`` (a SubprocessRunner: this environment;
    fashionrec.images.containers: each task in its image): one of pipelines/ by its function's name
    (``training_pipeline``), or a compiled pipeline YAML (a Path), run as compiled: every task's image, command and
    arguments are the YAML's."""
    from kfp import components, local

    refuse_literal_passwords(arguments)  # before any step records them (the run, MLflow, the release)
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=runner, pipeline_root=str(pipeline_root.resolve()), raise_on_error=True)
    if isinstance(pipeline, Path):
        function = components.load_component_from_file(str(pipeline))
    else:
        module_name = next(name for name in PIPELINE_MODULES if name.endswith(f".{pipeline}"))
        function = getattr(load_pipeline_module(module_name), pipeline)
    with warnings.catch_warnings(), one_of_support():
        # kfp.local notes that cluster-only settings (resources, display names, the image) do not apply locally.
        warnings.filterwarnings("ignore", category=UserWarning, module="kfp.local")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="kfp.local")
        return function(**arguments)
