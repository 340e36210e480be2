"""Reading a catalogue in the Kaggle "Fashion Product Images" layout: ``styles.csv`` + ``images/<id>.jpg``, and
editing one without losing anything: every line taken out or replaced is kept in ``removed.jsonl``, every photo in
``removed_images/``, and an interrupted edit is finished by the next call of the same edit (``edit_catalogue``)."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fashionrec.config import STYLES_COLUMNS

STYLES_FILE = "styles.csv"
IMAGES_DIR = "images"
REMOVED_FILE = "removed.jsonl"  # beside styles.csv: each line an edit took out or replaced, with when, why and which edit
REMOVED_IMAGES_DIR = "removed_images"  # their photos, <id>.<edit>.jpg: one per edit, so none overwrites another


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


def normal_id(raw: str | int) -> str:
    """A product id as every comparison takes it (a styles.csv field, a number from the command line): spaces, quotes
    and leading zeros dropped, so ``0123`` and ``123`` are one product. A field that is not a number stays as it is."""
    text = str(raw).strip().strip('"').strip()
    return str(int(text)) if text.isascii() and text.isdigit() else text


def styles_lines(rows: pd.DataFrame) -> list[str]:
    """Rows as styles.csv lines: the Kaggle column order, ids normalised, names with commas quoted, missing values
    empty (never the text "<NA>")."""
    table = rows.loc[:, list(STYLES_COLUMNS)].astype(object).where(rows.loc[:, list(STYLES_COLUMNS)].notna(), "")
    table["id"] = table["id"].map(normal_id)
    lines = []
    for record in table.astype(str).itertuples(index=False):
        out = io.StringIO()
        csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerow(record)
        lines.append(out.getvalue())
    return lines


def edit_catalogue(
    catalog_dir: Path, edit: str, drop_ids: Iterable[str | int] = (), lines: Sequence[str] = (),
    images: Mapping[str, bytes] | None = None,
) -> list[str]:  # fmt: skip
    """Take the products ``drop_ids`` out of the catalogue and add ``lines`` (see ``styles_lines``) with their photos
    (``images``, by normalised id), replacing the lines of the same ids. Every other line of styles.csv stays byte for
    byte as it was (malformed lines and undecodable bytes included). Returns the lines taken out.

    Nothing is lost wherever it stops. Each line taken out or replaced is first recorded in removed.jsonl (with
    when, why and ``edit``) and its photo copied to removed_images/<id>.<edit>.jpg, both fsynced; then the new photos
    and styles.csv are written (each to a temporary file, fsynced, renamed); then the old photos go. Called again with
    the same ``edit`` after a failure, it finishes what the first call began and records nothing twice. Under an
    exclusive lock (two editors never lose each other's change); a reader sees the old or the new styles.csv."""
    styles = catalog_dir / STYLES_FILE
    photos = dict(images or {})
    new = {normal_id(_id_field(line)): line if line.endswith("\n") else line + "\n" for line in lines}
    drop = {normal_id(i) for i in drop_ids}
    if not new and not styles.exists():
        return []  # a removal from a catalogue without styles.csv: nothing to take out
    catalog_dir.mkdir(parents=True, exist_ok=True)
    with _locked(styles):
        blank = ",".join(STYLES_COLUMNS) + "\n"
        text = styles.read_bytes().decode("utf-8", "surrogateescape") if styles.exists() else blank
        header, *body = text.splitlines(keepends=True) or [blank]
        kept: list[str] = []
        dropped: list[str] = []
        unchanged: set[str] = set()
        for line in body:
            key = normal_id(_id_field(line))
            if key in new and key not in unchanged and _as_asked(catalog_dir, line, new[key], photos.get(key)):
                unchanged.add(key)  # written so by an earlier try of this edit (or identical): nothing is replaced
                kept.append(line)
            elif key in drop or key in new:
                dropped.append(line)
            else:
                kept.append(line)
        header += "" if header.endswith(("\n", "\r")) else "\n"
        if kept and not kept[-1].endswith(("\n", "\r")):
            kept[-1] += "\n"
        added = [line for key, line in new.items() if key not in unchanged]
        _keep_removed(catalog_dir, edit, dropped, set(new))
        for key in new.keys() - unchanged:
            if key in photos:
                write_durably(image_path(catalog_dir, _id_field(new[key])), photos[key])  # named as its line names it
        write_durably(styles, (header + "".join(kept) + "".join(added)).encode("utf-8", "surrogateescape"))
        _drop_old_photos(catalog_dir, edit, [*kept, *added])
    return dropped


def read_removed(catalog_dir: Path) -> list[dict[str, Any]]:
    """The records of removed.jsonl, oldest first. A line cut short by a crash during its append is skipped: the
    edit that wrote it records it again when it is finished."""
    journal = catalog_dir / REMOVED_FILE
    if not journal.exists():
        return []
    records = []
    for line in journal.read_bytes().decode("utf-8", "surrogateescape").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("line"), str):
            records.append(record)
    return records


def write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, and on disk when this returns: a temporary file beside it, fsynced, renamed
    over it, then its folder fsynced (so that the rename survives a power cut too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    with staged.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    staged.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def _locked(styles: Path) -> Iterator[None]:
    with styles.with_name(f".{styles.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _id_field(line: str) -> str:
    """The id field of a styles.csv line as written: its photo's name."""
    return line.split(",", 1)[0].strip().strip('"').strip()


def _as_asked(catalog_dir: Path, line: str, wanted: str, photo: bytes | None) -> bool:
    """Whether the catalogue holds ``wanted`` already, photo included."""
    if line.rstrip("\r\n") != wanted.rstrip("\r\n"):
        return False
    path = image_path(catalog_dir, _id_field(line))
    return photo is None or (path.is_file() and path.read_bytes() == photo)


def _keep_removed(catalog_dir: Path, edit: str, dropped: list[str], replaced: set[str]) -> None:
    """Copy the photos of the lines about to go to removed_images/ and record the lines in removed.jsonl, fsynced,
    leaving out what an earlier try of ``edit`` recorded."""
    recorded = Counter(r["line"] for r in read_removed(catalog_dir) if r.get("edit") == edit)
    when = datetime.now(UTC).isoformat()
    records = []
    for line in dropped:
        text = line.rstrip("\r\n")
        if recorded[text]:
            recorded[text] -= 1
            continue
        field = _id_field(line)
        photo = image_path(catalog_dir, field)
        backup = catalog_dir / REMOVED_IMAGES_DIR / f"{field}.{edit}.jpg"
        if photo.is_file() and not backup.exists():  # an earlier try's copy is of the old photo: never overwrite it
            write_durably(backup, photo.read_bytes())
        reason = "replaced" if normal_id(field) in replaced else "removed"
        image = f"{REMOVED_IMAGES_DIR}/{backup.name}" if backup.exists() else None
        records.append({"removed_at": when, "id": normal_id(field), "reason": reason, "edit": edit, "line": text, "image": image})
    if not records:
        return
    journal = catalog_dir / REMOVED_FILE
    body = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8", "surrogateescape")
    with journal.open("ab") as out:
        if out.tell() and not _ends_with_newline(journal):
            body = b"\n" + body  # after a line cut short by a crash
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    _fsync_dir(catalog_dir)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _drop_old_photos(catalog_dir: Path, edit: str, lines: list[str]) -> None:
    """Delete the photos of the lines ``edit`` took out (copied to removed_images/ first) that no line names now."""
    named = {_id_field(line) for line in lines}
    for record in read_removed(catalog_dir):
        field = _id_field(record["line"])
        if record.get("edit") == edit and record.get("image") and field not in named:
            image_path(catalog_dir, field).unlink(missing_ok=True)


def image_path(catalog_dir: Path, item_id: str | int) -> Path:
    return catalog_dir / IMAGES_DIR / f"{item_id}.jpg"
