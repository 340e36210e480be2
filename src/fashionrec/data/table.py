"""The validated catalogue table that flows between pipeline stages (parquet with the image bytes inside)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.console import progress_bar
from fashionrec.imaging import decode_image, to_model_input


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def decode_images(images: pd.Series, size: tuple[int, int], description: str = "decoding images") -> np.ndarray:
    """Decode validated image bytes into one uint8 NCHW array (the encoder's input)."""
    out = np.empty((len(images), 3, size[0], size[1]), dtype=np.uint8)
    with progress_bar() as bar:
        task = bar.add_task(description, total=len(images), status="")
        for i, data in enumerate(images):
            out[i] = to_model_input(decode_image(data), size)
            bar.advance(task)
    return out


def is_holdout(item_ids: np.ndarray | pd.Series, fraction: float) -> np.ndarray:
    """Deterministic split by a hash of the id: stable across runs, models and catalogue growth, so a candidate
    and the production model are evaluated on the same held-out items and neither trained on them."""
    buckets = np.array([int(hashlib.sha256(str(int(i)).encode()).hexdigest()[:8], 16) % 10_000 for i in item_ids], dtype=np.int64)
    return buckets < round(fraction * 10_000)
