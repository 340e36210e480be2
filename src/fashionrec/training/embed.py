"""The embed stage: one embedding per valid catalogue item, written as Feast's offline source."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.config import ATTRIBUTE_COLUMNS, FAMILY_COLUMN, FEAST_JOIN_KEY
from fashionrec.data.split import product_groups
from fashionrec.data.table import decode_images, read_table
from fashionrec.retrieval.embeddings import write_embeddings
from fashionrec.training.card import ModelCard
from fashionrec.training.train import embed_array, load_encoder, pick_device


def embed_catalog(valid_catalog: Path, model_dir: Path, out_path: Path, device: str = "auto") -> pd.DataFrame:
    """Embed every item of the validated catalogue with the trained encoder; write parquet, return the table.

    Columns: item_id, event_timestamp (UTC, one value per run), embedding (list<float32>), model_version,
    dataset_digest, the attributes served with recommendations, and each item's product family.
    """
    table = read_table(valid_catalog)
    vectors, card = encode_table(table, model_dir, device)
    now = pd.Timestamp(datetime.now(UTC)).floor("s")
    out = pd.DataFrame({FEAST_JOIN_KEY: table["id"].astype("int64"), "event_timestamp": now})
    for column in ATTRIBUTE_COLUMNS:
        out[column] = table[column].astype(str)
    out[FAMILY_COLUMN] = product_groups(table)  # what a query's diversity option caps (colour variants, near-duplicates)
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
