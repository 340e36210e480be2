"""Serving runs without torch: the transformer and the local launcher import none, and the transformer's image (its
pip extra) installs none."""

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires

from packaging.requirements import Requirement

from fashionrec.serving.entrypoints import TRANSFORMER_ENTRYPOINT, kserve_file

BLOCK_TORCH = "import sys; from fashionrec.serving.no_torch import block_torch; block_torch(); "


def run_without_torch(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, timeout=120)


def test_the_transformer_and_the_local_launcher_import_no_torch() -> None:
    modules = [
        "fashionrec.serving.transformer",
        "fashionrec.serving.processes",
        "fashionrec.deploy.local_target",
        "fashionrec.deploy.kserve_target",
        "fashionrec.cli",
    ]
    # and the drift tests, whose SciPy probes sys.modules for torch tensors, still run
    drift = (
        "import numpy as np; from fashionrec.drift.detectors import ks_test; ks_test(np.arange(50.0), np.arange(50.0), 's', 0.01)"
    )
    result = run_without_torch("; ".join(f"import {m}" for m in modules) + f"; {drift}; print('ok')")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_blocking_torch_is_noticed() -> None:
    """The check above can fail: a module that needs torch does not import under the same block."""
    result = run_without_torch("import fashionrec.training.train")
    assert result.returncode != 0 and "torch" in result.stderr


def test_the_transformer_program_starts_its_argument_parser_without_torch() -> None:
    code = f"import runpy; sys.argv = ['transformer', '--help']; runpy.run_path({str(kserve_file(TRANSFORMER_ENTRYPOINT))!r}, run_name='__main__')"
    result = run_without_torch(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--index_dir" in result.stdout and "--predictor_host" in result.stdout


def installed_closure(
    name: str, extras: frozenset[str] = frozenset(), seen: set[tuple[str, frozenset[str]]] | None = None
) -> set[str]:
    """Every installed distribution that ``name[extras]`` requires, transitively (environment markers applied)."""
    seen = set() if seen is None else seen
    key = (name.lower().replace("_", "-"), extras)
    if key not in seen:
        seen.add(key)
        try:
            requirements = requires(name) or []
        except PackageNotFoundError:
            requirements = []
        for line in requirements:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                installed_closure(requirement.name, frozenset(requirement.extras), seen)
    return {distribution for distribution, _ in seen}


def test_the_transformer_extra_pulls_in_no_torch() -> None:
    closure = installed_closure("fashionrec", frozenset({"transformer"}))
    assert {"kserve", "faiss-cpu", "feast"} <= closure  # the walk follows the extra's real requirements
    assert not {"torch", "torchvision", "torchserve"} & closure, sorted(closure)
    assert "torch" in installed_closure("fashionrec", frozenset({"pipeline"}))  # and would notice torch
