"""The held-out split keeps near-duplicate photos and colour variants of one product on the same side."""

import io
import random

import numpy as np
import pandas as pd

from fashionrec.data.split import PHASH_COLUMN, holdout_mask, product_groups
from fashionrec.data.synth import ARTICLE_TYPES, render_item
from fashionrec.data.table import is_holdout
from fashionrec.params import SplitKind
from fashionrec.products import product_family


def jpeg(seed: int, quality: int = 95) -> bytes:
    """A distinct product photo per seed; another ``quality`` re-encodes it (a near-duplicate of the same seed)."""
    rng = random.Random(seed)
    out = io.BytesIO()
    render_item(ARTICLE_TYPES[seed % len(ARTICLE_TYPES)], (200, 40, 40), rng).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def table(rows: list[tuple[int, str, str, bytes]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "productDisplayName", "baseColour", "image"])


def test_product_family_drops_the_catalogues_colour_words() -> None:
    names = pd.Series(["Nike Men Blue Jersey", "Nike Men Navy Blue Jersey", "Nike Men Jersey Shorts", None])
    colours = pd.Series(["Blue", "Navy Blue", "Red", None])
    assert product_family(names, colours).tolist() == ["nike men jersey", "nike men jersey", "nike men jersey shorts", ""]


def test_groups_join_near_duplicates_and_colour_variants_transitively() -> None:
    t = table(
        [
            (30, "Alpha Women Top", "Red", jpeg(1)),
            (10, "Alpha Women Top", "Blue", jpeg(2)),  # colour variant of 30
            (20, "Beta Men Shoe", "Black", jpeg(2, quality=60)),  # near-duplicate photo of 10: joins their group
            (40, "Gamma Kids Cap", "Green", jpeg(3)),
            (50, "", "Green", jpeg(4)),  # no name: only its photo could group it
            (60, "", "Green", jpeg(5)),
        ]
    )
    groups = product_groups(t)
    assert groups.tolist() == [10, 10, 10, 40, 50, 60]  # each group is named by its smallest id
    # Without the hashes validation stored, they are computed from the photos: the same groups.
    stored = t.assign(**{PHASH_COLUMN: None}).drop(columns=[PHASH_COLUMN])
    assert product_groups(stored).tolist() == groups.tolist()


def test_a_group_falls_on_one_side_and_the_share_is_kept() -> None:
    rng = np.random.default_rng(0)
    ids = np.arange(1000, 4000)
    families = [f"Brand{rng.integers(0, 600)} Women Kurta" for _ in ids]
    t = pd.DataFrame({"id": ids, "productDisplayName": families, "baseColour": "Red", PHASH_COLUMN: None})
    held = holdout_mask(t, 0.2)
    for _, sides in pd.Series(held).groupby(np.array(families)):
        assert sides.nunique() == 1
    assert 0.1 < held.mean() < 0.3
    # The old split scatters a family over both sides.
    by_id = holdout_mask(t, 0.2, SplitKind.ID)
    assert np.array_equal(by_id, is_holdout(ids, 0.2))
    assert any(sides.nunique() == 2 for _, sides in pd.Series(by_id).groupby(np.array(families)))
