"""Data provenance: a manifest of exactly which data a model was trained on, and its digest.

The digest covers the valid rows' ids, image digests and labels (in id order): identical data gives an identical
digest, whatever the row order or the file's name. It travels into model.json, the embeddings and index.json.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from fashionrec.config import LABEL_COLUMN


def dataset_digest(table: pd.DataFrame) -> str:
    ordered = table.sort_values("id")
    h = hashlib.sha256()
    for item_id, sha, label in zip(ordered["id"], ordered["image_sha256"], ordered[LABEL_COLUMN], strict=True):
        h.update(f"{item_id}:{sha}:{label}\n".encode())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_manifest(
    valid: pd.DataFrame, styles_path: Path, rows_in: int, quarantined: int, settings: dict[str, Any]
) -> dict[str, Any]:
    return {
        "dataset_digest": dataset_digest(valid),
        "styles_csv_sha256": file_sha256(styles_path),
        "rows_in": rows_in,
        "rows_valid": len(valid),
        "rows_quarantined": quarantined,
        "class_counts": {str(k): int(v) for k, v in valid[LABEL_COLUMN].value_counts().sort_index().items()},
        "validation_settings": settings,
        "images": {str(i): str(s) for i, s in zip(valid["id"], valid["image_sha256"], strict=True)},
    }


def write_manifest(manifest: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
