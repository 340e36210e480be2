"""Rows of the Feast online store, written and deleted directly: materialize at tens of thousands of items/s, live
catalogue additions and removals, and the cleanup of a rolled-out model version's vectors.

Feast's materialize builds one protobuf message per feature value through several layers and, on sqlite, runs one
INSERT per value (~4k items/s on our 2 cores). The rows written here are byte for byte what Feast writes: the same
entity-key serialisation, value protos, sqlite tables and Redis hashes (Feast's helpers name them), so Feast's reads,
`feast materialize` by hand and this module interoperate; the tests read back through Feast. sqlite and Redis have
a fast path; any other online store goes through Feast's ``online_write_batch``.

Removing products costs what it removes, not the size of the store: on sqlite the vector keys of an item share
their first bytes (the id comes before the model version), so one index search per item finds every version's; on
Redis, which has no such search, the writers record the model versions that have vectors in one small set beside
Feast's hashes (``versions_key``), and a removal deletes exactly each item's key of each of them. A store whose
vectors only Feast wrote (before this set existed) is scanned once by the first removal, which fills the set; a
model version materialized by hand with ``feast materialize`` into a store that has the set is not seen by removals
until ``note_model_versions`` names it.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from fashionrec.config import ATTRIBUTE_COLUMNS, FEAST_ATTRIBUTE_VIEW, FEAST_EMBEDDING_VIEW, FEAST_JOIN_KEY, FEAST_VERSION_KEY

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

EMBEDDING_FEATURE = "embedding"
REDIS_BATCH = 2_000  # commands per Redis pipeline round trip
SQLITE_CHUNK = 4_000  # items per executemany: small enough to overlap building and inserting
SQLITE_READ_CHUNK = 900  # keys per SELECT ... IN (...): under sqlite's oldest limit of 999 bound parameters
# Redis: the set of model versions with vectors in the store. It ends with ":", which no project name does, so no
# Feast scan (``<key prefix>*<project>``) and no scan of ours meets it.
REDIS_VERSIONS_KEY = "fashionrec_model_versions:{project}:"


def item_key(item_id: int) -> EntityKey:
    """The entity key of an item's attributes."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[FEAST_JOIN_KEY], entity_values=[Value(int64_val=int(item_id))])


def vector_key(item_id: int, model_version: str) -> EntityKey:
    """The entity key of an item's vector by one model version."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(
        join_keys=[FEAST_JOIN_KEY, FEAST_VERSION_KEY],
        entity_values=[Value(int64_val=int(item_id)), Value(string_val=model_version)],
    )


def float_list_values(vectors: np.ndarray) -> list[bytes]:
    """Serialised ``Value(float_list_val=...)`` of each row: a constant header and the row's little-endian floats
    (a packed repeated float is exactly that), checked against protobuf on the first row."""
    from feast.protos.feast.types.Value_pb2 import FloatList, Value

    rows = np.ascontiguousarray(vectors, dtype="<f4")
    if len(rows) == 0:
        return []
    reference = Value(float_list_val=FloatList(val=rows[0].tolist())).SerializeToString()
    header = reference[: len(reference) - rows.shape[1] * 4]
    values = [header + row.tobytes() for row in rows]
    if values[0] != reference:
        raise AssertionError("the float list encoding differs from protobuf's")  # a protobuf change: fail loudly
    return values


def string_values(texts: list[str]) -> list[bytes]:
    """Serialised ``Value(string_val=...)`` of each text; each distinct text is serialised once."""
    from feast.protos.feast.types.Value_pb2 import Value

    codes, uniques = pd.factorize(np.asarray(texts, dtype=object))
    encoded = np.asarray([Value(string_val=text).SerializeToString() for text in uniques] + [b""], dtype=object)
    return list(encoded[codes])


def entity_keys(store: FeatureStore, item_ids: list[int], model_version: str | None = None) -> list[bytes]:
    """Serialised entity keys (item_id, or item_id and model_version) of these items, as Feast's
    ``serialize_entity_key`` gives them: a constant prefix, the id's 8 bytes and a constant suffix."""
    return _keys(store.config.entity_key_serialization_version, item_ids, model_version)


def _keys(version: int, item_ids: list[int], model_version: str | None) -> list[bytes]:
    if not item_ids:
        return []
    prefix, suffix = _key_frame(version, model_version)
    raw = np.asarray(item_ids, dtype="<i8").tobytes()
    return [prefix + raw[i : i + 8] + suffix for i in range(0, len(raw), 8)]


def versions_key(project: str) -> bytes:
    """The Redis key of the set of model versions that have vectors in the store of ``project``."""
    return REDIS_VERSIONS_KEY.format(project=project).encode("utf-8")


@functools.lru_cache(maxsize=64)
def _key_frame(version: int, model_version: str | None) -> tuple[bytes, bytes]:
    """The bytes around the id in every key of this kind, found once per kind from Feast's own serialisation and
    checked against it on a third id."""
    from feast.infra.key_encoding_utils import serialize_entity_key

    def feast_key(item_id: int) -> bytes:
        key = item_key(item_id) if model_version is None else vector_key(item_id, model_version)
        return serialize_entity_key(key, entity_key_serialization_version=version)

    # Two probes that differ in every byte of the id locate it; the bytes around it are the same for every item.
    zero, ones = feast_key(0), feast_key(-1)
    at = next(i for i, (a, b) in enumerate(zip(zero, ones, strict=True)) if a != b)
    prefix, suffix = zero[:at], zero[at + 8 :]
    probe = 0x0123456789ABCDEF
    if prefix + probe.to_bytes(8, "little", signed=True) + suffix != feast_key(probe):
        raise AssertionError("the entity key encoding differs from Feast's")  # a Feast change: fail loudly
    return prefix, suffix


@functools.lru_cache(maxsize=8)
def _vector_prefix(version: int) -> bytes:
    """The bytes before the id in a vector key, the same for every model version (checked on two): the keys of one
    item's vectors are exactly the keys that begin with them and the id."""
    prefix = _key_frame(version, "a")[0]
    if _key_frame(version, "another")[0] != prefix:
        raise AssertionError("the model version comes before the item id in Feast's entity keys")  # fail loudly
    return prefix


def _successor(prefix: bytes) -> bytes:
    """The smallest byte string above every string that begins with ``prefix``."""
    kept = prefix.rstrip(b"\xff")
    if not kept:
        raise AssertionError("a key prefix of 0xff bytes only")  # a serialisation header never is
    return kept[:-1] + bytes([kept[-1] + 1])


class _Rows(Protocol):
    """One online store's direct row access."""

    def write(self, view: Any, keys: list[bytes], features: dict[str, list[bytes]], texts: dict[str, list[str | None]],
              timestamps: list[datetime]) -> None: ...  # fmt: skip

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def delete(self, view: Any, keys: list[bytes], features: list[str]) -> int: ...

    def keys(self, view: Any) -> Iterator[bytes]: ...

    def vector_keys(self, view: Any, item_ids: list[int]) -> list[bytes] | None:
        """The keys of these items' vectors of every model version, without a scan of the store (None: this store
        cannot tell them without one)."""

    def note_versions(self, versions: list[str]) -> None:
        """Record that the store holds (or is about to hold) vectors of these model versions."""

    def forget_version(self, version: str) -> None:
        """Record that the store holds no more vectors of this model version."""


class _SqliteRows:
    """Feast's sqlite layout: a table per view, one row per (entity_key, feature_name)."""

    def __init__(self, store: FeatureStore) -> None:
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        self.config = store.config
        self.connection = SqliteOnlineStore()._get_conn(store.config)  # Feast's own connection setup
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")  # one writer: order kept
        self.pending: list[Future[Any]] = []

    def _table(self, view: Any) -> str:
        from feast.infra.online_stores.helpers import compute_table_id

        name = compute_table_id(self.config.project, view, self.config.registry.enable_online_feature_view_versioning)
        return '"' + name.replace('"', '""') + '"'

    def write(self, view: Any, keys: list[bytes], features: dict[str, list[bytes]], texts: dict[str, list[str | None]],
              timestamps: list[datetime]) -> None:  # fmt: skip
        """Queue the rows: a writer thread inserts one chunk while this thread builds the next (sqlite releases the
        GIL while it works); ``flush`` commits them, all in one transaction."""
        sql = (
            f"INSERT INTO {self._table(view)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = NULL"
        )
        epochs = {stamp: int(stamp.timestamp()) for stamp in set(timestamps)}  # what Feast's sqlite adapter stores
        names = sorted(features)
        # Primary key order: the B-tree is appended to instead of inserted into at random (twice as fast).
        order = sorted(range(len(keys)), key=keys.__getitem__)
        for start in range(0, len(order), SQLITE_CHUNK):
            rows = [
                (keys[row], name, features[name][row], texts[name][row], epochs[timestamps[row]])
                for row in order[start : start + SQLITE_CHUNK]
                for name in names
            ]
            self.pending.append(self.writer.submit(self.connection.executemany, sql, rows))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        try:
            for future in pending:
                future.result()
        except BaseException:
            self.writer.submit(self.connection.rollback).result()
            raise
        self.writer.submit(self.connection.commit).result()

    def close(self) -> None:
        self.writer.shutdown()
        self.connection.close()

    def read(self, view: Any, keys: list[bytes], features: list[str]) -> list[dict[str, Any] | None]:
        """Each key's requested feature values (None where the store has none), as Feast's ``online_read`` gives
        them, without its per-key protobuf serialisation, timestamp parsing and sort (a third of its cost)."""
        from feast.protos.feast.types.Value_pb2 import Value

        wanted = set(features)
        found: dict[bytes, dict[str, Any]] = {}
        table = self._table(view)
        for start in range(0, len(keys), SQLITE_READ_CHUNK):
            chunk = keys[start : start + SQLITE_READ_CHUNK]
            sql = f"SELECT entity_key, feature_name, value FROM {table} WHERE entity_key IN ({','.join('?' * len(chunk))})"
            for key, name, value in self.connection.execute(sql, chunk):
                if name in wanted:
                    found.setdefault(key, {})[name] = Value.FromString(value)
        return [found.get(key) for key in keys]

    def delete(self, view: Any, keys: list[bytes], features: list[str]) -> int:
        with self.connection:
            cursor = self.connection.executemany(f"DELETE FROM {self._table(view)} WHERE entity_key = ?", [(k,) for k in keys])
        return max(cursor.rowcount, 0) // max(len(features), 1)

    def keys(self, view: Any) -> Iterator[bytes]:
        yield from (row[0] for row in self.connection.execute(f"SELECT DISTINCT entity_key FROM {self._table(view)}"))

    def vector_keys(self, view: Any, item_ids: list[int]) -> list[bytes] | None:
        """One search of the key index per item: its keys are those between its prefix and the prefix's successor
        (blobs compare byte by byte)."""
        sql = f"SELECT DISTINCT entity_key FROM {self._table(view)} WHERE entity_key >= ? AND entity_key < ?"
        prefix = _vector_prefix(self.config.entity_key_serialization_version)
        raw = np.asarray(item_ids, dtype="<i8").tobytes()
        found: list[bytes] = []
        for start in range(0, len(raw), 8):
            low = prefix + raw[start : start + 8]
            found.extend(row[0] for row in self.connection.execute(sql, (low, _successor(low))))
        return found

    def note_versions(self, versions: list[str]) -> None:
        """Nothing to record: the keys themselves are searched."""

    def forget_version(self, version: str) -> None:
        """Nothing recorded."""


class _RedisRows:
    """Feast's Redis layout: a hash per entity key (+ project), a field per view feature and the view's timestamp."""

    def __init__(self, store: FeatureStore) -> None:
        from feast.infra.online_stores.redis import RedisOnlineStore

        self.config = store.config
        self.client = RedisOnlineStore()._get_client(store.config.online_store)  # honours its connection string
        self.suffix = store.config.project.encode("utf-8")
        self.versions = versions_key(store.config.project)

    def _fields(self, view: Any, features: Iterable[str]) -> tuple[bytes | str, list[bytes]]:
        from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name

        name = compute_versioned_name(view, self.config.registry.enable_online_feature_view_versioning)
        return f"_ts:{name}", [_mmh3(f"{name}:{feature}") for feature in features]

    def write(self, view: Any, keys: list[bytes], features: dict[str, list[bytes]], texts: dict[str, list[str | None]],
              timestamps: list[datetime]) -> None:  # fmt: skip
        from google.protobuf.timestamp_pb2 import Timestamp

        ts_field, fields = self._fields(view, features)
        stamps: dict[datetime, bytes] = {}
        for stamp in set(timestamps):
            proto = Timestamp()
            proto.FromDatetime(stamp)
            stamps[stamp] = proto.SerializeToString()
        columns = list(features.values())
        with self.client.pipeline(transaction=False) as pipe:
            for row, key in enumerate(keys):
                mapping: dict[bytes | str, bytes] = {
                    ts_field: stamps[timestamps[row]],
                    **{f: column[row] for f, column in zip(fields, columns, strict=True)},
                }
                pipe.hset(key + self.suffix, mapping=mapping)
                if (row + 1) % REDIS_BATCH == 0:
                    pipe.execute()
            pipe.execute()

    def flush(self) -> None:
        """Every write was sent and acknowledged."""

    def close(self) -> None:
        self.client.close()

    def delete(self, view: Any, keys: list[bytes], features: list[str]) -> int:
        ts_field, fields = self._fields(view, features)
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hdel(key + self.suffix, ts_field, *fields)  # a hash left empty is removed by Redis
            removed = pipe.execute()
        return sum(1 for count in removed if count)

    def keys(self, view: Any) -> Iterator[bytes]:
        ts_field, _ = self._fields(view, [])
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=b"*" + self.suffix, count=10_000):
            batch.append(key)
            if len(batch) == REDIS_BATCH:
                yield from self._holding(batch, ts_field)
                batch = []
        yield from self._holding(batch, ts_field)

    def _holding(self, keys: list[bytes], ts_field: bytes | str) -> Iterator[bytes]:
        """The entity keys among ``keys`` whose hash holds the view (one pipelined round trip)."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hexists(key, ts_field)
            found = pipe.execute()
        yield from (key[: -len(self.suffix)] for key, held in zip(keys, found, strict=True) if held)

    def vector_keys(self, view: Any, item_ids: list[int]) -> list[bytes] | None:
        """Each item's key of each recorded model version (one command): Redis finds a key by its name only."""
        versions = sorted(v.decode("utf-8") for v in self.client.smembers(self.versions))
        if not versions:
            return None  # no writer of ours recorded any: Feast's own materialize wrote the vectors, or none exist
        serialization = self.config.entity_key_serialization_version
        return [key for version in versions for key in _keys(serialization, item_ids, version)]

    def note_versions(self, versions: list[str]) -> None:
        if versions:
            self.client.sadd(self.versions, *versions)

    def forget_version(self, version: str) -> None:
        self.client.srem(self.versions, version)


class _FeastRows:
    """Any other online store: Feast's own online_write_batch (slower); no deletes."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def write(self, view: Any, keys: list[bytes], features: dict[str, list[bytes]], texts: dict[str, list[str | None]],
              timestamps: list[datetime]) -> None:  # fmt: skip
        from feast.infra.key_encoding_utils import deserialize_entity_key
        from feast.protos.feast.types.Value_pb2 import Value

        version = self.store.config.entity_key_serialization_version
        rows: list[tuple[Any, dict[str, Any], datetime, datetime | None]] = [
            (
                deserialize_entity_key(key, version),
                {name: Value.FromString(values[row]) for name, values in features.items()},
                timestamps[row],
                None,
            )
            for row, key in enumerate(keys)
        ]
        self.store._get_provider().online_write_batch(self.store.config, view, rows, None)

    def flush(self) -> None:
        """online_write_batch commits each batch."""

    def close(self) -> None:
        """Feast's provider owns its connections."""

    def delete(self, view: Any, keys: list[bytes], features: list[str]) -> int:
        raise NotImplementedError(
            f"deleting online rows is implemented for sqlite and Redis, not {self.store.config.online_store.type}"
        )

    def keys(self, view: Any) -> Iterator[bytes]:
        raise NotImplementedError(
            f"listing online rows is implemented for sqlite and Redis, not {self.store.config.online_store.type}"
        )

    def vector_keys(self, view: Any, item_ids: list[int]) -> list[bytes] | None:
        raise NotImplementedError(
            f"deleting online rows is implemented for sqlite and Redis, not {self.store.config.online_store.type}"
        )

    def note_versions(self, versions: list[str]) -> None:
        """Nothing deletes from this store, so nothing needs the versions."""

    def forget_version(self, version: str) -> None:
        """Nothing recorded."""


def _plain_sqlite(store: FeatureStore) -> bool:
    """Feast's sqlite store in its plain layout (no vector search or OpenAI-compatible columns)."""
    online = store.config.online_store
    return (
        getattr(online, "type", "") == "sqlite"
        and not getattr(online, "vector_enabled", False)
        and not getattr(online, "enable_openai_compatible_store", False)
    )


def _rows(store: FeatureStore) -> _Rows:
    online = store.config.online_store
    if _plain_sqlite(store):
        return _SqliteRows(store)
    if getattr(online, "type", "") == "redis" and not getattr(online, "key_ttl_seconds", None):
        return _RedisRows(store)
    return _FeastRows(store)


def sqlite_reader(store: FeatureStore) -> _SqliteRows | None:
    """Direct reads of a plain sqlite online store (None for any other store: Feast's ``online_read`` reads it)."""
    return _SqliteRows(store) if _plain_sqlite(store) else None


def _utc(values: pd.Series) -> list[datetime]:
    """Python datetimes (UTC) of a timestamp column; each distinct value is converted once."""
    codes, uniques = pd.factorize(pd.to_datetime(values, utc=True))
    converted = [stamp.to_pydatetime() for stamp in uniques]
    return [converted[code] for code in codes]


def write_items(store: FeatureStore, table: pd.DataFrame, vectors: np.ndarray | None) -> int:
    """Write each row's attributes (keyed by item_id) and vector (keyed by item_id and the row's model_version);
    an existing row of the same key is replaced (unlike Feast's Redis writer, whatever its event time: what is
    written here is the catalogue's current state). ``table`` is the embeddings table
    (fashionrec.retrieval.embeddings); ``vectors`` None writes the attributes only. Returns the rows written."""
    if vectors is not None and len(table) != len(vectors):
        raise ValueError(f"{len(table)} rows but {len(vectors)} vectors")
    if len(table) == 0:
        return 0
    rows = _rows(store)
    try:
        ids = table[FEAST_JOIN_KEY].astype("int64").tolist()
        timestamps = _utc(table["event_timestamp"])
        attributes = {column: table[column].astype(str).tolist() for column in ATTRIBUTE_COLUMNS}
        rows.write(
            store.get_feature_view(FEAST_ATTRIBUTE_VIEW),
            entity_keys(store, ids),
            {column: string_values(texts) for column, texts in attributes.items()},
            dict(attributes),  # type: ignore[arg-type]
            timestamps,
        )
        if vectors is not None:
            values = float_list_values(vectors)
            view = store.get_feature_view(FEAST_EMBEDDING_VIEW)
            versions = table[FEAST_VERSION_KEY].astype(str).to_numpy()
            rows.note_versions(sorted(set(versions)))  # before the vectors: a removal after a crash still finds them
            for version in pd.unique(versions):  # normally one
                rows_of = np.flatnonzero(versions == version).tolist()
                rows.write(
                    view,
                    entity_keys(store, [ids[r] for r in rows_of], str(version)),
                    {EMBEDDING_FEATURE: [values[r] for r in rows_of]},
                    {EMBEDDING_FEATURE: [None] * len(rows_of)},
                    [timestamps[r] for r in rows_of],
                )
        rows.flush()
    finally:
        rows.close()
    return len(ids)


def _vector_keys(store: FeatureStore, rows: _Rows) -> Iterator[tuple[bytes, int, str]]:
    """(serialised key, item_id, model_version) of every vector in the online store."""
    from feast.infra.key_encoding_utils import deserialize_entity_key

    version = store.config.entity_key_serialization_version
    for raw in rows.keys(store.get_feature_view(FEAST_EMBEDDING_VIEW)):
        key = deserialize_entity_key(raw, version)
        values = dict(zip(key.join_keys, key.entity_values, strict=True))
        if FEAST_JOIN_KEY in values and FEAST_VERSION_KEY in values:
            yield raw, values[FEAST_JOIN_KEY].int64_val, values[FEAST_VERSION_KEY].string_val


def stored_versions(store: FeatureStore) -> dict[str, int]:
    """How many vectors the online store holds per model version (a scan of the whole store)."""
    rows = _rows(store)
    try:
        return dict(Counter(version for _, _, version in _vector_keys(store, rows)))
    finally:
        rows.close()


def note_model_versions(store: FeatureStore, model_versions: list[str]) -> None:
    """Record that the store holds vectors of these model versions, for vectors written by Feast's own materialize
    (write_items records its own): a removal deletes the items' vectors of exactly the recorded versions."""
    rows = _rows(store)
    try:
        rows.note_versions(sorted(set(model_versions)))
    finally:
        rows.close()


def delete_model_version(store: FeatureStore, model_version: str) -> int:
    """Delete every vector of one model version (a finished rollout's old version); returns how many."""
    rows = _rows(store)
    try:
        doomed = [raw for raw, _, version in _vector_keys(store, rows) if version == model_version]
        deleted = rows.delete(store.get_feature_view(FEAST_EMBEDDING_VIEW), doomed, [EMBEDDING_FEATURE]) if doomed else 0
        rows.forget_version(model_version)  # after the deletes: a crash before leaves it recorded, never its vectors unseen
        return deleted
    finally:
        rows.close()


def delete_items(store: FeatureStore, item_ids: Iterable[int]) -> int:
    """Delete these items' attributes and their vectors of every model version; returns how many items had rows.
    The store operations grow with the items and the model versions, not with the store."""
    rows = _rows(store)
    try:
        wanted = sorted({int(i) for i in item_ids})
        removed = rows.delete(store.get_feature_view(FEAST_ATTRIBUTE_VIEW), entity_keys(store, wanted), list(ATTRIBUTE_COLUMNS))
        view = store.get_feature_view(FEAST_EMBEDDING_VIEW)
        vector_keys = rows.vector_keys(view, wanted) if wanted else []
        if vector_keys is None:  # no versions recorded yet: one scan finds them, and records them for the next removal
            versions = sorted({version for _, _, version in _vector_keys(store, rows)})
            rows.note_versions(versions)
            vector_keys = [key for version in versions for key in entity_keys(store, wanted, version)]
        if vector_keys:
            rows.delete(view, vector_keys, [EMBEDDING_FEATURE])
        return removed
    finally:
        rows.close()
