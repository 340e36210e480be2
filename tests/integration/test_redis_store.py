"""Feast's production setup on a real redis-server (started on a free loopback port): the fast writer against stock
`feast materialize`, a shared SQL registry, a rollout that materializes the next model version into the store the
current one serves from, and products added and removed live while clients query."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
from client_load import under_load, wait_for
from new_products import flipped_product
from PIL import Image

from fashionrec.catalog.update import ServedVersion, add_items, reencode_additions, remove_items, stage_additions
from fashionrec.config import MODEL_NAME
from fashionrec.data.catalog import STYLES_FILE, read_styles, write_styles
from fashionrec.data.changes import ChangeLog
from fashionrec.data.validation.quarantine import validate_catalog
from fashionrec.deploy.local_target import LocalServing, register_encoder
from fashionrec.local.redis import LocalRedis, running_redis
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.embeddings import random_embeddings, read_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import (
    OnlineFeatures,
    StoreSettings,
    apply_and_materialize,
    apply_repo,
    ensure_materialized,
    materialize,
    open_store,
    retire_model_version,
    stage_repo,
)
from fashionrec.retrieval.index import ItemIndex, build_index
from fashionrec.retrieval.online_rows import delete_items, delete_model_version, stored_versions, versions_key, write_items
from fashionrec.serving.client import image_request, item_request, parse_hits
from fashionrec.serving.processes import (
    LIVE_DIR,
    LOOPBACK,
    LocalTorchServe,
    LocalTransformer,
    make_bundle,
    point_current,
    serve_locally,
)
from fashionrec.serving.release import Deployment

pytestmark = pytest.mark.integration
IDS = np.arange(20_000, 20_300)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def client(server: LocalRedis, db: int = 0) -> redis.Redis:
    return redis.Redis(host=LOOPBACK, port=server.port, db=db)


def redis_repo(
    tmp_path: Path, name: str, server: LocalRedis, version: str, db: int = 0, registry: str = "", seed: int = 0
) -> Path:
    """A repo on the Redis (db ``db``) whose offline source holds random vectors of ``version`` (the same ones, event
    time included, for every repo of that version and seed)."""
    source = tmp_path / f"{version}-{seed}.parquet"
    if not source.exists():
        write_embeddings(*random_embeddings(IDS, version, seed=seed), source)
    settings = StoreSettings(online_store=f"{server.url}/{db}", registry=registry)
    return stage_repo(source, tmp_path / name, settings=settings)


def dump(store: redis.Redis, project: str) -> dict[bytes, dict[bytes, bytes]]:
    """Feast's hashes: every key but the set of model versions beside them."""
    keys = [key for key in store.scan_iter(count=1000) if key != versions_key(project)]
    return {key: dict(store.hgetall(key)) for key in keys}  # type: ignore[arg-type]


def test_the_fast_writer_writes_the_redis_hashes_stock_feast_writes(redis_server: LocalRedis, tmp_path: Path) -> None:
    stock, fast = client(redis_server, 1), client(redis_server, 2)
    stock.flushdb(), fast.flushdb()
    apply_and_materialize(redis_repo(tmp_path, "stock", redis_server, "v-a", db=1), engine="feast")
    fast_repo = redis_repo(tmp_path, "fast", redis_server, "v-a", db=2)
    apply_and_materialize(fast_repo)
    project = open_store(fast_repo).config.project
    written = dump(fast, project)
    assert len(written) == 2 * len(IDS)  # one hash per item (attributes) and one per (item, version) (vector)
    assert written == dump(stock, project)
    assert stock.smembers(versions_key(project)) == fast.smembers(versions_key(project)) == {b"v-a"}


def test_removing_products_costs_commands_per_product_and_version_not_a_scan_of_the_store(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    """It scanned every key of the store and asked each whether it held a vector (minutes at a million items)."""
    db = client(redis_server, 6)
    db.flushdb()
    store = apply_repo(redis_repo(tmp_path, "many", redis_server, "v-a", db=6))
    many, versions = np.arange(100_000, 104_000), ("v-a", "v-b", "v-c")
    for seed, version in enumerate(versions):
        write_items(store, *random_embeddings(many, version, seed=seed))

    def removal_commands(item_ids: list[int]) -> dict[str, int]:
        db.config_resetstat()
        assert delete_items(store, item_ids) == len(item_ids)
        stats: dict[str, dict[str, Any]] = db.info("commandstats")  # type: ignore[assignment]
        return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}

    gone = [int(many[1]), int(many[2])]
    commands = removal_commands(gone)
    assert "scan" not in commands and "hexists" not in commands
    assert commands["hdel"] == len(gone) * (1 + len(versions))  # its attributes, its vector of each version
    assert commands["smembers"] == 1  # the versions, once
    online = OnlineFeatures(tmp_path / "many")
    for version in versions:
        assert online.embeddings([*gone, int(many[3])], version)[:2] == [None, None]
        assert online.embeddings([int(many[3])], version)[0] is not None
    assert online.attributes(gone)["gender"] == [None, None]
    assert stored_versions(store) == dict.fromkeys(versions, len(many) - 2)

    # A store whose versions were never recorded (written before the set existed): the first removal scans it once
    # and records them, the next one does not scan.
    db.delete(versions_key(store.config.project))
    assert "scan" in removal_commands([int(many[4])])
    assert db.smembers(versions_key(store.config.project)) == {v.encode() for v in versions}
    assert "scan" not in removal_commands([int(many[5])])
    assert stored_versions(store) == dict.fromkeys(versions, len(many) - 4)
    assert delete_model_version(store, "v-c") == len(many) - 4
    assert db.smembers(versions_key(store.config.project)) == {b"v-a", b"v-b"}  # a retired version is forgotten


def test_a_shared_sql_registry_and_feast_by_hand_serve_the_same_redis(redis_server: LocalRedis, tmp_path: Path) -> None:
    """Two repos (two releases) share the SQL registry and the Redis; `feast materialize` by hand in one of them
    writes what the other reads through Feast's own get_online_features."""
    client(redis_server, 3).flushdb()
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    first = redis_repo(tmp_path, "first", redis_server, "v-a", db=3, registry=registry)
    second = redis_repo(tmp_path, "second", redis_server, "v-a", db=3, registry=registry)
    feast = [sys.executable, "-c", "from feast.cli.cli import cli; cli()"]
    env = {**os.environ, "FEAST_USAGE": "False"}
    subprocess.run([*feast, "apply"], cwd=first, check=True, capture_output=True, env=env)
    table, vectors = read_embeddings(first / "data" / "item_embeddings.parquet")
    start, end = (
        (table["event_timestamp"].min() - pd.Timedelta(seconds=1)).isoformat(),
        (table["event_timestamp"].max() + pd.Timedelta(seconds=1)).isoformat(),
    )
    subprocess.run([*feast, "materialize", start, end], cwd=first, check=True, capture_output=True, env=env)
    reader = open_store(second)  # never applied: it finds the views in the shared registry
    assert {view.name for view in reader.list_feature_views()} == {"item_embedding", "item_attributes"}
    rows = [{"item_id": int(IDS[n]), "model_version": "v-a"} for n in (0, 7)]
    found = reader.get_online_features(
        features=["item_embedding:embedding", "item_attributes:gender"], entity_rows=rows
    ).to_dict()
    assert np.allclose(found["embedding"][0], vectors[0]) and np.allclose(found["embedding"][1], vectors[7])
    assert found["gender"] == list(table["gender"].iloc[[0, 7]])


def test_materializing_the_next_version_into_the_shared_store_never_disturbs_the_served_one(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    client(redis_server, 4).flushdb()
    repos, bundles = {}, {}
    for seed, version in enumerate(("v-a", "v-b")):
        repos[version] = redis_repo(tmp_path, version, redis_server, version, db=4, seed=seed)
        table, vectors = read_embeddings(repos[version] / "data" / "item_embeddings.parquet")
        ItemIndex.build(table["item_id"].to_numpy(), vectors, version, "d").save(tmp_path / f"index-{version}")
    apply_and_materialize(repos["v-a"])
    live = tmp_path / LIVE_DIR
    for version in repos:
        bundles[version] = make_bundle(_deployment(tmp_path / f"index-{version}", repos[version]), live)
    point_current(live, bundles["v-a"].name)
    transformer = LocalTransformer(
        tmp_path / "transformer", index_dir=live / "current" / "index", feature_repo=live / "current" / "feature_repo",
        predictor_host=f"{LOOPBACK}:9",  # item_id queries only: no predictor hop
    )  # fmt: skip
    transformer.start()
    try:
        queries = [item_request([int(IDS[n]), int(IDS[n + 1])]) for n in range(0, 200, 20)]
        store = apply_repo(repos["v-b"])
        during = under_load(transformer.url, queries, lambda: materialize(store))
        assert during and set(during) == {(200, "v-a")}  # v-b's vectors landed beside v-a's: not one 503
        assert stored_versions(store) == {"v-a": len(IDS), "v-b": len(IDS)}

        def swap() -> None:
            point_current(live, bundles["v-b"].name)
            load = f"{transformer.url}/v2/repository/models/{MODEL_NAME}/load"
            assert httpx.post(load, headers=transformer.admin_headers, timeout=60).status_code == 200

        swapped = under_load(transformer.url, queries, swap)
        assert {status for status, _ in swapped} == {200} and swapped[-1] == (200, "v-b")
        cleaned = under_load(transformer.url, queries, lambda: retire_model_version(repos["v-b"], "v-a"))
        assert set(cleaned) == {(200, "v-b")}
        assert stored_versions(store) == {"v-b": len(IDS)}  # the old version's rows are gone
        # a rollback to v-a puts its vectors back from its release before its transformer loads
        assert ensure_materialized(repos["v-a"], "v-a") is True and ensure_materialized(repos["v-a"], "v-a") is False
        assert stored_versions(store) == {"v-a": len(IDS), "v-b": len(IDS)}
    finally:
        transformer.stop()


def test_a_restarting_redis_costs_503s_with_the_reason_and_its_data_comes_back(tmp_path: Path) -> None:
    """While the online store is down the transformer says so (503, not a 500 with the client's stack); a persistent
    Redis restarted on its data serves every vector again, with no reload."""
    server = LocalRedis(tmp_path / "redis", persistent=True)
    server.start()
    transformer = None
    try:
        repo = redis_repo(tmp_path, "repo", server, "v-a")
        table, vectors = read_embeddings(repo / "data" / "item_embeddings.parquet")
        apply_and_materialize(repo)
        ItemIndex.build(table["item_id"].to_numpy(), vectors, "v-a", "d").save(tmp_path / "index")
        transformer = LocalTransformer(
            tmp_path / "transformer", index_dir=tmp_path / "index", feature_repo=repo, predictor_host=f"{LOOPBACK}:9"
        )
        transformer.start()
        url = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"
        query = item_request([int(IDS[3])], top_k=5)
        assert httpx.post(url, json=query, timeout=30).status_code == 200
        server.stop()
        down = httpx.post(url, json=query, timeout=60)
        assert down.status_code == 503 and "online store cannot be reached" in down.json()["error"]
        server.start()  # the same port and data directory: its append-only file brings the store back
        again = httpx.post(url, json=query, timeout=30)
        assert again.status_code == 200 and len(parse_hits(again.json())[0]) == 5
    finally:
        if transformer is not None:
            transformer.stop()
        server.stop()


def _deployment(index_dir: Path, repo: Path) -> Deployment:
    return Deployment(index_dir.parent / "unused-model-store", index_dir, repo)


def test_products_added_and_removed_live_on_every_served_version_without_a_dropped_request(
    redis_server: LocalRedis, stages: StageOutputs, second_version: StageOutputs, tiny_catalog: Path, tmp_path: Path
) -> None:
    client(redis_server, 5).flushdb()
    settings = StoreSettings(online_store=f"{redis_server.url}/5")
    repo = stage_repo(stages.embeddings, tmp_path / "repo", settings=settings)
    apply_and_materialize(repo)
    next_repo = stage_repo(second_version.embeddings, tmp_path / "next-repo", settings=settings)
    apply_and_materialize(next_repo)  # a rollout's next version, in the same store
    build_index(stages.embeddings, tmp_path / "index", kind="hnsw")  # additions go into a graph index too
    deployment = Deployment(stages.model_store, tmp_path / "index", repo)
    catalog = tmp_path / "catalog"
    shutil.copytree(tiny_catalog, catalog)
    changes = tmp_path / "changes"
    new_rows = [
        flipped_product(catalog, 10003, 90001, tmp_path / "new"),
        flipped_product(catalog, 10030, 90002, tmp_path / "new"),
    ]
    Image.new("RGB", (80, 60), "white").save(tmp_path / "new" / "images" / "90003.jpg")  # blank: quarantined
    blank = new_rows[0].copy()
    blank["id"] = "90003"
    write_styles(pd.DataFrame([*new_rows, blank]), tmp_path / "new" / STYLES_FILE)
    version, next_version = deployment.model_version, second_version.deployment.model_version

    with serve_locally(deployment, tmp_path / "serve", catalog_changes=changes) as (predictor, transformer):
        assert isinstance(predictor, LocalTorchServe)
        serving = LocalServing.of(predictor, transformer, tmp_path / "serve" / LIVE_DIR)
        register_encoder(serving, second_version.model_store)  # the predictor serves both versions, as in a rollout
        served = [*serving.served(), ServedVersion(next_version, next_repo)]
        new_photo = (tmp_path / "new" / "images" / "90001.jpg").read_bytes()
        by_image = image_request([new_photo], top_k=3)
        by_id = item_request([90001], top_k=3)
        base = [item_request([10001]), image_request([(catalog / "images" / "10002.jpg").read_bytes()])]
        assert httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=by_id).status_code == 400  # unknown yet

        def hits(body: dict[str, object]) -> list[int]:
            answer = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=30).json()
            return [int(i) for i in answer["outputs"][0]["data"]]

        def add() -> None:
            additions = stage_additions(tmp_path / "new" / "images", tmp_path / "new" / STYLES_FILE, tmp_path / "staged")
            predictor_client = serving.predictor()
            result = add_items(additions, served, predictor_client, ChangeLog(str(changes)), catalog, tmp_path / "report")
            assert result.added == [90001, 90002] and result.quarantined == 1
            assert result.model_versions == sorted({version, next_version})
            assert hits(by_id)  # the vector is in the online store: item_id queries work at once
            assert wait_for(lambda: hits(by_image)[0] == 90001)  # within a poll of the change log

        answers = under_load(transformer.url, base, add)
        assert answers and {status for status, _ in answers} == {200}

        online = OnlineFeatures(repo)
        vectors = {v: online.embeddings([90001, 90002], v) for v in (version, next_version)}
        assert all(vector is not None for found in vectors.values() for vector in found)  # encoded by both versions
        assert not np.allclose(vectors[version][0], vectors[next_version][0])  # type: ignore[arg-type]
        assert {"90001", "90002"} <= set(read_styles(catalog / STYLES_FILE).rows["id"])  # the next retrain's source
        assert (catalog / "images" / "90002.jpg").is_file() and not (catalog / "images" / "90003.jpg").exists()
        assert "blank" in (tmp_path / "report" / "quarantine.csv").read_text()

        def remove() -> None:
            # 10000 is the first item of the built index: a transformer started later must still load
            result = remove_items([90001, 10000, 424242], served, ChangeLog(str(changes)), catalog)
            assert result.removed == [10000, 90001] and result.unknown == [424242]
            assert 90001 not in hits(by_image)  # at once: a hit without attributes is never returned
            assert httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=by_id).status_code == 400

        answers = under_load(transformer.url, base, remove)
        assert answers and {status for status, _ in answers} == {200}
        metrics = httpx.get(f"{transformer.url}/metrics").text
        assert wait_for(
            lambda: (
                f'fashionrec_catalog_changes_total{{action="remove",model_version="{version}",outcome="applied"}} 2.0'
                in httpx.get(f"{transformer.url}/metrics").text
            )
        )
        assert "fashionrec_index_items" in metrics
        assert online.embeddings([90001], next_version) == [None] and online.embeddings([90002], next_version)[0] is not None
        assert "90001" not in set(read_styles(catalog / STYLES_FILE).rows["id"])
        valid = {str(i) for i in validate_catalog(catalog).valid["id"]}  # what the next full retrain trains on
        assert "90002" in valid and not {"90001", "10000"} & valid
        assert "90001" in (catalog / "removed.jsonl").read_text()  # kept, with when it was removed
        assert len(list((catalog / "removed_images").glob("90001.*.jpg"))) == 1  # one copy per edit, named by it
        assert not (catalog / "images" / "90001.jpg").exists()

        # A version rolled out later, whose store lacks the additions, gets them encoded by its own encoder.
        added_vector = online.embeddings([90002], next_version)[0]
        assert delete_model_version(open_store(next_repo), next_version) > 0
        predictor_client = serving.predictor()
        target = ServedVersion(next_version, next_repo)
        assert reencode_additions(ChangeLog(str(changes)), target, predictor_client) == 1  # 90002; 90001 was removed
        assert np.allclose(online.embeddings([90002], next_version)[0], added_vector, atol=1e-5)  # type: ignore[arg-type]
        assert online.embeddings([90001], next_version) == [None]
        assert retire_model_version(next_repo, next_version) == 1  # a shared store: the version's vectors go

    # A transformer started later (a new replica) replays the log: 90002 is there, 90001 is not.
    with serve_locally(deployment, tmp_path / "serve-again", catalog_changes=changes) as (_, transformer):
        answer = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=image_request([new_photo], top_k=5)).json()
        assert 90001 not in answer["outputs"][0]["data"]
        flipped = (tmp_path / "new" / "images" / "90002.jpg").read_bytes()
        answer = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=image_request([flipped], top_k=1)).json()
        assert answer["outputs"][0]["data"] == [90002]
    assert json.loads(next(iter(sorted(changes.glob("*.json")))).read_text())["action"] == "add"
