"""`serve --watch` survives transient errors: one tick reports them and never raises (no server needed: the
management API is a closed loopback port, the registry a missing work dir)."""

from pathlib import Path

import pytest

from fashionrec.config import LOOPBACK
from fashionrec.deploy.local_target import LocalServing, LocalTarget, watch_tick
from fashionrec.local.deployment import Deployment, NotPromoted, deployment_of, production_deployment
from fashionrec.serving.processes import free_port


def unreachable(tmp_path: Path) -> LocalTarget:
    url = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    return LocalTarget(LocalServing(url, tmp_path / "store", url, tmp_path / "token", tmp_path / "live", url))


def test_a_tick_reports_unreachable_servers_and_keeps_serving(tmp_path: Path) -> None:
    def production() -> Deployment:
        return Deployment(tmp_path / "store", tmp_path / "index", tmp_path / "repo")

    outcome = watch_tick(unreachable(tmp_path), production)
    assert outcome.startswith("could not switch to the production model") and "still serving" in outcome


def test_a_tick_reports_a_registry_without_production(tmp_path: Path) -> None:
    def production() -> Deployment:
        return production_deployment(tmp_path / "missing")

    outcome = watch_tick(unreachable(tmp_path), production)
    assert "FileNotFoundError" in outcome and "pipeline run" in outcome


def test_a_model_never_released_here_is_not_servable(tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    with pytest.raises(NotPromoted, match="never released"):
        deployment_of(tmp_path, "0123456789ab")
    with pytest.raises(NotPromoted, match="holds the production alias"):
        production_deployment(tmp_path)  # an empty registry


def test_running_servers_are_found_only_while_they_answer(tmp_path: Path) -> None:
    dead = unreachable(tmp_path).serving
    dead.save(tmp_path)
    assert LocalServing.running(tmp_path) is None  # the state file of stopped servers is not trusted
    assert LocalServing.running(tmp_path / "elsewhere") is None
