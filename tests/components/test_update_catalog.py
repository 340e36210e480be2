"""The catalogue-update component: refuses a release whose online store is its own sqlite file (a cluster's
transformers would never see the change), and on a shared Redis removes products from every version the
InferenceService serves (read from it: an InferenceService built by the rollout's own functions stands in for the
Kubernetes API)."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kfp.dsl import HTML, Dataset, Metrics
from kfp_artifacts import artifact

from components.update_catalog import update_catalog
from fashionrec.catalog.update import CatalogUpdateError
from fashionrec.data.changes import ChangeLog
from fashionrec.deploy import step
from fashionrec.deploy.kserve_target import template, with_release
from fashionrec.local.redis import running_redis
from fashionrec.retrieval.embeddings import random_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import OnlineFeatures, StoreSettings, apply_and_materialize, stage_repo
from fashionrec.serving.release import RELEASE_FILE, Release

IDS = np.arange(700, 760)
TEMPLATE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "inferenceservice.yaml"


class ServingInferenceService:
    """The Kubernetes API's answer for one InferenceService."""

    def __init__(self, isvc: dict[str, Any]) -> None:
        self.isvc = isvc

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        assert (namespace, name) == ("ns", "fashionrec")
        return self.isvc


def serving(monkeypatch: pytest.MonkeyPatch, release: Release, canary_percent: int | None) -> None:
    """The InferenceService's transformer on ``release`` (as a canary of ``canary_percent``, or rolled out)."""
    isvc = with_release(template(TEMPLATE, "ns", "fashionrec"), release, "transformer", canary_percent)
    monkeypatch.setattr(step, "kserve_client", lambda: ServingInferenceService(isvc))


def released(root: Path, version: str, settings: StoreSettings, previous: str | None = None) -> Release:
    """A published release of ``version`` whose Feast repo is materialized with ``settings``' stores."""
    root.mkdir(parents=True, exist_ok=True)
    write_embeddings(*random_embeddings(IDS, version), root / f"{version}.parquet")
    repo = stage_repo(root / f"{version}.parquet", root / version / "serving" / "feature_repo", settings=settings)
    apply_and_materialize(repo)
    release = Release(str(root), version, previous, "2026-11-23T00:00:00+00:00")
    (root / version / RELEASE_FILE).write_text(json.dumps(asdict(release)))
    return release


def run(tmp_path: Path, root: Path, remove_ids: list[int]) -> Metrics:
    (tmp_path / "batch").mkdir(exist_ok=True)  # no additions in this batch: only removals
    metrics = artifact(Metrics, tmp_path, "metrics")
    update_catalog.python_func(
        additions=artifact(Dataset, tmp_path, "batch"),
        report=artifact(HTML, tmp_path, "report.html"),
        quarantine=artifact(Dataset, tmp_path, "quarantine.csv"),
        metrics=metrics,
        releases_uri=str(root),
        catalog_changes_uri=str(tmp_path / "changes"),
        serving_target="kserve://ns/fashionrec",
        remove_ids=remove_ids,
    )
    return metrics


def test_a_release_with_its_own_sqlite_store_is_refused_and_nothing_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving(monkeypatch, released(tmp_path / "releases", "v-a", StoreSettings()), None)
    with pytest.raises(CatalogUpdateError, match="need the shared one"):
        run(tmp_path, tmp_path / "releases", [int(IDS[0])])
    assert ChangeLog(str(tmp_path / "changes")).names() == []


@pytest.mark.integration
def test_removals_reach_every_served_version_in_the_shared_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_redis(tmp_path / "redis") as server:
        settings = StoreSettings(online_store=server.url)
        released(tmp_path / "releases", "v-a", settings)
        canary = released(tmp_path / "releases", "v-b", settings, previous="v-a")
        serving(monkeypatch, canary, 10)  # v-b a canary beside v-a: both are served
        metrics = run(tmp_path, tmp_path / "releases", [int(IDS[0]), int(IDS[1])])
        online = OnlineFeatures(tmp_path / "releases" / "v-a" / "serving" / "feature_repo")
        assert metrics.metadata == {"added": 0.0, "quarantined": 0.0, "removed": 2.0}
        assert online.embeddings([int(IDS[0]), int(IDS[1])], "v-a") == [None, None]
        assert online.embeddings([int(IDS[0])], "v-b") == [None] and online.embeddings([int(IDS[2])], "v-b")[0] is not None
        assert [c.action for c in ChangeLog(str(tmp_path / "changes")).changes()] == ["remove"]
        assert "No additions" in (tmp_path / "report.html").read_text()
