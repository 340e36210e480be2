import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from fashionrec.config import STYLES_COLUMNS
from fashionrec.data.catalog import read_styles
from fashionrec.data.synth import ARTICLE_TYPES, synth_catalog


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    synth_catalog(tmp_path / "a", items_per_type=2, n_types=3, seed=5)
    synth_catalog(tmp_path / "b", items_per_type=2, n_types=3, seed=5)
    synth_catalog(tmp_path / "c", items_per_type=2, n_types=3, seed=6)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_kaggle_layout(tmp_path: Path) -> None:
    table = synth_catalog(tmp_path, items_per_type=3, seed=1)
    styles = read_styles(tmp_path / "styles.csv")
    assert tuple(styles.rows.columns[:10]) == STYLES_COLUMNS
    assert styles.malformed == []
    assert len(styles.rows) == len(table) == 3 * len(ARTICLE_TYPES)
    assert styles.rows["articleType"].nunique() == len(ARTICLE_TYPES) >= 10
    for item_id in styles.rows["id"][:5]:
        image = Image.open(tmp_path / "images" / f"{item_id}.jpg")
        assert (image.format, image.size, image.mode) == ("JPEG", (60, 80), "RGB")


def test_items_of_one_type_vary(tmp_path: Path) -> None:
    table = synth_catalog(tmp_path, items_per_type=6, n_types=2, seed=2)
    first_type = table[table["articleType"] == table["articleType"].iloc[0]]
    pixels = np.stack([np.asarray(Image.open(tmp_path / "images" / f"{i}.jpg"), dtype=np.float32) for i in first_type["id"]])
    pairwise = [np.abs(pixels[i] - pixels[j]).mean() for i in range(len(pixels)) for j in range(i + 1, len(pixels))]
    assert min(pairwise) > 3.0  # no two items of a type are near copies


def test_augmented_catalog_adds_photographed_again_variants_under_new_ids(tmp_path: Path) -> None:
    from fashionrec.data.synth import augmented_catalog

    source = tmp_path / "source"
    original = synth_catalog(source, items_per_type=2, n_types=3)
    (source / "images" / f"{original['id'].iloc[0]}.jpg").unlink()  # a product without its photo keeps its rows
    table = augmented_catalog(source, tmp_path / "out", copies=2)
    written = read_styles(tmp_path / "out" / "styles.csv").rows
    assert len(table) == len(written) == 3 * len(original) and written["id"].is_unique
    stride = 10 ** len(str(int(original["id"].astype(int).max()) + 1))
    for copy in (1, 2):
        variants = written.set_index("id").loc[[str(int(i) + copy * stride) for i in original["id"]]]
        assert variants["articleType"].tolist() == original["articleType"].tolist()  # same product, same labels
    images = tmp_path / "out" / "images"
    missing = int(original["id"].iloc[0])
    assert not (images / f"{missing}.jpg").exists() and not (images / f"{missing + stride}.jpg").exists()
    kept, variant = int(original["id"].iloc[1]), int(original["id"].iloc[1]) + stride
    with Image.open(images / f"{kept}.jpg") as a, Image.open(images / f"{variant}.jpg") as b:
        assert a.size == b.size
        difference = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean()
    assert difference > 1.0  # another shot, not a byte copy
