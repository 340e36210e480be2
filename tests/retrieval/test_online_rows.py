"""fashionrec's online-store writer against Feast's own materialize (embedded sqlite, no server): the same rows byte
for byte, vectors keyed by model version, deletes, and the config switch that stages a Redis or SQL-registry repo."""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from fashionrec.config import ATTRIBUTE_COLUMNS, FEAST_CONFIG_FILE
from fashionrec.retrieval import online_rows
from fashionrec.retrieval.embeddings import random_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import (
    OnlineFeatures,
    StoreSettings,
    apply_and_materialize,
    apply_repo,
    ensure_materialized,
    open_store,
    retire_model_version,
    stage_repo,
)
from fashionrec.retrieval.online_rows import delete_items, delete_model_version, stored_versions, write_items

IDS = np.arange(500, 620)


def staged(tmp_path: Path, name: str, version: str = "v-a", ids: np.ndarray = IDS, seed: int = 0) -> Path:
    table, vectors = random_embeddings(ids, version, seed=seed)
    write_embeddings(table, vectors, tmp_path / f"{name}.parquet")
    return stage_repo(tmp_path / f"{name}.parquet", tmp_path / name)


def rows(repo: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(repo / "data" / "online_store.db") as connection:
        tables = [t for (t,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            table: connection.execute(
                f'SELECT entity_key, feature_name, value, value_text, event_ts, created_ts FROM "{table}" ORDER BY 1, 2'
            ).fetchall()
            for table in tables
        }


def test_the_fast_writer_writes_exactly_the_rows_feast_materialize_writes(tmp_path: Path) -> None:
    stock, fast = staged(tmp_path, "stock"), staged(tmp_path, "fast")
    apply_and_materialize(stock, engine="feast")
    apply_and_materialize(fast)
    stock_rows, fast_rows = rows(stock), rows(fast)
    assert set(stock_rows) == {"fashionrec_item_embedding", "fashionrec_item_attributes"}
    assert len(stock_rows["fashionrec_item_embedding"]) == len(IDS)
    assert len(stock_rows["fashionrec_item_attributes"]) == len(IDS) * len(ATTRIBUTE_COLUMNS)
    assert fast_rows == stock_rows


def test_materialize_incremental_by_hand_resumes_where_the_fast_writer_stopped(tmp_path: Path) -> None:
    """The fast writer records its window in the registry as Feast does, so `feast materialize-incremental` (the
    same call in-process) starts after it and finds nothing new to change."""
    repo = staged(tmp_path, "repo")
    window = apply_and_materialize(repo)
    before = rows(repo)
    store = open_store(repo)
    intervals = {view.name: view.materialization_intervals for view in store.list_feature_views()}
    assert all(len(found) == 1 and found[0][1].isoformat() == window.end for found in intervals.values())
    store.materialize_incremental(end_date=datetime.now(UTC))
    assert rows(repo) == before


def test_vectors_are_keyed_by_model_version_and_two_versions_coexist(tmp_path: Path) -> None:
    repo = staged(tmp_path, "repo", "v-a")
    store = apply_repo(repo)
    a_table, a_vectors = random_embeddings(IDS, "v-a", seed=0)
    b_table, b_vectors = random_embeddings(IDS[:50], "v-b", seed=1)
    write_items(store, a_table, a_vectors)
    write_items(store, b_table, b_vectors)
    online = OnlineFeatures(repo)
    ids = [int(IDS[0]), int(IDS[60])]
    a, b = online.embeddings(ids, "v-a"), online.embeddings(ids, "v-b")
    assert np.array_equal(a[0], a_vectors[0]) and np.array_equal(a[1], a_vectors[60])  # type: ignore[arg-type]
    assert np.array_equal(b[0], b_vectors[0]) and b[1] is None  # type: ignore[arg-type]  # v-b never had item 560
    assert stored_versions(store) == {"v-a": len(IDS), "v-b": 50}

    assert delete_model_version(store, "v-a") == len(IDS)
    assert stored_versions(store) == {"v-b": 50}
    assert online.embeddings(ids, "v-a") == [None, None]
    assert online.attributes(ids)["articleType"] == list(a_table["articleType"].iloc[[0, 60]])  # attributes stay


def test_direct_sqlite_reads_give_what_feasts_online_read_gives(tmp_path: Path) -> None:
    """Serving reads the embedded store by serialised key; the values and the gaps must be Feast's own."""
    from fashionrec.config import ATTRIBUTE_COLUMNS, FEAST_ATTRIBUTE_VIEW, FEAST_EMBEDDING_VIEW
    from fashionrec.retrieval.online_rows import item_key, vector_key

    repo = staged(tmp_path, "repo")
    apply_and_materialize(repo, engine="feast")
    delete_items(open_store(repo), [int(IDS[3])])
    online = OnlineFeatures(repo)
    assert online._sqlite is not None
    feast = online._online
    ids = [int(IDS[0]), int(IDS[3]), 999_999, int(IDS[7])]  # a removed item and an unknown one among them
    for view, features, keys, version in (
        (FEAST_ATTRIBUTE_VIEW, list(ATTRIBUTE_COLUMNS), [item_key(i) for i in ids], None),
        (FEAST_EMBEDDING_VIEW, ["embedding"], [vector_key(i, "v-a") for i in ids], "v-a"),
    ):
        view_object = online.store.get_feature_view(view)
        expected = [values for _, values in feast.online_read(online.store.config, view_object, keys, features)]
        assert online._read(view_object, ids, features, version) == expected
        assert expected[1] is None and expected[2] is None and expected[0] is not None


def test_deleting_items_removes_their_attributes_and_every_version_of_their_vectors(tmp_path: Path) -> None:
    repo = staged(tmp_path, "repo")
    store = apply_repo(repo)
    for seed, version in enumerate(("v-a", "v-b")):
        write_items(store, *random_embeddings(IDS, version, seed=seed))
    gone, kept = [int(IDS[1]), int(IDS[2])], int(IDS[3])
    assert delete_items(store, [*gone, 999_999]) == 2  # an id with no rows is ignored
    online = OnlineFeatures(repo)
    assert online.embeddings([*gone, kept], "v-a")[:2] == [None, None]
    assert online.embeddings(gone, "v-b") == [None, None] and online.embeddings([kept], "v-b")[0] is not None
    assert online.attributes([*gone, kept])["gender"][:2] == [None, None]
    assert stored_versions(store) == {"v-a": len(IDS) - 2, "v-b": len(IDS) - 2}


def test_removing_items_searches_the_store_by_key_and_never_reads_all_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every statement a removal runs finds its rows through the key index (it scanned every vector key: minutes at
    a million items); the searches grow with the items removed, not with the store."""
    repo = staged(tmp_path, "repo")
    store = apply_repo(repo)
    versions = ("v-a", "v-b", "v-c")
    for seed, version in enumerate(versions):
        write_items(store, *random_embeddings(IDS, version, seed=seed))
    statements: list[str] = []
    real_init = online_rows._SqliteRows.__init__

    def traced(self: online_rows._SqliteRows, feast_store: object) -> None:
        real_init(self, feast_store)  # type: ignore[arg-type]
        self.connection.set_trace_callback(statements.append)

    gone = [int(IDS[0]), int(IDS[1])]  # neighbours: their keys differ in one byte
    with monkeypatch.context() as patch:
        patch.setattr(online_rows._SqliteRows, "__init__", traced)
        assert delete_items(store, gone) == 2
    reads = [sql for sql in statements if sql.startswith(("SELECT", "DELETE"))]
    with sqlite3.connect(repo / "data" / "online_store.db") as connection:
        plans = {sql: [row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}")] for sql in reads}
    assert all(plan and all(step.startswith("SEARCH") for step in plan) for plan in plans.values()), plans
    assert sum(sql.startswith("SELECT") for sql in reads) == len(gone)  # one key search per item
    assert sum(sql.startswith("DELETE") for sql in reads) == len(gone) * (1 + len(versions))  # its attributes, its vectors
    online = OnlineFeatures(repo)
    for version in versions:
        assert online.embeddings([*gone, int(IDS[2])], version)[:2] == [None, None]
        assert online.embeddings([int(IDS[2])], version)[0] is not None
    assert online.attributes(gone)["gender"] == [None, None]
    assert stored_versions(store) == dict.fromkeys(versions, len(IDS) - 2)


def test_a_rewrite_replaces_a_vector_instead_of_adding_one(tmp_path: Path) -> None:
    repo = staged(tmp_path, "repo")
    store = apply_repo(repo)
    write_items(store, *random_embeddings(IDS, "v-a", seed=0))
    table, vectors = random_embeddings(IDS[:1], "v-a", seed=5)
    write_items(store, table, vectors)
    assert np.array_equal(OnlineFeatures(repo).embeddings([int(IDS[0])], "v-a")[0], vectors[0])  # type: ignore[arg-type]
    assert stored_versions(store) == {"v-a": len(IDS)}


def test_the_embedded_store_of_a_release_keeps_its_vectors_for_a_later_rollback(tmp_path: Path) -> None:
    repo = staged(tmp_path, "repo", "v-a")
    apply_and_materialize(repo)
    # sqlite is one file per release: nothing is retired from it, and nothing needs materializing again
    assert retire_model_version(repo, "v-a") is None and stored_versions(open_store(repo)) == {"v-a": len(IDS)}
    assert ensure_materialized(repo, "v-a") is False


def test_the_config_switch_stages_redis_and_a_sql_registry(tmp_path: Path) -> None:
    table, vectors = random_embeddings(IDS, "v-a")
    write_embeddings(table, vectors, tmp_path / "e.parquet")
    settings = StoreSettings(online_store="redis://:${FEAST_REDIS_PASSWORD}@redis.feast:6379/2", registry="sqlite:///r.db")
    config = yaml.safe_load(
        (stage_repo(tmp_path / "e.parquet", tmp_path / "repo", settings=settings) / FEAST_CONFIG_FILE).read_text()
    )
    assert config["online_store"] == {
        "type": "redis",
        "connection_string": "redis.feast:6379,db=2,password=${FEAST_REDIS_PASSWORD}",
    }
    assert config["registry"] == {"registry_type": "sql", "path": "sqlite:///r.db", "cache_ttl_seconds": 60}
    assert config["project"] == "fashionrec" and config["entity_key_serialization_version"] == 3
    default = stage_repo(tmp_path / "e.parquet", tmp_path / "default") / FEAST_CONFIG_FILE
    assert default.read_text() == (Path(__file__).parents[2] / "feature_repo" / FEAST_CONFIG_FILE).read_text()


@pytest.mark.parametrize(
    "setting",
    [
        {"online_store": "redis://:s3cret-pw@redis.feast:6379/2"},
        {"online_store": "redis://:p%2Fw%40s3cret-pw@10.0.0.7:6380"},
        {"online_store": "redis://:s3cret-pw@redis.feast:port"},  # malformed too: the password is still never shown
        {"online_store": "redis:/:s3cret-pw@redis.feast:6379"},
        {"registry": "postgresql://feast:s3cret-pw@db.feast/registry"},
    ],
)
def test_a_literal_password_is_refused_naming_the_parameter_not_the_password(setting: dict[str, str]) -> None:
    """It would be stored with the run, in feature_store.yaml and in the published release."""
    with pytest.raises(ValueError) as refused:
        StoreSettings(**setting)
    message = str(refused.value)
    assert "s3cret" not in message and "${VAR}" in message
    assert ("online_store" if "online_store" in setting else "feast_registry") in message


def test_a_password_reference_may_be_percent_encoded() -> None:
    config = StoreSettings(online_store="redis://:%24%7BFEAST_REDIS_PASSWORD%7D@10.0.0.7:6380").online_store_config()
    assert config == {"type": "redis", "connection_string": "10.0.0.7:6380,password=${FEAST_REDIS_PASSWORD}"}


@pytest.mark.parametrize(
    "url",
    ["redis.feast:6379", "redis://", "redis://host", "redis://host:port", "redis://u:${P}@h:1", "redis://h:1/x",
     "redis://:${FEAST_REDIS_PASSWORD}@[::1:6379"],
)  # fmt: skip
def test_a_malformed_online_store_setting_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="online store must"):
        StoreSettings(online_store=url).online_store_config()


def test_a_registry_that_is_no_url_is_refused() -> None:
    with pytest.raises(ValueError, match="SQLAlchemy URL"):
        StoreSettings(registry="registry.db").registry_config()
