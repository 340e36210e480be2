"""`serve --watch` survives transient errors: one tick reports them and never raises (no server needed: the
management API is a closed loopback port, the registry a missing work dir)."""

from pathlib import Path

import pytest

from fashionrec.local.deployment import Deployment, NotPromoted, deployment_of, production_deployment
from fashionrec.local.hotswap import watch_tick
from fashionrec.local.processes import LocalTorchServe, LocalTransformer, free_port


def unreachable_torchserve(tmp_path: Path) -> LocalTorchServe:
    return LocalTorchServe(tmp_path / "store", tmp_path / "ts", management_port=free_port())  # nothing listens there


def transformer(tmp_path: Path) -> LocalTransformer:
    return LocalTransformer(tmp_path / "t", index_dir=tmp_path / "i", feature_repo=tmp_path / "f", predictor_host="127.0.0.1:9")


def test_a_tick_reports_an_unreachable_management_api_and_keeps_serving(tmp_path: Path) -> None:
    def production() -> Deployment:
        return Deployment(tmp_path / "store", tmp_path / "index", tmp_path / "repo")

    outcome = watch_tick(unreachable_torchserve(tmp_path), transformer(tmp_path), tmp_path / "live", production)
    assert outcome.startswith("could not check for a new production model") and "still serving" in outcome


def test_a_tick_reports_a_registry_without_production(tmp_path: Path) -> None:
    def production() -> Deployment:
        return production_deployment(tmp_path / "missing")

    outcome = watch_tick(unreachable_torchserve(tmp_path), transformer(tmp_path), tmp_path / "live", production)
    assert "FileNotFoundError" in outcome and "pipeline run" in outcome


def test_a_model_never_promoted_here_is_not_servable(tmp_path: Path) -> None:
    (tmp_path / "deployments").mkdir()
    with pytest.raises(NotPromoted, match="never promoted"):
        deployment_of(tmp_path, "0123456789ab")
    with pytest.raises(NotPromoted, match="holds the production alias"):
        production_deployment(tmp_path)  # an empty registry
