import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fashionrec.config import ATTRIBUTE_COLUMNS, EMBEDDING_DIM
from fashionrec.embed import read_embeddings, write_embeddings
from fashionrec.featurestore import OnlineFeatures, apply_and_materialize, stage_repo, template_dir
from fashionrec.index import ItemIndex, build_index
from fashionrec.train import ModelCard


def test_embeddings_table_is_feasts_offline_source(stages) -> None:  # type: ignore[no-untyped-def]
    table, vectors = read_embeddings(stages.embeddings)
    card = ModelCard.load(stages.model_dir)
    assert vectors.shape == (60, EMBEDDING_DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert set(table["model_version"]) == {card.model_version}
    assert set(table["dataset_digest"]) == {card.dataset_digest}
    assert {"item_id", "event_timestamp", *ATTRIBUTE_COLUMNS} <= set(table.columns)
    assert str(table["event_timestamp"].dt.tz) == "UTC"


def test_index_finds_each_item_first_and_round_trips(stages, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table, vectors = read_embeddings(stages.embeddings)
    index = ItemIndex.load(stages.index_dir)
    assert index.meta.count == 60 and index.meta.model_version == table["model_version"].iloc[0]
    scores, ids = index.search(vectors[:5], 3)
    assert list(ids[:, 0]) == list(table["item_id"][:5])
    assert np.allclose(scores[:, 0], 1, atol=1e-4) and (np.diff(scores, axis=1) <= 1e-6).all()
    _, ids = index.search(vectors[:1], 100)  # more than the catalogue holds: padded with -1
    assert (ids[0, 60:] == -1).all()
    with pytest.raises(ValueError, match="queries must be"):
        index.search(vectors[:, :10], 1)


def test_index_refuses_vectors_of_two_model_versions(stages, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table, vectors = read_embeddings(stages.embeddings)
    table.loc[:4, "model_version"] = "some-other-model"
    write_embeddings(table, vectors, tmp_path / "mixed.parquet")
    with pytest.raises(ValueError, match="2 model versions"):
        build_index(tmp_path / "mixed.parquet", tmp_path / "index")


def test_online_store_serves_what_was_materialized_from_any_working_directory(
    stages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    table, vectors = read_embeddings(stages.embeddings)
    monkeypatch.chdir(tmp_path)  # Feast must not depend on the process's working directory
    online = OnlineFeatures(stages.feature_repo)
    ids = [int(i) for i in table["item_id"][:3]] + [999_999_999]
    found, versions = online.embeddings(ids)
    assert found[3] is None and versions[3] is None
    for got, want in zip(found[:3], vectors[:3], strict=True):
        assert got is not None and np.allclose(got, want, atol=1e-6)
    attributes = online.attributes(ids[:2])
    assert attributes["articleType"] == list(table["articleType"][:2])


def test_feast_cli_by_hand_gives_the_same_online_values(stages, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`cd repo && feast apply && feast materialize START END` must equal what the pipeline step does."""
    repo = stage_repo(stages.embeddings, tmp_path / "by_hand")
    feast = [sys.executable, "-c", "from feast.cli.cli import cli; cli()"]
    timestamps = pd.read_parquet(stages.embeddings, columns=["event_timestamp"])["event_timestamp"]
    start = (timestamps.min() - pd.Timedelta(seconds=1)).isoformat()
    end = (timestamps.max() + pd.Timedelta(seconds=1)).isoformat()
    env = {**os.environ, "FEAST_USAGE": "False"}
    subprocess.run([*feast, "apply"], cwd=repo, check=True, capture_output=True, env=env)
    subprocess.run([*feast, "materialize", start, end], cwd=repo, check=True, capture_output=True, env=env)
    by_hand, _ = OnlineFeatures(repo).embeddings([60_000, 10_000, 10_001])
    in_process, _ = OnlineFeatures(stages.feature_repo).embeddings([60_000, 10_000, 10_001])
    assert by_hand[0] is None and in_process[0] is None
    for a, b in zip(by_hand[1:], in_process[1:], strict=True):
        assert a is not None and b is not None and np.array_equal(a, b)


def test_repo_template_is_found_and_commented() -> None:
    yaml_text = (template_dir() / "feature_store.yaml").read_text()
    keys = [line for line in yaml_text.splitlines() if line.strip() and not line.lstrip().startswith("#") and ":" in line]
    lines = yaml_text.splitlines()
    for key in keys:
        above = lines[lines.index(key) - 1].strip()
        assert above.startswith("#"), f"feature_store.yaml key without a comment: {key!r}"


def test_materialize_twice_is_idempotent(stages, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "repo"
    shutil.copytree(stages.feature_repo, repo)
    first = apply_and_materialize(repo)
    second = apply_and_materialize(repo)
    assert first == second and first.rows == 60


def test_live_link_flips_between_deployments_from_a_relative_folder(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The transformer reads live/current/{index,feature_repo}; a swap re-points it, also when live/ is relative."""
    from fashionrec.serving import LIVE_FEATURE_REPO, LIVE_INDEX, Deployment, link_deployment

    monkeypatch.chdir(tmp_path)
    deployments = []
    for name in ("v1", "v2"):
        (tmp_path / name / "index").mkdir(parents=True)
        (tmp_path / name / "index" / "index.json").write_text(name)
        (tmp_path / name / "repo").mkdir()
        deployments.append(Deployment(tmp_path / name / "store", tmp_path / name / "index", tmp_path / name / "repo"))
    current = link_deployment(deployments[0], Path("serve") / "live")
    assert (current / LIVE_INDEX / "index.json").read_text() == "v1"
    assert link_deployment(deployments[1], Path("serve") / "live") == current
    assert (current / LIVE_INDEX / "index.json").read_text() == "v2"
    assert (current / LIVE_FEATURE_REPO).resolve() == (tmp_path / "v2" / "repo").resolve()
