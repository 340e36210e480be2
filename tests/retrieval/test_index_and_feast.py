import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fashionrec.config import ATTRIBUTE_COLUMNS, EMBEDDING_DIM
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.embeddings import read_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import OnlineFeatures, apply_and_materialize, stage_repo, template_dir
from fashionrec.retrieval.index import EXACT_SEARCH_LIMIT, HNSW_LIMIT, ItemIndex, build_index, choose_index_spec
from fashionrec.training.card import ModelCard


def test_embeddings_table_is_feasts_offline_source(stages: StageOutputs) -> None:
    table, vectors = read_embeddings(stages.embeddings)
    card = ModelCard.load(stages.model_dir)
    assert vectors.shape == (60, EMBEDDING_DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert set(table["model_version"]) == {card.model_version}
    assert set(table["dataset_digest"]) == {card.dataset_digest}
    assert {"item_id", "event_timestamp", *ATTRIBUTE_COLUMNS} <= set(table.columns)
    assert str(table["event_timestamp"].dt.tz) == "UTC"


def test_index_finds_each_item_first_and_round_trips(stages: StageOutputs, tmp_path: Path) -> None:
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


def test_index_refuses_vectors_of_two_model_versions(stages: StageOutputs, tmp_path: Path) -> None:
    table, vectors = read_embeddings(stages.embeddings)
    table.loc[:4, "model_version"] = "some-other-model"
    write_embeddings(table, vectors, tmp_path / "mixed.parquet")
    with pytest.raises(ValueError, match="2 model versions"):
        build_index(tmp_path / "mixed.parquet", tmp_path / "index")


def test_index_kind_follows_catalogue_size() -> None:
    assert choose_index_spec(EXACT_SEARCH_LIMIT).kind == "flat"
    assert choose_index_spec(EXACT_SEARCH_LIMIT + 1).kind == "hnsw"
    assert choose_index_spec(HNSW_LIMIT).kind == "hnsw"
    ivf = choose_index_spec(HNSW_LIMIT + 1)
    assert ivf.kind == "ivf" and ivf.params["nlist"] == int(4 * (HNSW_LIMIT + 1) ** 0.5)
    assert 1 <= ivf.params["nprobe"] < ivf.params["nlist"]
    assert choose_index_spec(10, "hnsw").kind == "hnsw"  # forced, whatever the size
    assert choose_index_spec(1000, "ivf").params["nlist"] == 20  # never more lists than k-means can train
    with pytest.raises(ValueError, match="index kind must be one of"):
        choose_index_spec(10, "annoy")
    with pytest.raises(ValueError, match="at least one item"):
        choose_index_spec(0)


def _clustered_unit_vectors(count: int, dimension: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count // 50, dimension))
    vectors = centres[rng.integers(0, len(centres), count)] + 0.5 * rng.standard_normal((count, dimension))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("kind", "search_param"), [("hnsw", "ef_search"), ("ivf", "nprobe")])
def test_approximate_index_finds_what_exact_search_finds_and_keeps_its_parameters(
    kind: str, search_param: str, tmp_path: Path
) -> None:
    import faiss

    vectors = _clustered_unit_vectors(4000, 64, seed=1)
    item_ids = np.arange(len(vectors)) * 3 + 10_000
    queries = _clustered_unit_vectors(4000, 64, seed=1)[:200] + 0.01
    exact = ItemIndex.build(item_ids, vectors, "v1", "digest", kind="flat")
    approximate = ItemIndex.build(item_ids, vectors, "v1", "digest", kind=kind)
    _, want = exact.search(queries, 10)
    _, got = approximate.search(queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.9, recall
    assert set(got.ravel()) <= set(item_ids)  # ids, not row numbers

    approximate.save(tmp_path / kind)
    written = json.loads((tmp_path / kind / "index.json").read_text())
    assert written["index_kind"] == kind and written["index_params"] == approximate.meta.index_params
    # Search parameters come from index.json on load (FAISS does not keep all of them in the file).
    written["index_params"][search_param] = 3
    (tmp_path / kind / "index.json").write_text(json.dumps(written))
    loaded = ItemIndex.load(tmp_path / kind)  # holds the FAISS objects that `inner` points into
    inner: Any = faiss.downcast_index(loaded.index.index)  # type: ignore[attr-defined]
    assert (inner.hnsw.efSearch if kind == "hnsw" else inner.nprobe) == 3
    loaded.tune(**{search_param: 5})
    assert (inner.hnsw.efSearch if kind == "hnsw" else inner.nprobe) == 5 and loaded.meta.index_params[search_param] == 5
    with pytest.raises(ValueError, match="has no search parameter"):
        loaded.tune(**{"nprobe" if kind == "hnsw" else "ef_search": 5})


def test_index_json_that_disagrees_with_the_index_is_refused(tmp_path: Path) -> None:
    vectors = _clustered_unit_vectors(500, 16, seed=2)
    ItemIndex.build(np.arange(500), vectors, "v1", "digest", kind="hnsw").save(tmp_path)
    written = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps({**written, "index_kind": "flat", "index_params": {}}))
    with pytest.raises(ValueError, match=r"index\.json says 'flat', the index is a IndexHNSWFlat"):
        ItemIndex.load(tmp_path)


def test_online_store_serves_what_was_materialized_from_any_working_directory(
    stages: StageOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table, vectors = read_embeddings(stages.embeddings)
    monkeypatch.chdir(tmp_path)  # Feast must not depend on the process's working directory
    online = OnlineFeatures(stages.feature_repo)
    ids = [int(i) for i in table["item_id"][:3]] + [999_999_999]
    version = str(table["model_version"][0])
    found = online.embeddings(ids, version)
    assert found[3] is None and online.embeddings(ids[:1], "another-version") == [None]
    for got, want in zip(found[:3], vectors[:3], strict=True):
        assert got is not None and np.allclose(got, want, atol=1e-6)
    attributes = online.attributes(ids[:2])
    assert attributes["articleType"] == list(table["articleType"][:2])


def test_feast_cli_by_hand_gives_the_same_online_values(stages: StageOutputs, tmp_path: Path) -> None:
    """`cd repo && feast apply && feast materialize START END` must equal what the pipeline step does."""
    repo = stage_repo(stages.embeddings, tmp_path / "by_hand")
    feast = [sys.executable, "-c", "from feast.cli.cli import cli; cli()"]
    timestamps = pd.read_parquet(stages.embeddings, columns=["event_timestamp"])["event_timestamp"]
    start = (timestamps.min() - pd.Timedelta(seconds=1)).isoformat()
    end = (timestamps.max() + pd.Timedelta(seconds=1)).isoformat()
    env = {**os.environ, "FEAST_USAGE": "False"}
    subprocess.run([*feast, "apply"], cwd=repo, check=True, capture_output=True, env=env)
    subprocess.run([*feast, "materialize", start, end], cwd=repo, check=True, capture_output=True, env=env)
    version = str(read_embeddings(stages.embeddings)[0]["model_version"][0])
    by_hand = OnlineFeatures(repo).embeddings([60_000, 10_000, 10_001], version)
    in_process = OnlineFeatures(stages.feature_repo).embeddings([60_000, 10_000, 10_001], version)
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


def test_materialize_twice_is_idempotent(stages: StageOutputs, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(stages.feature_repo, repo)
    first = apply_and_materialize(repo)
    table = read_embeddings(stages.embeddings)[0]
    ids, version = list(table["item_id"].astype(int)), str(table["model_version"][0])
    before = OnlineFeatures(repo).embeddings(ids, version), OnlineFeatures(repo).attributes(ids)
    second = apply_and_materialize(repo)
    after = OnlineFeatures(repo).embeddings(ids, version), OnlineFeatures(repo).attributes(ids)
    assert first == second and first.rows == 60
    assert after[1] == before[1]  # attributes
    vectors_before, vectors_after = (
        np.stack([v for v in before[0] if v is not None]),
        np.stack([v for v in after[0] if v is not None]),
    )
    assert vectors_after.shape == (60, EMBEDDING_DIM) and np.array_equal(vectors_after, vectors_before)  # every vector
