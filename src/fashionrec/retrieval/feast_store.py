"""Feast: definitions of the item features, staging of the repo, apply + materialize, and online reads."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fashionrec.config import (
    ATTRIBUTE_COLUMNS,
    FEAST_ATTRIBUTE_VIEW,
    FEAST_CONFIG_FILE,
    FEAST_EMBEDDING_VIEW,
    FEAST_ENTITY,
    FEAST_JOIN_KEY,
    FEAST_SOURCE_FILE,
)

if TYPE_CHECKING:
    from feast import FeatureStore

REPO_FILES = (FEAST_CONFIG_FILE, "features.py")


def feast_objects() -> tuple[Any, ...]:
    """(entity, source, embedding view, attribute view), as feature_repo/features.py exposes them."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float32, String

    item = Entity(name=FEAST_ENTITY, join_keys=[FEAST_JOIN_KEY], value_type=ValueType.INT64, description="a catalogue product")
    source = FileSource(name="item_embeddings_source", path=FEAST_SOURCE_FILE, timestamp_field="event_timestamp")
    embedding_view = FeatureView(
        name=FEAST_EMBEDDING_VIEW,
        entities=[item],
        ttl=timedelta(0),  # 0 = never expires: a product keeps its vector until the next materialize replaces it
        schema=[Field(name="embedding", dtype=Array(Float32)), Field(name="model_version", dtype=String)],
        source=source,
        online=True,
    )
    attribute_view = FeatureView(
        name=FEAST_ATTRIBUTE_VIEW,
        entities=[item],
        ttl=timedelta(0),
        schema=[Field(name=column, dtype=String) for column in ATTRIBUTE_COLUMNS],
        source=source,
        online=True,
    )
    return item, source, embedding_view, attribute_view


def template_dir() -> Path:
    """The feature_repo/ template: inside the installed wheel, or the checkout's top-level folder."""
    packaged = Path(str(resources.files("fashionrec"))) / "feature_repo"
    if (packaged / FEAST_CONFIG_FILE).is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[3] / "feature_repo"
    if (checkout / FEAST_CONFIG_FILE).is_file():
        return checkout
    raise FileNotFoundError("feature_repo template not found (neither in the installed package nor in a checkout)")


def stage_repo(embeddings: Path, repo_dir: Path, template: Path | None = None) -> Path:
    """Copy the repo template into repo_dir and place the embeddings parquet where its FileSource expects it."""
    template = template or template_dir()
    (repo_dir / "data").mkdir(parents=True, exist_ok=True)
    for name in REPO_FILES:
        shutil.copy2(template / name, repo_dir / name)
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


def apply_and_materialize(repo_dir: Path) -> MaterializeWindow:
    """What `feast apply && feast materialize START END` do in repo_dir, in-process.

    The window covers every event timestamp in the source, so all rows land in the online store.
    """
    store = open_store(repo_dir)
    store.apply(list(feast_objects()))
    timestamps = pd.read_parquet(repo_dir / FEAST_SOURCE_FILE, columns=["event_timestamp"])["event_timestamp"]
    start = timestamps.min().to_pydatetime() - timedelta(seconds=1)
    end = timestamps.max().to_pydatetime() + timedelta(seconds=1)
    store.materialize(start_date=start, end_date=end)
    return MaterializeWindow(rows=len(timestamps), start=start.isoformat(), end=end.isoformat())


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
        self._attribute_view = self.store.get_feature_view(FEAST_ATTRIBUTE_VIEW)
        self._embedding_view = self.store.get_feature_view(FEAST_EMBEDDING_VIEW)

    def _read(self, view: Any, item_ids: list[int], features: list[str]) -> list[dict[str, Any] | None]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        keys = [EntityKey(join_keys=[FEAST_JOIN_KEY], entity_values=[Value(int64_val=int(i))]) for i in item_ids]
        rows = self._online.online_read(self.store.config, view, keys, features)
        return [values for _, values in rows]

    def attributes(self, item_ids: list[int]) -> dict[str, list[str | None]]:
        rows = self._read(self._attribute_view, item_ids, list(ATTRIBUTE_COLUMNS))
        return {
            column: [None if row is None or column not in row else row[column].string_val for row in rows]
            for column in ATTRIBUTE_COLUMNS
        }

    def embeddings(self, item_ids: list[int]) -> tuple[list[np.ndarray | None], list[str | None]]:
        rows = self._read(self._embedding_view, item_ids, ["embedding", "model_version"])
        vectors = [
            None if row is None or "embedding" not in row else np.asarray(row["embedding"].float_list_val.val, dtype=np.float32)
            for row in rows
        ]
        versions = [None if row is None or "model_version" not in row else row["model_version"].string_val for row in rows]
        return vectors, versions
