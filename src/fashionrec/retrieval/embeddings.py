"""The embeddings table: one row per catalogue item (item_id, event_timestamp, the served attributes, model_version,
dataset_digest) and its vector, as parquet. The embed stage writes it; Feast (its offline source) and the index read it."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fashionrec.config import ATTRIBUTE_COLUMNS, EMBEDDING_DIM, FEAST_JOIN_KEY


def write_embeddings(table: pd.DataFrame, vectors: np.ndarray, out_path: Path) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    flat = pa.array(vectors.astype(np.float32).reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(pa.list_(pa.float32()))
    # No dictionary for the vectors: float values never repeat, and decoding the attempt triples the read time.
    pq.write_table(
        arrow.append_column("embedding", embedding), out_path, use_dictionary=[c for c in table.columns if c != "image"]
    )


def read_embeddings(path: Path | BinaryIO) -> tuple[pd.DataFrame, np.ndarray]:
    """The table without the vectors, and the vectors as one float32 matrix in the same row order."""
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    dim = len(column[0]) if len(column) else 0
    vectors = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    return table.drop(["embedding"]).to_pandas(), vectors


def random_embeddings(
    item_ids: np.ndarray, model_version: str, attributes: dict[str, np.ndarray] | None = None, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """An embeddings table of random unit vectors (for benchmarks and tests of the stores, where values do not
    matter): the given attribute columns, or generated ones."""

    count = len(item_ids)
    table = pd.DataFrame(
        {FEAST_JOIN_KEY: np.asarray(item_ids, dtype="int64"), "event_timestamp": pd.Timestamp.now(tz="UTC").floor("s")}
    )
    for column in ATTRIBUTE_COLUMNS:
        table[column] = attributes[column] if attributes else [f"{column} {i % 97}" for i in range(count)]
    table["model_version"] = model_version
    table["dataset_digest"] = "random"
    vectors = np.random.default_rng(seed).standard_normal((count, EMBEDDING_DIM)).astype(np.float32)
    return table, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
