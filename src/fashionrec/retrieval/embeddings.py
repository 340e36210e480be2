"""The embeddings table: one row per catalogue item (item_id, event_timestamp, the served attributes, model_version,
dataset_digest) and its vector, as parquet. The embed stage writes it; Feast (its offline source) and the index read it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def write_embeddings(table: pd.DataFrame, vectors: np.ndarray, out_path: Path) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    flat = pa.array(vectors.astype(np.float32).reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(pa.list_(pa.float32()))
    pq.write_table(arrow.append_column("embedding", embedding), out_path)


def read_embeddings(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The table without the vectors, and the vectors as one float32 matrix in the same row order."""
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    dim = len(column[0]) if len(column) else 0
    vectors = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    return table.drop(["embedding"]).to_pandas(), vectors
