"""New products for live catalogue additions: existing photos mirrored (images no index has seen) under new ids."""

from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps

from fashionrec.config import STYLES_COLUMNS
from fashionrec.data.catalog import STYLES_FILE, read_styles


def flipped_product(catalog: Path, source_id: int, new_id: int, out: Path) -> pd.Series:
    """A new product: an existing one's photo mirrored (an image no index has seen) and its row under a new id."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    ImageOps.mirror(Image.open(catalog / "images" / f"{source_id}.jpg")).save(out / "images" / f"{new_id}.jpg", quality=95)
    rows = read_styles(catalog / STYLES_FILE).rows
    row = rows.loc[rows["id"] == str(source_id), list(STYLES_COLUMNS)].iloc[0].copy()
    row["id"] = str(new_id)
    return row
