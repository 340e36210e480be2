"""The local process launcher's pieces that need no server: the live link a hot swap flips."""

from pathlib import Path

import pytest


def test_live_link_flips_between_deployments_from_a_relative_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The transformer reads live/current/{index,feature_repo}; a swap re-points it, also when live/ is relative."""
    from fashionrec.config import SNAPSHOT_FEATURE_REPO_DIR, SNAPSHOT_INDEX_DIR
    from fashionrec.local.deployment import Deployment
    from fashionrec.serving.processes import link_deployment

    monkeypatch.chdir(tmp_path)
    deployments = []
    for name in ("v1", "v2"):
        (tmp_path / name / "index").mkdir(parents=True)
        (tmp_path / name / "index" / "index.json").write_text(name)
        (tmp_path / name / "repo").mkdir()
        deployments.append(Deployment(tmp_path / name / "store", tmp_path / name / "index", tmp_path / name / "repo"))
    current = link_deployment(deployments[0], Path("serve") / "live")
    assert (current / SNAPSHOT_INDEX_DIR / "index.json").read_text() == "v1"
    assert link_deployment(deployments[1], Path("serve") / "live") == current
    assert (current / SNAPSHOT_INDEX_DIR / "index.json").read_text() == "v2"
    assert (current / SNAPSHOT_FEATURE_REPO_DIR).resolve() == (tmp_path / "v2" / "repo").resolve()
