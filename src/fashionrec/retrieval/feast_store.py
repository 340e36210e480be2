"""Feast: definitions of the item features, staging of the repo (sqlite or Redis online store, file or SQL registry),
apply + materialize, and online reads.

Vectors are keyed by (item_id, model_version): during a rollout the vectors of the production and the new model
version sit side by side in one shared online store, each transformer reads the version of the index it searches,
and the finished rollout deletes the old version's rows (fashionrec.retrieval.online_rows). Attributes are keyed by
item_id alone: they do not depend on the model.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd

from fashionrec.config import (
    ATTRIBUTE_COLUMNS,
    FEAST_ATTRIBUTE_VIEW,
    FEAST_CONFIG_FILE,
    FEAST_EMBEDDING_VIEW,
    FEAST_ENTITY,
    FEAST_JOIN_KEY,
    FEAST_MODEL_ENTITY,
    FEAST_SOURCE_FILE,
    FEAST_VERSION_KEY,
)
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.retrieval.online_rows import (
    delete_model_version,
    entity_keys,
    item_key,
    note_model_versions,
    sqlite_reader,
    vector_key,
    write_items,
)
from fashionrec.storage import redact_urls, refuse_literal_passwords

if TYPE_CHECKING:
    from feast import FeatureStore


def feast_objects() -> tuple[Any, ...]:
    """(item entity, model entity, source, embedding view, attribute view), as feature_repo/features.py exposes them."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float32, Int64, String

    item = Entity(name=FEAST_ENTITY, join_keys=[FEAST_JOIN_KEY], value_type=ValueType.INT64, description="a catalogue product")
    model = Entity(
        name=FEAST_MODEL_ENTITY,
        join_keys=[FEAST_VERSION_KEY],
        value_type=ValueType.STRING,
        description="the encoder version that produced a vector",
    )
    source = FileSource(name="item_embeddings_source", path=FEAST_SOURCE_FILE, timestamp_field="event_timestamp")
    embedding_view = FeatureView(
        name=FEAST_EMBEDDING_VIEW,
        entities=[item, model],
        # 0 = never expires: a vector lives until its product is removed or its model version is cleaned up
        ttl=timedelta(0),
        schema=[
            Field(name=FEAST_JOIN_KEY, dtype=Int64),
            Field(name=FEAST_VERSION_KEY, dtype=String),
            Field(name="embedding", dtype=Array(Float32)),
        ],
        source=source,
        online=True,
    )
    attribute_view = FeatureView(
        name=FEAST_ATTRIBUTE_VIEW,
        entities=[item],
        ttl=timedelta(0),
        schema=[Field(name=FEAST_JOIN_KEY, dtype=Int64), *(Field(name=column, dtype=String) for column in ATTRIBUTE_COLUMNS)],
        source=source,
        online=True,
    )
    return item, model, source, embedding_view, attribute_view


def template_dir() -> Path:
    """The feature_repo/ template: inside the installed wheel, or the checkout's top-level folder."""
    packaged = Path(str(resources.files("fashionrec"))) / "feature_repo"
    if (packaged / FEAST_CONFIG_FILE).is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[3] / "feature_repo"
    if (checkout / FEAST_CONFIG_FILE).is_file():
        return checkout
    raise FileNotFoundError("feature_repo template not found (neither in the installed package nor in a checkout)")


@dataclass(frozen=True)
class StoreSettings:
    """Where a staged repo keeps its online store and registry: the config switch between the embedded default and
    production. A password in either URL must be ``${VAR}``: Feast expands it from the environment when it loads the
    repo (feast.repo_config.load_repo_config), so it lives in a Secret, never in a pipeline parameter, the run or the
    release's feature_store.yaml. Messages show the URLs with their password hidden."""

    # "" = embedded sqlite file inside the repo; "redis://[:${VAR}@]HOST:PORT[/DB]" = a shared Redis (feast[redis]);
    # the variable's value cannot hold a ",", Feast's connection string separator
    online_store: str = ""
    # "" = registry file inside the repo; a SQLAlchemy URL (postgresql://..., mysql://..., sqlite:///...) = Feast's SQL
    # registry, shared by every repo that names it
    registry: str = ""

    def __post_init__(self) -> None:
        # named as the pipeline parameters that set them
        refuse_literal_passwords({"online_store": self.online_store, "feast_registry": self.registry})

    def online_store_config(self) -> dict[str, Any]:
        if not self.online_store:
            return {"type": "sqlite", "path": ONLINE_STORE_FILE}
        expected = (
            f"online store must be empty (sqlite) or {REDIS_SCHEME}[:${{VAR}}@]HOST:PORT[/DB], "
            f"got {redact_urls(self.online_store)!r}"
        )
        if not self.online_store.startswith(REDIS_SCHEME):
            raise ValueError(expected)
        try:
            url = urlsplit(self.online_store)
            port = url.port
        except ValueError:
            raise ValueError(expected) from None  # urllib's message would quote a part of the URL
        db = url.path.strip("/")
        if not url.hostname or port is None or (db and not db.isdigit()) or url.username or url.query:
            raise ValueError(expected)
        password = unquote(url.password or "")  # a ${VAR} reference (__post_init__), maybe percent-encoded
        # Feast's Redis connection string: "host:port[,db=N][,password=...]"
        options = ([f"db={db}"] if db else []) + ([f"password={password}"] if password else [])
        return {"type": "redis", "connection_string": ",".join([f"{url.hostname}:{port}", *options])}

    def registry_config(self) -> str | dict[str, Any]:
        if not self.registry:
            return REGISTRY_FILE
        if "://" not in self.registry:
            raise ValueError(
                f"registry must be empty (a file in the repo) or a SQLAlchemy URL, got {redact_urls(self.registry)!r}"
            )
        # cache_ttl_seconds: how long a FeatureStore trusts its cached copy of the shared registry
        return {"registry_type": "sql", "path": self.registry, "cache_ttl_seconds": 60}


REDIS_SCHEME = "redis://"
ONLINE_STORE_FILE = "data/online_store.db"
REGISTRY_FILE = "data/registry.db"


def render_store_config(template: str, settings: StoreSettings) -> str:
    """The template's feature_store.yaml with the online store and registry of ``settings`` (unchanged if default)."""
    import yaml

    if settings == StoreSettings():
        return template
    config = yaml.safe_load(template)
    config["online_store"] = settings.online_store_config()
    config["registry"] = settings.registry_config()
    header = f"# Written by fashionrec from feature_repo/{FEAST_CONFIG_FILE} (online store and registry switched).\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def stage_repo(embeddings: Path, repo_dir: Path, template: Path | None = None, settings: StoreSettings | None = None) -> Path:
    """Copy the repo template into repo_dir, switched to ``settings``' stores, and place the embeddings parquet where
    its FileSource expects it."""
    template = template or template_dir()
    (repo_dir / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy2(template / "features.py", repo_dir / "features.py")
    config = render_store_config((template / FEAST_CONFIG_FILE).read_text(encoding="utf-8"), settings or StoreSettings())
    (repo_dir / FEAST_CONFIG_FILE).write_text(config, encoding="utf-8")
    shutil.copy2(embeddings, repo_dir / FEAST_SOURCE_FILE)
    return repo_dir


def open_store(repo_dir: Path) -> FeatureStore:
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo_dir.resolve()))


@dataclass(frozen=True)
class MaterializeWindow:
    rows: int
    start: str
    end: str


MATERIALIZE_ENGINES = ("fashionrec", "feast")


def apply_repo(repo_dir: Path) -> FeatureStore:
    """`feast apply` in repo_dir, in-process: registers the objects and creates the online store's tables."""
    store = open_store(repo_dir)
    store.apply(list(feast_objects()))
    return store


def materialize(store: FeatureStore, engine: str = "fashionrec") -> MaterializeWindow:
    """`feast materialize START END` over every event timestamp in the offline source, so all rows land in the online
    store. ``engine`` "fashionrec" writes them through fashionrec.retrieval.online_rows (the same rows, several times
    faster on sqlite and Redis); "feast" calls ``FeatureStore.materialize``, what the CLI runs."""

    if engine not in MATERIALIZE_ENGINES:
        raise ValueError(f"engine must be one of {MATERIALIZE_ENGINES}, got {engine!r}")
    source = Path(str(store.repo_path)) / FEAST_SOURCE_FILE
    if engine == "feast":
        columns = pd.read_parquet(source, columns=["event_timestamp", FEAST_VERSION_KEY])
        timestamps = columns["event_timestamp"]
        start, end = _window(timestamps)
        note_model_versions(store, columns[FEAST_VERSION_KEY].astype(str).unique().tolist())  # what removals delete
        store.materialize(start_date=start, end_date=end)
    else:
        table, vectors = read_embeddings(source)
        timestamps = table["event_timestamp"]
        start, end = _window(timestamps)
        write_items(store, table, vectors)
        for name in (FEAST_EMBEDDING_VIEW, FEAST_ATTRIBUTE_VIEW):  # as Feast records it: materialize-incremental resumes
            store.registry.apply_materialization(store.get_feature_view(name), store.project, start, end)
    return MaterializeWindow(rows=len(timestamps), start=start.isoformat(), end=end.isoformat())


def _window(timestamps: pd.Series) -> tuple[datetime, datetime]:
    return (
        timestamps.min().to_pydatetime() - timedelta(seconds=1),
        timestamps.max().to_pydatetime() + timedelta(seconds=1),
    )


def is_shared(store: FeatureStore) -> bool:
    """Whether the online store is shared between releases (Redis & co.) rather than the sqlite file inside one."""
    return str(getattr(store.config.online_store, "type", "sqlite")) != "sqlite"


def ensure_materialized(
    repo_dir: Path, model_version: str, after: Callable[[FeatureStore], object] | None = None, sample_size: int = 64
) -> bool:
    """Materialize the repo's offline source into a shared online store that lacks vectors of ``model_version`` for
    its items still in the catalogue (the version was retired from the store; now it is rolled back to), then call
    ``after`` with the store (to replay the catalogue changes made since the source was written). Returns whether
    it materialized."""
    import pyarrow.parquet as pq

    online = OnlineFeatures(repo_dir)
    if not is_shared(online.store):
        return False  # the embedded sqlite file of a release keeps its vectors for good
    ids = pq.read_table(repo_dir / FEAST_SOURCE_FILE, columns=[FEAST_JOIN_KEY]).column(0).to_pylist()[:sample_size]
    sample = online.present(ids)
    if sample and all(vector is not None for vector in online.embeddings(sample, model_version)):
        return False
    store = apply_repo(repo_dir)
    materialize(store)
    if after is not None:
        after(store)
    return True


def retire_model_version(repo_dir: Path, model_version: str) -> int | None:
    """Delete ``model_version``'s vectors from a shared online store once no transformer serves it; returns how
    many, or None for the embedded sqlite store, where each release keeps its own (a later rollback needs them)."""

    store = open_store(repo_dir)
    return delete_model_version(store, model_version) if is_shared(store) else None


def apply_and_materialize(repo_dir: Path, engine: str = "fashionrec") -> MaterializeWindow:
    """What `feast apply && feast materialize START END` do in repo_dir, in-process (see :func:`materialize`)."""
    return materialize(apply_repo(repo_dir), engine)


class OnlineStoreUnavailable(RuntimeError):
    """The online store did not answer (a Redis restarting, a network fault): a server that is not ready, not a bug."""


def unreachable_errors(online_store: Any) -> tuple[type[BaseException], ...]:
    """What the online store's client raises when its server cannot be reached."""
    if getattr(online_store, "type", "") == "redis":
        import redis.exceptions  # deferred: the Redis client is the optional production store's

        return (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    return (OSError,)


class OnlineFeatures:
    """Batched online reads for serving: one read of the online store per request and feature view.

    Reads go straight to the configured online store's ``online_read`` (Feast's store interface, the same call
    ``get_online_features`` ends in, for sqlite, Redis or any other store) with the feature views resolved once at
    start-up: ``get_online_features`` re-resolves views and builds a columnar response on every call, which costs
    more than the read itself at serving batch sizes.
    """

    def __init__(self, repo_dir: Path) -> None:
        from feast.infra.online_stores.helpers import get_online_store_from_config

        self.store = open_store(repo_dir)
        self._online = get_online_store_from_config(self.store.config.online_store)
        self._sqlite = sqlite_reader(self.store)  # the embedded store: rows read by serialised key, no protobuf keys
        self._attribute_view = self.store.get_feature_view(FEAST_ATTRIBUTE_VIEW)
        self._embedding_view = self.store.get_feature_view(FEAST_EMBEDDING_VIEW)
        self._unreachable = unreachable_errors(self.store.config.online_store)

    def _read(
        self, view: Any, item_ids: list[int], features: list[str], model_version: str | None = None
    ) -> list[dict[str, Any] | None]:

        if self._sqlite is not None:
            return self._sqlite.read(view, entity_keys(self.store, item_ids, model_version), features)
        keys = [item_key(i) if model_version is None else vector_key(i, model_version) for i in item_ids]
        try:
            return [values for _, values in self._online.online_read(self.store.config, view, keys, features)]
        except self._unreachable as exc:
            raise OnlineStoreUnavailable(f"the online store cannot be reached: {exc}") from exc

    def attributes(self, item_ids: list[int]) -> dict[str, list[str | None]]:
        rows = self._read(self._attribute_view, item_ids, list(ATTRIBUTE_COLUMNS))
        return {
            column: [_present(row, column).string_val if _present(row, column) else None for row in rows]
            for column in ATTRIBUTE_COLUMNS
        }

    def present(self, item_ids: list[int]) -> list[int]:
        """The ids that are in the catalogue (they have attributes): not removed."""
        titles = self.attributes(item_ids)[ATTRIBUTE_COLUMNS[0]]
        return [item for item, title in zip(item_ids, titles, strict=True) if title is not None]

    def embeddings(self, item_ids: list[int], model_version: str) -> list[np.ndarray | None]:
        """The vectors of ``model_version`` for these items (None where it has none)."""
        rows = self._read(self._embedding_view, item_ids, ["embedding"], model_version)
        values = [_present(row, "embedding") for row in rows]
        return [None if value is None else np.asarray(value.float_list_val.val, dtype=np.float32) for value in values]


def _present(row: dict[str, Any] | None, feature: str) -> Any:
    """The feature's Value, or None where the store has none (sqlite leaves the row out, Redis gives an empty Value)."""
    value = None if row is None else row.get(feature)
    return value if value is not None and value.WhichOneof("val") is not None else None
