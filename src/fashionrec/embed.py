"""The embed stage: one embedding per valid catalogue item, written as Feast's offline source."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fashionrec.config import ATTRIBUTE_COLUMNS, FEAST_JOIN_KEY
from fashionrec.dataset import decode_images, read_table
from fashionrec.train import ModelCard, embed_array, load_encoder, pick_device


def embed_catalog(valid_catalog: Path, model_dir: Path, out_path: Path, device: str = "auto") -> pd.DataFrame:
    """Embed every item of the validated catalogue with the trained encoder; write parquet, return the table.

    Columns: item_id, event_timestamp (UTC, one value per run), embedding (list<float32>), model_version,
    dataset_digest, and the attributes served with recommendations.
    """
    table = read_table(valid_catalog)
    vectors, card = encode_table(table, model_dir, device)
    now = pd.Timestamp(datetime.now(UTC)).floor("s")
    out = pd.DataFrame({FEAST_JOIN_KEY: table["id"].astype("int64"), "event_timestamp": now})
    for column in ATTRIBUTE_COLUMNS:
        out[column] = table[column].astype(str)
    out["model_version"] = card.model_version
    out["dataset_digest"] = card.dataset_digest
    write_embeddings(out, vectors, out_path)
    out["embedding"] = list(vectors)
    return out


def encode_table(table: pd.DataFrame, model_dir: Path, device: str = "auto") -> tuple[np.ndarray, ModelCard]:
    """Embeddings of every image of a validated catalogue table, in row order, with the model's card."""
    encoder, card = load_encoder(model_dir)
    torch_device = pick_device(device)
    images = decode_images(table["image"], card.image_size, f"embedding with model {card.model_version}")
    return embed_array(encoder.to(torch_device), images, torch_device), card


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
