"""A synthetic catalogue in the exact Kaggle "Fashion Product Images (Small)" layout.

Every article type has its own silhouette; colour, texture, pose, scale, background and noise vary per item and are
shared across types, so a model has to learn shapes to tell the types apart. Deterministic for a given seed.
"""

from __future__ import annotations

import io
import math
import random
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from fashionrec.data.catalog import IMAGES_DIR, STYLES_FILE, read_styles, write_styles

WIDTH, HEIGHT = 60, 80  # the Kaggle small set's portrait size
SUPERSAMPLE = 3

Point = tuple[float, float]
Painter = Callable[[ImageDraw.ImageDraw, Callable[[Point], Point], random.Random], None]

COLOURS: dict[str, tuple[int, int, int]] = {
    "Black": (25, 25, 28),
    "White": (238, 238, 232),
    "Blue": (40, 70, 170),
    "Navy Blue": (25, 35, 80),
    "Red": (190, 30, 40),
    "Green": (40, 130, 60),
    "Grey": (128, 128, 130),
    "Brown": (110, 70, 40),
    "Pink": (230, 140, 170),
    "Yellow": (230, 200, 40),
    "Purple": (110, 50, 140),
    "Beige": (215, 195, 160),
}


def _poly(points: Sequence[Point]) -> Painter:
    def paint(draw: ImageDraw.ImageDraw, at: Callable[[Point], Point], rng: random.Random) -> None:
        draw.polygon([at(p) for p in points], fill=255)

    return paint


def _ellipse(cx: float, cy: float, rx: float, ry: float, steps: int = 28) -> list[Point]:
    return [(cx + rx * math.cos(2 * math.pi * i / steps), cy + ry * math.sin(2 * math.pi * i / steps)) for i in range(steps)]


def _shapes(*painters: Painter) -> Painter:
    def paint(draw: ImageDraw.ImageDraw, at: Callable[[Point], Point], rng: random.Random) -> None:
        for p in painters:
            p(draw, at, rng)

    return paint


def _line(points: Sequence[Point], width: float) -> Painter:
    def paint(draw: ImageDraw.ImageDraw, at: Callable[[Point], Point], rng: random.Random) -> None:
        draw.line([at(p) for p in points], fill=255, width=max(1, int(width * WIDTH * SUPERSAMPLE)))

    return paint


@dataclass(frozen=True)
class ArticleType:
    name: str
    master: str
    sub: str
    painter: Painter
    names: tuple[str, ...]


ARTICLE_TYPES: tuple[ArticleType, ...] = (
    ArticleType(
        "Tshirts",
        "Apparel",
        "Topwear",
        _poly(
            [
                (0.3, 0.15),
                (0.42, 0.12),
                (0.58, 0.12),
                (0.7, 0.15),
                (0.92, 0.3),
                (0.82, 0.4),
                (0.72, 0.33),
                (0.72, 0.85),
                (0.28, 0.85),
                (0.28, 0.33),
                (0.18, 0.4),
                (0.08, 0.3),
            ]
        ),
        ("Crew Neck T-shirt", "Graphic Tee"),
    ),
    ArticleType(
        "Shirts",
        "Apparel",
        "Topwear",
        _shapes(
            _poly(
                [
                    (0.3, 0.12),
                    (0.5, 0.2),
                    (0.7, 0.12),
                    (0.82, 0.2),
                    (0.95, 0.82),
                    (0.85, 0.84),
                    (0.74, 0.38),
                    (0.74, 0.9),
                    (0.26, 0.9),
                    (0.26, 0.38),
                    (0.15, 0.84),
                    (0.05, 0.82),
                    (0.18, 0.2),
                ]
            ),
            _poly([(0.38, 0.08), (0.5, 0.2), (0.62, 0.08), (0.56, 0.06), (0.5, 0.13), (0.44, 0.06)]),
        ),
        ("Formal Shirt", "Casual Shirt"),
    ),
    ArticleType(
        "Jeans",
        "Apparel",
        "Bottomwear",
        _poly([(0.28, 0.06), (0.72, 0.06), (0.76, 0.95), (0.56, 0.95), (0.5, 0.32), (0.44, 0.95), (0.24, 0.95)]),
        ("Slim Fit Jeans", "Washed Denim"),
    ),
    ArticleType(
        "Shorts",
        "Apparel",
        "Bottomwear",
        _poly([(0.22, 0.3), (0.78, 0.3), (0.86, 0.68), (0.56, 0.7), (0.5, 0.45), (0.44, 0.7), (0.14, 0.68)]),
        ("Cargo Shorts", "Bermuda Shorts"),
    ),
    ArticleType(
        "Dresses",
        "Apparel",
        "Dress",
        _poly([(0.4, 0.06), (0.6, 0.06), (0.62, 0.2), (0.57, 0.36), (0.85, 0.94), (0.15, 0.94), (0.43, 0.36), (0.38, 0.2)]),
        ("A-line Dress", "Maxi Dress"),
    ),
    ArticleType(
        "Skirts",
        "Apparel",
        "Bottomwear",
        _poly([(0.34, 0.36), (0.66, 0.36), (0.86, 0.76), (0.14, 0.76)]),
        ("Pleated Skirt", "Mini Skirt"),
    ),
    ArticleType(
        "Casual Shoes",
        "Footwear",
        "Shoes",
        _poly([(0.08, 0.5), (0.3, 0.42), (0.45, 0.44), (0.62, 0.52), (0.9, 0.58), (0.94, 0.66), (0.06, 0.66)]),
        ("Canvas Sneaker", "Casual Shoe"),
    ),
    ArticleType(
        "Sandals",
        "Footwear",
        "Sandal",
        _shapes(
            _poly([(0.1, 0.6), (0.9, 0.56), (0.92, 0.64), (0.08, 0.66)]),
            _line([(0.25, 0.6), (0.4, 0.48), (0.55, 0.58)], 0.05),
            _line([(0.55, 0.58), (0.7, 0.47), (0.82, 0.57)], 0.05),
        ),
        ("Strappy Sandal", "Flip Flop"),
    ),
    ArticleType(
        "Handbags",
        "Accessories",
        "Bags",
        _shapes(
            _poly([(0.15, 0.42), (0.85, 0.42), (0.9, 0.85), (0.1, 0.85)]),
            _line([(0.32, 0.43), (0.34, 0.24), (0.5, 0.18), (0.66, 0.24), (0.68, 0.43)], 0.06),
        ),
        ("Tote Bag", "Shoulder Bag"),
    ),
    ArticleType(
        "Watches",
        "Accessories",
        "Watches",
        _shapes(_poly([(0.42, 0.05), (0.58, 0.05), (0.58, 0.95), (0.42, 0.95)]), _poly(_ellipse(0.5, 0.5, 0.22, 0.17))),
        ("Analog Watch", "Chronograph"),
    ),
    ArticleType(
        "Caps",
        "Accessories",
        "Headwear",
        _shapes(
            _poly([*_ellipse(0.45, 0.5, 0.3, 0.22)[14:], (0.15, 0.52)]),
            _poly([(0.55, 0.48), (0.95, 0.56), (0.9, 0.6), (0.55, 0.56)]),
        ),
        ("Baseball Cap", "Snapback"),
    ),
    ArticleType(
        "Sunglasses",
        "Accessories",
        "Eyewear",
        _shapes(
            _poly(_ellipse(0.28, 0.5, 0.17, 0.11)),
            _poly(_ellipse(0.72, 0.5, 0.17, 0.11)),
            _line([(0.42, 0.47), (0.5, 0.44), (0.58, 0.47)], 0.04),
        ),
        ("Aviator Sunglasses", "Wayfarer"),
    ),
    ArticleType(
        "Backpacks",
        "Accessories",
        "Bags",
        _shapes(
            _poly([(0.22, 0.15), (0.78, 0.15), (0.85, 0.9), (0.15, 0.9)]),
            _poly(_ellipse(0.5, 0.16, 0.28, 0.08)),
            _line([(0.3, 0.6), (0.7, 0.6)], 0.05),
        ),
        ("Laptop Backpack", "Daypack"),
    ),
)

BRANDS = ("Puma", "Nike", "Roadster", "Fabindia", "Fastrack", "Wrangler", "Titan", "Baggit")
GENDERS = ("Men", "Women", "Unisex")
SEASONS = ("Summer", "Fall", "Winter", "Spring")
USAGES = ("Casual", "Formal", "Sports")


def _texture(rng: random.Random, size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    w, h = size
    base = np.empty((h, w, 3), dtype=np.float32)
    base[:] = colour
    kind = rng.choice(("plain", "plain", "hstripes", "vstripes", "dots", "checks"))
    accent = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    period = rng.randint(6, 14) * SUPERSAMPLE
    if kind == "hstripes":
        mask = (yy // (period // 2)) % 2 == 0
    elif kind == "vstripes":
        mask = (xx // (period // 2)) % 2 == 0
    elif kind == "dots":
        mask = ((yy % period) - period / 2) ** 2 + ((xx % period) - period / 2) ** 2 < (period / 4) ** 2
    elif kind == "checks":
        mask = ((yy // period) + (xx // period)) % 2 == 0
    else:
        mask = np.zeros((h, w), dtype=bool)
    base[mask] = 0.6 * base[mask] + 0.4 * accent
    # Soft lighting so that colour alone is not a flat constant.
    shade = 0.85 + 0.3 * (1 - yy / h)[..., None] * rng.uniform(0.3, 1.0)
    return Image.fromarray(np.clip(base * shade, 0, 255).astype(np.uint8))


def render_item(article: ArticleType, colour: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """Draw one product photo: the type's silhouette under a random pose, texture and background."""
    w, h = WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE
    scale = rng.uniform(0.78, 1.05)
    angle = math.radians(rng.uniform(-10, 10))
    dx, dy = rng.uniform(-0.08, 0.08), rng.uniform(-0.07, 0.07)
    squash = rng.uniform(0.9, 1.1)

    def at(p: Point) -> Point:
        x, y = (p[0] - 0.5) * scale * squash, (p[1] - 0.5) * scale
        xr, yr = x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)
        return ((xr + 0.5 + dx) * w, (yr + 0.5 + dy) * h)

    mask = Image.new("L", (w, h), 0)
    article.painter(ImageDraw.Draw(mask), at, rng)
    mask = mask.filter(ImageFilter.GaussianBlur(SUPERSAMPLE * 0.4))
    # The backdrop's grey level stays >= 45 away from the product's, so a clean photo always has visible edges.
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    tint = rng.randint(225, 255) if luminance < 180 else rng.randint(int(luminance) - 110, int(luminance) - 60)
    background = Image.new("RGB", (w, h), (tint, tint - rng.randint(0, 12), tint - rng.randint(0, 12)))
    image = Image.composite(_texture(rng, (w, h), colour), background, mask).resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(2.5, 6), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def synth_catalog(
    out_dir: Path, items_per_type: int = 40, seed: int = 0, n_types: int | None = None, first_id: int = 10000
) -> pd.DataFrame:
    """Write ``styles.csv`` and ``images/<id>.jpg`` for ``items_per_type`` items of each article type.

    Returns the rows written. Some product names contain commas, as in the real file (written quoted).
    """
    types = ARTICLE_TYPES[: n_types or len(ARTICLE_TYPES)]
    if len(types) < 2:
        raise ValueError("a catalogue needs at least 2 article types")
    rng = random.Random(seed)
    images = out_dir / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    item_id = first_id
    for _ in range(items_per_type):
        for article in types:
            colour_name = rng.choice(sorted(COLOURS))
            brand, gender = rng.choice(BRANDS), rng.choice(GENDERS)
            name = f"{brand} {gender} {colour_name} {rng.choice(article.names)}"
            if rng.random() < 0.1:
                name += ", Pack of 1"
            image = render_item(article, COLOURS[colour_name], rng)
            image.save(images / f"{item_id}.jpg", format="JPEG", quality=rng.randint(80, 95))
            rows.append(
                {
                    "id": str(item_id),
                    "gender": gender,
                    "masterCategory": article.master,
                    "subCategory": article.sub,
                    "articleType": article.name,
                    "baseColour": colour_name,
                    "season": rng.choice(SEASONS),
                    "year": str(rng.randint(2011, 2018)),
                    "usage": rng.choice(USAGES),
                    "productDisplayName": name,
                }
            )
            item_id += 1
    table = pd.DataFrame(rows)
    write_styles(table, out_dir / STYLES_FILE)
    return table


def augmented_catalog(source: Path, out_dir: Path, copies: int, seed: int = 0) -> pd.DataFrame:
    """A catalogue ``copies + 1`` times the size of ``source`` (a real one, Kaggle layout): every product as it
    is, plus ``copies`` photographed-again variants of it (mirrored or not, cropped, re-lit, re-encoded) under new
    ids with the same labels. For measuring serving at a real catalogue's size (~44k products) from fewer photos;
    a variant is a near-duplicate of its product, which validation reports and the held-out split groups.

    Rows ``read_styles`` cannot parse or without a numeric id are left out; a product whose photo is missing or
    unreadable keeps its rows (validation quarantines them). Returns the rows written.
    """

    styles = read_styles(source / STYLES_FILE).rows
    styles = styles[styles["id"].str.fullmatch(r"\d+")].reset_index(drop=True)  # a row without a numeric id has no variants
    ids = styles["id"].astype(int)
    stride = 10 ** len(str(int(ids.max()) + 1))  # a variant's id: the product's id plus a multiple of this
    rng = random.Random(seed)
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    tables = [styles]
    for copy in range(1, copies + 1):
        variant = styles.copy()
        variant["id"] = (ids + copy * stride).astype(str)
        tables.append(variant)
    for item_id in ids:
        try:
            photo = Image.open(source / IMAGES_DIR / f"{item_id}.jpg").convert("RGB")
        except OSError:  # missing or unreadable: its rows stay, validation quarantines them
            continue
        photo.save(out_dir / IMAGES_DIR / f"{item_id}.jpg", format="JPEG", quality=95)
        for copy in range(1, copies + 1):
            _photographed_again(photo, rng).save(
                out_dir / IMAGES_DIR / f"{item_id + copy * stride}.jpg", format="JPEG", quality=rng.randint(80, 95)
            )
    table = pd.concat(tables, ignore_index=True)
    write_styles(table, out_dir / STYLES_FILE)
    return table


def _photographed_again(photo: Image.Image, rng: random.Random) -> Image.Image:
    """The same product in a slightly different shot: mirrored half the time, a crop of 85-100%, other light."""
    from PIL import ImageEnhance, ImageOps

    width, height = photo.size
    scale = rng.uniform(0.85, 1.0)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    shot = photo.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        shot = ImageOps.mirror(shot)
    shot = ImageEnhance.Brightness(shot).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Color(shot).enhance(rng.uniform(0.8, 1.2))


# ---- defects: each kind is injected at a known rate, with the quarantine reason validation must give it ----


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A small, valid-looking PNG whose header claims width x height (a decompression bomb by size)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def _image(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def _rewrite(path: Path, rng: random.Random, kind: str) -> None:
    """Replace a clean image file with its defective version."""
    if kind == "corrupt":
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(600)))
    elif kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "wrong_format":
        buffer = io.BytesIO()
        _image(path).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue())
    elif kind == "bomb":
        path.write_bytes(_png_claiming(20_000, 20_000))
    elif kind == "tiny":
        path.write_bytes(_jpeg(_image(path).resize((12, 16))))
    elif kind == "bad_aspect":
        path.write_bytes(_jpeg(_image(path).resize((60, 300))))
    elif kind == "dark":
        path.write_bytes(_jpeg(Image.eval(_image(path), lambda v: v // 14)))
    elif kind == "overexposed":
        path.write_bytes(_jpeg(Image.eval(_image(path), lambda v: min(255, 252 + v // 80)), quality=95))
    elif kind == "blank":
        path.write_bytes(_jpeg(Image.new("RGB", (WIDTH, HEIGHT), tuple(rng.randint(60, 200) for _ in range(3)))))
    elif kind == "low_contrast":  # the photo squeezed to a grey-level std of about 1.8 around a mid grey
        pixels = np.asarray(_image(path), dtype=np.float32)
        squeezed = rng.randint(90, 160) + (pixels - pixels.mean()) * (1.8 / max(float(pixels.std()), 1e-3))
        path.write_bytes(_jpeg(Image.fromarray(np.clip(squeezed, 0, 255).astype(np.uint8)), quality=98))
    elif kind == "blurry":
        path.write_bytes(_jpeg(_image(path).filter(ImageFilter.GaussianBlur(5))))
    elif kind == "grayscale":
        path.write_bytes(_jpeg(_image(path).convert("L")))
    elif kind == "cmyk":
        path.write_bytes(_jpeg(_image(path).convert("CMYK")))
    else:
        raise ValueError(f"unknown image defect {kind!r}")


# kind -> quarantine reason ("" = must stay valid: the image is normalised, not rejected)
DEFECTS: dict[str, str] = {
    "corrupt": "not_an_image",
    "truncated": "truncated_image",
    "zero_byte": "zero_byte_image",
    "wrong_format": "format_mismatch",
    "bomb": "decompression_bomb",
    "tiny": "image_too_small",
    "bad_aspect": "bad_aspect_ratio",
    "dark": "too_dark",
    "overexposed": "over_exposed",
    "blank": "blank_image",
    "low_contrast": "low_contrast",
    "blurry": "blurry",
    "grayscale": "",
    "cmyk": "",
    "missing_image": "missing_image",
    "missing_label": "missing_label",
    "duplicate_id": "duplicate_id",
    "conflicting_duplicate": "conflicting_duplicate",
    "orphan_image": "image_without_row",
    "malformed_row": "malformed_csv_row",
}


def inject_defects(catalog_dir: Path, table: pd.DataFrame, rates: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """Damage a written catalogue in place: each kind hits ``rate`` of the items (at least one when rate > 0),
    no item twice. Returns one row per damaged item or extra line: id, defect, expected reason."""
    unknown = sorted(set(rates) - set(DEFECTS))
    if unknown:
        raise ValueError(f"unknown defects {unknown}; known: {sorted(DEFECTS)}")
    rng = random.Random(seed)
    images = catalog_dir / IMAGES_DIR
    styles = table.copy()
    pool = list(styles.index)
    rng.shuffle(pool)
    records: list[dict[str, str]] = []
    extra_lines: list[str] = []
    for kind in sorted(rates):
        count = max(1, round(rates[kind] * len(table))) if rates[kind] > 0 else 0
        for _ in range(count):
            if len(pool) < 2:
                raise ValueError("catalogue too small for these defect rates")
            row = pool.pop()
            item_id = str(styles.at[row, "id"])
            path = images / f"{item_id}.jpg"
            if kind == "missing_image":
                path.unlink()
            elif kind == "missing_label":
                styles.at[row, "articleType"] = ""
            elif kind == "duplicate_id":
                twin = pool.pop()  # a second row takes the same id: both are quarantined (which is right is unknown)
                (images / f"{styles.at[twin, 'id']!s}.jpg").unlink()
                styles.at[twin, "id"] = item_id
                records.append({"id": item_id, "defect": kind, "reason": DEFECTS[kind]})
                continue
            elif kind == "conflicting_duplicate":
                source = pool.pop()  # a lightly re-encoded copy of another item, labelled differently
                copy = Image.eval(_image(images / f"{styles.at[source, 'id']!s}.jpg"), lambda v: min(255, v + 4))
                path.write_bytes(_jpeg(copy, quality=80))
                other_types = [a.name for a in ARTICLE_TYPES if a.name != styles.at[source, "articleType"]]
                styles.at[row, "articleType"] = rng.choice(other_types)
                records.append(
                    {"id": str(styles.at[source, "id"]), "defect": "conflicting_duplicate_source", "reason": DEFECTS[kind]}
                )
            elif kind in ("orphan_image", "malformed_row"):
                pool.append(row)  # the row itself stays clean; the defect is an extra file or line
                extra_id = str(900_000 + len(records))
                if kind == "orphan_image":
                    (images / f"{extra_id}.jpg").write_bytes(path.read_bytes())
                else:
                    extra_lines.append(f"{extra_id},Men,Apparel,broken")
                records.append({"id": extra_id, "defect": kind, "reason": DEFECTS[kind]})
                continue
            else:
                _rewrite(path, rng, kind)
            records.append({"id": item_id, "defect": kind, "reason": DEFECTS[kind]})
    write_styles(styles, catalog_dir / STYLES_FILE)
    if extra_lines:
        with (catalog_dir / STYLES_FILE).open("a", encoding="utf-8") as f:
            f.write("\n".join(extra_lines) + "\n")
    return pd.DataFrame(records, columns=["id", "defect", "reason"])
