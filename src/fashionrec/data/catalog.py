"""Reading a catalogue in the Kaggle "Fashion Product Images" layout: ``styles.csv`` + ``images/<id>.jpg``."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fashionrec.config import STYLES_COLUMNS

STYLES_FILE = "styles.csv"
IMAGES_DIR = "images"


class CatalogError(ValueError):
    """The catalogue cannot be read at all (missing file, wrong header)."""


@dataclass(frozen=True)
class MalformedRow:
    """A styles.csv line that could not be turned into a row; kept so that nothing is dropped silently."""

    line_number: int
    raw: str
    reason: str


@dataclass
class StylesTable:
    rows: pd.DataFrame
    malformed: list[MalformedRow] = field(default_factory=list)


def read_styles(path: Path) -> StylesTable:
    """Read styles.csv, surviving the real file's defects.

    The Kaggle file leaves commas inside ``productDisplayName`` unquoted, so such rows have more than 10 fields:
    the surplus belongs to the last column. Rows with fewer fields are reported as malformed, never dropped.
    Each row keeps its ``line_number`` in the file. All values are kept as strings; typing and checking them is the validation stage's job.
    """
    if not path.is_file():
        raise CatalogError(f"{path} not found: a catalogue needs {STYLES_FILE} next to {IMAGES_DIR}/")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = text.splitlines()
    if not lines:
        raise CatalogError(f"{path} is empty")
    header = next(csv.reader([lines[0]]))
    if tuple(h.strip() for h in header) != STYLES_COLUMNS:
        raise CatalogError(f"{path} header is {header}, expected {list(STYLES_COLUMNS)}")
    width = len(STYLES_COLUMNS)
    records: list[list[str]] = []
    line_numbers: list[int] = []
    malformed: list[MalformedRow] = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = next(csv.reader(io.StringIO(line)))
        if len(fields) > width:
            fields = [*fields[: width - 1], ",".join(fields[width - 1 :])]
        if len(fields) < width:
            malformed.append(MalformedRow(line_number, line, f"expected {width} fields, found {len(fields)}"))
            continue
        records.append([f.strip() for f in fields])
        line_numbers.append(line_number)
    rows = pd.DataFrame(records, columns=list(STYLES_COLUMNS), dtype="string")
    rows["line_number"] = pd.Series(line_numbers, dtype="int64")
    return StylesTable(rows=rows, malformed=malformed)


def write_styles(rows: pd.DataFrame, path: Path) -> None:
    """Write rows in the Kaggle column order, quoting names that contain commas."""
    rows.loc[:, list(STYLES_COLUMNS)].to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)


def edit_styles(path: Path, drop_ids: set[str], append: pd.DataFrame | None = None) -> list[str]:
    """Rewrite styles.csv in place: lines whose id is in ``drop_ids`` go, ``append``'s rows come at the end, and
    every other line stays exactly as it was (malformed lines and undecodable bytes included). Returns the dropped
    lines. Under an exclusive lock (two editors never lose each other's change) and atomic (a reader meanwhile
    sees the old or the new file, never half of one)."""
    import fcntl

    with path.with_name(f".{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        header = ",".join(STYLES_COLUMNS) + "\n"
        text = path.read_bytes().decode("utf-8", "surrogateescape") if path.exists() else header
        header, *body = text.splitlines(keepends=True) or [header]
        kept: list[str] = []
        dropped: list[str] = []
        for line in body:
            first = line.split(",", 1)[0].strip().strip('"')
            (dropped if first in drop_ids else kept).append(line)
        if kept and not kept[-1].endswith(("\n", "\r")):
            kept[-1] += "\n"
        added = ""
        if append is not None and len(append):
            added = append.loc[:, list(STYLES_COLUMNS)].to_csv(index=False, header=False, quoting=csv.QUOTE_MINIMAL)
        staged = path.with_name(f".{path.name}.tmp")
        staged.write_bytes((header + "".join(kept) + added).encode("utf-8", "surrogateescape"))
        staged.replace(path)
    return dropped


def image_path(catalog_dir: Path, item_id: str | int) -> Path:
    return catalog_dir / IMAGES_DIR / f"{item_id}.jpg"
