"""The repository around the package: its pipelines/ and components/ folders (kfp.local runs them, `fashionrec
pipeline compile` compiles them), the committed compiled YAML (`fashionrec pipeline submit` uploads it), and the
servers only the tests run (`make test-tools` installs them into .tools/, a virtual environment of their own)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

PIPELINE_MODULES = ("pipelines.training_pipeline", "pipelines.catalog_pipeline", "pipelines.monitoring_pipeline")
# The reviewed, committed YAML a user uploads in the KFP UI (`make compile` writes it; a test keeps it current).
COMPILED_DIR = Path("pipelines") / "compiled"
# The test servers' own environment: a full MLflow tracking server and moto's S3 server, whose dependencies the
# project's environment must not take on.
TOOLS_DIR = Path(".tools")


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


def compiled_pipeline(module: str, root: Path | None = None) -> Path:
    """The committed compiled YAML of a pipeline module (``pipelines.training_pipeline``)."""
    return (root or project_root()) / COMPILED_DIR / f"{module.rsplit('.', 1)[-1]}.yaml"


def tools_program(name: str) -> Path:
    """A program of the test servers' environment (``mlflow``, ``moto_server``)."""
    program = project_root() / TOOLS_DIR / "bin" / name
    if not program.is_file():
        raise FileNotFoundError(f"{program} not found: run `make test-tools` (installs the servers the tests run)")
    return program
