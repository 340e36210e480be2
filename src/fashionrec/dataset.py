"""The validated catalogue table that flows between pipeline stages (parquet with the image bytes inside)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.imaging import decode_image, to_model_input
from fashionrec.progress import progress_bar


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


def stratified_split(labels: np.ndarray, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indexes (train, holdout); every class with 2+ items keeps at least one item on each side."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    holdout: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_holdout = round(len(members) * holdout_fraction) if len(members) > 1 else 0
        n_holdout = min(max(n_holdout, 1 if len(members) > 1 and holdout_fraction > 0 else 0), len(members) - 1)
        holdout.extend(members[:n_holdout])
        train.extend(members[n_holdout:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(holdout, dtype=np.int64))
