"""After a rollout the deploy step deletes the replaced version's vectors from a shared online store: never from a
release's own sqlite file, never after an incomplete rollback, and a store it cannot reach never fails the deploy."""

from pathlib import Path

import numpy as np

from fashionrec.config import LOOPBACK
from fashionrec.deploy.rollout import RolloutResult
from fashionrec.deploy.step import retire_vectors
from fashionrec.retrieval.embeddings import random_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import StoreSettings, apply_and_materialize, open_store, stage_repo
from fashionrec.retrieval.online_rows import stored_versions
from fashionrec.serving.processes import free_port


def repo(tmp_path: Path, settings: StoreSettings | None = None) -> Path:
    write_embeddings(*random_embeddings(np.arange(10), "new"), tmp_path / "e.parquet")
    return stage_repo(tmp_path / "e.parquet", tmp_path / "repo", settings=settings)


def test_a_releases_own_sqlite_store_keeps_every_version(tmp_path: Path) -> None:
    embedded = repo(tmp_path)
    apply_and_materialize(embedded)
    result = RolloutResult(True, "new", "old", "kserve", [])
    retire_vectors(embedded, result)
    assert result.reasons == [] and stored_versions(open_store(embedded)) == {"new": 10}


def test_an_incomplete_rollback_keeps_both_versions(tmp_path: Path) -> None:
    result = RolloutResult(False, "new", "old", "kserve", ["rollback incomplete: TimeoutError: ..."])
    retire_vectors(repo(tmp_path), result)
    assert result.reasons[-1] == "kept the vectors of new in the online store: the rollback was incomplete"


def test_an_unreachable_store_is_reported_and_the_decision_stands(tmp_path: Path) -> None:
    closed = repo(tmp_path, StoreSettings(online_store=f"redis://{LOOPBACK}:{free_port()}"))  # nothing listens there
    result = RolloutResult(True, "new", "old", "kserve", [])
    retire_vectors(closed, result)
    assert result.promoted and result.reasons[-1].startswith("could not delete the vectors of old from the online store")
