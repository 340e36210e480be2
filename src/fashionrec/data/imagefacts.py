"""Per-image facts for validation: decoding status, geometry, colour mode, quality measures and a perceptual hash.

Computed in parallel across cores (processes: decoding is CPU-bound and holds the GIL). One fact row per catalogue
row, in row order.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashionrec.console import progress_bar
from fashionrec.imaging import ImageDecodeError, open_image, to_rgb

CATALOGUE_FORMATS = frozenset({"JPEG", "MPO"})  # what a .jpg name promises (MPO is a multi-picture JPEG)
PHASH_SIDE = 16  # 16x16 low-frequency DCT block -> 255 bits; 8x8 collides on white-background product photos
SERIAL_BELOW = 1500  # smaller catalogues are faster without the process pool's start-up
# Quarantine reason for each ImageDecodeError kind.
STATUS_OF_KIND = {
    "empty": "zero_byte_image",
    "too_large_file": "file_too_large",
    "not_an_image": "not_an_image",
    "unsupported_format": "unsupported_format",
    "too_many_pixels": "decompression_bomb",
    "unsupported_mode": "unsupported_colour_mode",
    "truncated": "truncated_image",
}


@dataclass
class ImageFacts:
    status: str = "ok"  # ok | missing_image | one of STATUS_OF_KIND's values
    error: str | None = None
    sha256: str | None = None
    file_bytes: int = 0
    format: str | None = None
    mode: str | None = None
    width: float = float("nan")
    height: float = float("nan")
    min_side: float = float("nan")
    aspect: float = float("nan")  # height / width
    brightness: float = float("nan")  # mean grey level, 0-255
    contrast: float = float("nan")  # standard deviation of grey levels
    saturated_fraction: float = float("nan")  # share of pixels at grey level >= 250
    sharpness: float = float("nan")  # variance of the Laplacian
    phash: str | None = None  # hex of the perceptual hash bits


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT = _dct_matrix(4 * PHASH_SIDE)


def perceptual_hash(grey: Image.Image) -> bytes:
    """pHash: signs of the low-frequency DCT coefficients against their median (DC left out)."""
    pixels = np.asarray(grey.resize((4 * PHASH_SIDE, 4 * PHASH_SIDE), Image.Resampling.BILINEAR), dtype=np.float64)
    coefficients = (_DCT @ pixels @ _DCT.T)[:PHASH_SIDE, :PHASH_SIDE].reshape(-1)[1:]
    return np.packbits(coefficients > np.median(coefficients)).tobytes()


def laplacian_variance(grey: np.ndarray) -> float:
    lap = grey[1:-1, 2:] + grey[1:-1, :-2] + grey[2:, 1:-1] + grey[:-2, 1:-1] - 4 * grey[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def facts_of(path: Path) -> ImageFacts:
    facts = ImageFacts()
    if not path.is_file():
        facts.status, facts.error = "missing_image", f"images/{path.name} not found"
        return facts
    data = path.read_bytes()
    facts.sha256 = hashlib.sha256(data).hexdigest()
    facts.file_bytes = len(data)
    try:
        image = open_image(data)
    except ImageDecodeError as exc:
        facts.status, facts.error = STATUS_OF_KIND.get(exc.kind, "not_an_image"), str(exc)
        return facts
    facts.format, facts.mode = image.format, image.mode
    facts.width, facts.height = float(image.width), float(image.height)
    facts.min_side = float(min(image.size))
    facts.aspect = image.height / image.width
    grey_image = to_rgb(image).convert("L")
    grey = np.asarray(grey_image, dtype=np.float32)
    for name, value in grey_stats(grey).items():
        setattr(facts, name, value)
    facts.phash = perceptual_hash(grey_image).hex()
    return facts


def grey_stats(grey: np.ndarray) -> dict[str, float]:
    """Brightness, contrast, blown-out share and sharpness of a grey image (validation's checks, and monitoring)."""
    return {
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "saturated_fraction": float((grey >= 250).mean()),
        "sharpness": laplacian_variance(grey),
    }


# What monitoring compares between the catalogue and the photos users send. Sizes are left out on purpose: users'
# photos are larger than any catalogue's and would always "drift"; the aspect ratio is what changes the crop.
IMAGE_STATS = ("brightness", "contrast", "saturated_fraction", "sharpness", "aspect")
MONITOR_SIDE = 256  # stats are taken on the image scaled to fit this square, in the reference and live alike


def image_stats(image: Image.Image) -> dict[str, float]:
    """The monitored statistics (IMAGE_STATS) of a decoded image, on its MONITOR_SIDE thumbnail."""
    thumb = to_rgb(image)
    if max(thumb.size) > MONITOR_SIDE:
        thumb = thumb.copy()
        thumb.thumbnail((MONITOR_SIDE, MONITOR_SIDE), Image.Resampling.BILINEAR)
    stats = grey_stats(np.asarray(thumb.convert("L"), dtype=np.float32))
    return {**stats, "aspect": image.height / image.width}


def _facts_chunk(paths: list[str]) -> list[dict[str, object]]:
    return [asdict(facts_of(Path(p))) for p in paths]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def compute_facts(paths: list[Path], workers: int | None = None) -> pd.DataFrame:
    """Facts for every path, in order; a process pool across cores for large catalogues."""
    workers = workers or os.cpu_count() or 1
    names = [str(p) for p in paths]
    rows: list[dict[str, object]] = []
    with progress_bar() as bar:
        task = bar.add_task("image facts", total=len(names), status=f"{workers} workers" if len(names) >= SERIAL_BELOW else "")
        if workers == 1 or len(names) < SERIAL_BELOW:
            for name in names:
                rows.append(asdict(facts_of(Path(name))))
                bar.advance(task)
        else:
            # spawn: the parent may hold torch/OpenMP threads, which do not survive a fork safely.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                for chunk in pool.map(_facts_chunk, _chunks(names, 500)):
                    rows.extend(chunk)
                    bar.advance(task, len(chunk))
    return pd.DataFrame(rows, columns=list(ImageFacts.__dataclass_fields__))


def near_duplicate_groups(hashes: Sequence[str | None], radius: int) -> list[list[int]]:
    """Groups (row positions) of near-identical images: every member within ``radius`` bits of its group's centre.

    Not single linkage: A~B and B~C must not put A and C together when they are far apart (a chain of small edits
    links unrelated products). Centres are taken greedily, the image with the most unassigned neighbours first."""
    import faiss

    present = [i for i, h in enumerate(hashes) if h]
    if len(present) < 2:
        return []
    codes = np.stack([np.frombuffer(bytes.fromhex(str(hashes[i])), dtype=np.uint8) for i in present])
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    limits, _, neighbours = index.range_search(codes, radius + 1)
    near = [set(int(n) for n in neighbours[limits[q] : limits[q + 1]]) for q in range(len(present))]
    unassigned = {q for q in range(len(present)) if len(near[q]) > 1}  # images with at least one near-duplicate
    groups = []
    while unassigned:
        centre = max(sorted(unassigned), key=lambda q: len(near[q] & unassigned))
        members = near[centre] & unassigned
        unassigned -= members
        if len(members) > 1:
            groups.append(sorted(present[m] for m in members))
    return groups
