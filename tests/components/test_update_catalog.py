"""The catalogue-update component: refuses a release whose online store is its own sqlite file (a cluster's
transformers would never see the change), and on a shared Redis removes products from every served version."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import HTML, Dataset, Metrics
from kfp_artifacts import artifact

from components.update_catalog import update_catalog
from fashionrec.catalog.update import CatalogUpdateError
from fashionrec.data.changes import ChangeLog
from fashionrec.local.redis import running_redis
from fashionrec.retrieval.embeddings import random_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import OnlineFeatures, StoreSettings, apply_and_materialize, stage_repo
from fashionrec.serving.release import RELEASE_FILE, Release

IDS = np.arange(700, 760)


def released(root: Path, version: str, settings: StoreSettings) -> None:
    """A published release of ``version`` whose Feast repo is materialized with ``settings``' stores."""
    root.mkdir(parents=True, exist_ok=True)
    write_embeddings(*random_embeddings(IDS, version), root / f"{version}.parquet")
    repo = stage_repo(root / f"{version}.parquet", root / version / "serving" / "feature_repo", settings=settings)
    apply_and_materialize(repo)
    release = Release(str(root), version, None, "2026-11-23T00:00:00+00:00")
    (root / version / RELEASE_FILE).write_text(json.dumps(asdict(release)))


def run(tmp_path: Path, root: Path, versions: list[str], remove_ids: list[int]) -> Metrics:
    (tmp_path / "batch").mkdir(exist_ok=True)  # no additions in this batch: only removals
    metrics = artifact(Metrics, tmp_path, "metrics")
    update_catalog.python_func(
        additions=artifact(Dataset, tmp_path, "batch"),
        report=artifact(HTML, tmp_path, "report.html"),
        quarantine=artifact(Dataset, tmp_path, "quarantine.csv"),
        metrics=metrics,
        releases_uri=str(root),
        model_versions=versions,
        predictor_host="127.0.0.1:9",  # not called: nothing to encode
        catalog_changes_uri=str(tmp_path / "changes"),
        remove_ids=remove_ids,
    )
    return metrics


def test_a_release_with_its_own_sqlite_store_is_refused_and_nothing_is_recorded(tmp_path: Path) -> None:
    released(tmp_path / "releases", "v-a", StoreSettings())
    with pytest.raises(CatalogUpdateError, match="need the shared one"):
        run(tmp_path, tmp_path / "releases", ["v-a"], [int(IDS[0])])
    assert ChangeLog(str(tmp_path / "changes")).names() == []


@pytest.mark.integration
def test_removals_reach_every_served_version_in_the_shared_store(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as server:
        settings = StoreSettings(online_store=server.url)
        for version in ("v-a", "v-b"):
            released(tmp_path / "releases", version, settings)
        metrics = run(tmp_path, tmp_path / "releases", ["v-a", "v-b"], [int(IDS[0]), int(IDS[1])])
        online = OnlineFeatures(tmp_path / "releases" / "v-a" / "serving" / "feature_repo")
        assert metrics.metadata == {"added": 0.0, "quarantined": 0.0, "removed": 2.0}
        assert online.embeddings([int(IDS[0]), int(IDS[1])], "v-a") == [None, None]
        assert online.embeddings([int(IDS[0])], "v-b") == [None] and online.embeddings([int(IDS[2])], "v-b")[0] is not None
        assert [c.action for c in ChangeLog(str(tmp_path / "changes")).changes()] == ["remove"]
        assert "No additions" in (tmp_path / "report.html").read_text()
