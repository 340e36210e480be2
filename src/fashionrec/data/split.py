"""The held-out split: whole product groups fall on one side, so no query has a twin the model trained on.

A group joins items that are near-identical photos (the perceptual-hash groups validation computes) or one product
family (the same productDisplayName apart from the colour words: colour variants of one product are photographed
alike). A group is held out when a hash of its smallest id falls in the held-out share, so the split is a fixed
function of the catalogue; evaluation also keeps a query's own group out of its candidates, the way a shopper's
photo of a product that is not in the catalogue meets it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fashionrec.config import COLOUR_COLUMN, NAME_COLUMN
from fashionrec.data.imagefacts import near_duplicate_groups, perceptual_hash
from fashionrec.data.table import is_holdout
from fashionrec.data.validation.checks import ValidationSettings
from fashionrec.imaging import open_image, to_rgb
from fashionrec.params import SplitKind
from fashionrec.products import product_family

PHASH_COLUMN = "image_phash"  # written by validation; computed from the image bytes when a table lacks it


def _phashes(table: pd.DataFrame) -> list[str | None]:
    if PHASH_COLUMN in table:
        return [None if pd.isna(h) else str(h) for h in table[PHASH_COLUMN]]
    return [perceptual_hash(to_rgb(open_image(bytes(b))).convert("L")).hex() for b in table["image"]]


def product_groups(table: pd.DataFrame, duplicate_radius: int | None = None) -> np.ndarray:
    """Per row, the smallest item id of its group (near-duplicate photos and product families, joined transitively)."""
    n = len(table)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def join(members: list[int]) -> None:
        first = root(members[0])
        for other in members[1:]:
            parent[root(other)] = first

    radius = ValidationSettings().duplicate_radius if duplicate_radius is None else duplicate_radius
    for group in near_duplicate_groups(_phashes(table), radius):
        join(group)
    if NAME_COLUMN in table:
        family = product_family(table[NAME_COLUMN], table.get(COLOUR_COLUMN, pd.Series(dtype=str)))
        for name, rows in pd.Series(np.arange(n)).groupby(family.to_numpy()):
            if name:  # an empty name says nothing about the product
                join(rows.tolist())
    roots = np.array([root(i) for i in range(n)])
    ids = table["id"].astype("int64").to_numpy()
    smallest = pd.Series(ids).groupby(roots).transform("min")
    return smallest.to_numpy(dtype=np.int64)


def holdout_mask(table: pd.DataFrame, fraction: float, kind: SplitKind = SplitKind.GROUP) -> np.ndarray:
    """Which rows are held out: a fixed function of the catalogue (and of the id alone for ``SplitKind.ID``)."""
    if kind == SplitKind.ID:
        return is_holdout(table["id"], fraction)
    return is_holdout(product_groups(table), fraction)
