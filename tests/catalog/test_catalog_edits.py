"""Catalogue additions and removals lose nothing: every replaced or removed styles.csv line and photo is kept, ids
with leading zeros are the same product, files are fsynced before their rename, and a call that fails between any
two of its steps is finished by its retry (or by the next call) to exactly what an uninterrupted call leaves. On an
embedded sqlite online store and a fake encoder: no server is started."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

import fashionrec.catalog.update as update
import fashionrec.data.catalog as catalog_files
from fashionrec.catalog.update import AddResult, RemoveResult, ServedVersion, add_items, remove_items
from fashionrec.config import ATTRIBUTE_COLUMNS, EMBEDDING_DIM, STYLES_COLUMNS
from fashionrec.data.catalog import REMOVED_FILE, REMOVED_IMAGES_DIR, STYLES_FILE, read_removed, read_styles, write_styles
from fashionrec.data.changes import ChangeLog
from fashionrec.data.synth import synth_catalog
from fashionrec.retrieval.embeddings import random_embeddings, read_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import OnlineFeatures, StoreSettings, apply_and_materialize, stage_repo
from fashionrec.serving.predictor_client import Embeddings

VERSION = "v-test"
ZERO_PADDED = "0123"  # a catalogue line whose id has a leading zero: product 123
ADDED, READDED = 90000, 10001  # a new product, and one the catalogue has (with another photo and name)
REMOVED = [10002, 123]
IDS = [10000, 10001, 10002, 10003, 123, ADDED]  # the catalogue's (10000..10003 and 0123) and the new one


class FakeEncoder:
    """Answers like the predictor: a unit vector derived from the image bytes (the same for the same photo)."""

    def __init__(self) -> None:
        self.calls = 0

    async def embed(
        self, images: list[bytes], encoded: list[str] | None, request_id: str | None, model_version: str
    ) -> Embeddings:
        self.calls += 1
        seeds = [int.from_bytes(hashlib.sha256(image).digest()[:8], "little") for image in images]
        vectors = np.stack([np.random.default_rng(seed).standard_normal(EMBEDDING_DIM) for seed in seeds]).astype(np.float32)
        return Embeddings(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), model_version)

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalogue (with a zero-padded id), a batch of additions, and a Feast repo materialized with the catalogue."""
    root = tmp_path_factory.mktemp("originals")
    catalog = root / "catalog"
    synth_catalog(catalog, items_per_type=2, n_types=2, seed=5)  # ids 10000..10003
    shutil.copy2(catalog / "images" / "10000.jpg", catalog / "images" / f"{ZERO_PADDED}.jpg")
    with (catalog / STYLES_FILE).open("a", encoding="utf-8") as styles:
        styles.write(f"{ZERO_PADDED},Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Padded tee\n")
    rows = read_styles(catalog / STYLES_FILE).rows

    additions = root / "additions"
    synth_catalog(additions, items_per_type=1, n_types=2, seed=9, first_id=ADDED)  # 90000, 90001
    (additions / "images" / f"{ADDED + 1}.jpg").unlink()
    ImageOps.mirror(Image.open(catalog / "images" / f"{READDED}.jpg")).save(additions / "images" / f"{READDED}.jpg", quality=95)
    new = read_styles(additions / STYLES_FILE).rows.loc[:, list(STYLES_COLUMNS)]
    again = rows.loc[rows["id"] == str(READDED), list(STYLES_COLUMNS)].assign(productDisplayName="Renamed, again")
    write_styles(pd.concat([new[new["id"] == str(ADDED)], again]), additions / STYLES_FILE)

    ids = np.array([int(i) for i in rows["id"]])
    write_embeddings(*random_embeddings(ids, VERSION), root / "embeddings.parquet")
    apply_and_materialize(stage_repo(root / "embeddings.parquet", root / "repo", settings=StoreSettings()))
    return root


@pytest.fixture
def world(originals: Path, tmp_path: Path) -> Callable[[str], World]:
    """A fresh copy of the catalogue and the store for each name (an interrupted run and an uninterrupted one)."""

    def make(name: str) -> World:
        root = tmp_path / name
        shutil.copytree(originals / "catalog", root / "catalog")
        shutil.copytree(originals / "repo", root / "repo")
        return World(root, originals / "additions")

    return make


class World:
    def __init__(self, root: Path, additions: Path) -> None:
        self.root = root
        self.catalog = root / "catalog"
        self.additions = additions
        self.served = [ServedVersion(VERSION, root / "repo")]
        self.changes = ChangeLog(str(root / "changes"))
        self.encoder = FakeEncoder()

    def add(self) -> AddResult:
        return add_items(self.additions, self.served, self.encoder, self.changes, self.catalog, self.root / "report")

    def remove(self, ids: list[int] = REMOVED) -> RemoveResult:
        return remove_items(ids, self.served, self.changes, self.catalog)

    def state(self) -> dict[str, Any]:
        """Everything an edit leaves, with the names and times that differ between two runs taken out."""
        edits = {record["edit"] for record in read_removed(self.catalog)}
        changes = {change.name for change in self.changes.changes()}

        def plain(name: str) -> str:
            for edit in edits | changes:
                name = name.replace(edit, "EDIT")
            return name

        def files(folder: Path) -> dict[str, str]:
            return {plain(str(p.relative_to(folder))): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
                    for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (REMOVED_FILE, f".{STYLES_FILE}.lock")}  # fmt: skip

        online = OnlineFeatures(self.root / "repo")
        vectors = online.embeddings(IDS, VERSION)
        logged = []
        for change in self.changes.changes():
            entry: dict[str, Any] = {"action": change.action, "ids": change.item_ids, "versions": change.model_versions}
            if change.action == "add":
                with self.changes.fs.open(self.changes.rows_uri(change), "rb") as handle:
                    table, rows_vectors = read_embeddings(handle)
                entry["rows"] = table[["item_id", "model_version", *ATTRIBUTE_COLUMNS]].to_dict("records")
                entry["vectors"] = rows_vectors.round(5).tolist()
                entry["photos"] = [hashlib.sha256(bytes(b)).hexdigest() for b in table["image"]]
            logged.append(entry)
        return {
            "present": online.present(IDS),
            "attributes": online.attributes(IDS),
            "vectors": [None if v is None else np.round(v, 5).tolist() for v in vectors],
            "catalogue": files(self.catalog),
            "removed": [{k: plain(str(v)) for k, v in r.items() if k != "removed_at"} for r in read_removed(self.catalog)],
            "changes": logged,
            "pending": self.changes.pending(),
            "log files": sorted(plain(p.name) for p in (self.root / "changes").rglob("*") if p.is_file()),
        }


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, when: Callable[..., bool] | None = None) -> None:
    """Make ``owner.name`` raise on its first call (that ``when`` picks), as a crash there would stop the call."""
    real = getattr(owner, name)
    failed: list[bool] = []

    def step(*args: Any, **kwargs: Any) -> Any:
        if not failed and (when is None or when(*args, **kwargs)):
            failed.append(True)
            raise OSError(f"injected failure in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, step)


def styles_path(path: Path, *_: Any) -> bool:
    return path.name == STYLES_FILE


def new_photo(path: Path, *_: Any) -> bool:
    return path.parent.name == "images"


# Each step of a call, and a failure just before it: the steps before it are done, it and those after are not.
# Additions and removals end with the same three steps of the change log.
COMMIT_STEPS = {
    "commit the change": (ChangeLog, "commit", None),
    "move the log's HEAD (change written)": (ChangeLog, "_write_head", None),
    "drop the pending record (change committed)": (ChangeLog, "_drop_pending", None),
}
ADD_STEPS = {
    "record the intent": (ChangeLog, "begin", None),
    "write the online store": (update, "_write_stores", None),
    "edit the catalogue": (update, "edit_catalogue", None),
    "write the new photos (replaced lines and photos kept)": (catalog_files, "write_durably", new_photo),
    "replace styles.csv": (catalog_files, "write_durably", styles_path),
    "delete the replaced photos": (catalog_files, "_drop_old_photos", None),
    **COMMIT_STEPS,
}
REMOVE_STEPS = {
    "record the intent": (ChangeLog, "begin", None),
    "delete from the online store": (update, "_delete_from_stores", None),
    "edit the catalogue": (update, "edit_catalogue", None),
    "replace styles.csv (removed lines and photos kept)": (catalog_files, "write_durably", styles_path),
    "delete the removed photos": (catalog_files, "_drop_old_photos", None),
    **COMMIT_STEPS,
}


def retried_after_failure(
    uninterrupted: Callable[[], Any], interrupted: Callable[[], Any], step: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Any]:
    """The answer of an uninterrupted call, and that of a retry after the same call failed at ``step``."""
    answer = uninterrupted()
    owner, name, when = step
    with monkeypatch.context() as patch:
        fail_once(patch, owner, name, when)
        with pytest.raises(OSError, match="injected failure"):
            interrupted()
    return answer, interrupted()


@pytest.mark.parametrize("step", list(ADD_STEPS))
def test_an_addition_that_fails_before_any_step_is_finished_by_its_retry(
    step: str, world: Callable[[str], World], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, interrupted = world("uninterrupted"), world("interrupted")
    answer, retried = retried_after_failure(expected.add, interrupted.add, ADD_STEPS[step], monkeypatch)
    assert (retried.added, retried.quarantined, retried.model_versions) == (
        answer.added,
        answer.quarantined,
        answer.model_versions,
    )
    assert interrupted.state() == expected.state()


@pytest.mark.parametrize("step", list(REMOVE_STEPS))
def test_a_removal_that_fails_before_any_step_is_finished_by_its_retry(
    step: str, world: Callable[[str], World], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, interrupted = world("uninterrupted"), world("interrupted")
    answer, retried = retried_after_failure(expected.remove, interrupted.remove, REMOVE_STEPS[step], monkeypatch)
    assert (retried.removed, retried.unknown) == (answer.removed, answer.unknown) == ([123, 10002], [])
    assert interrupted.state() == expected.state()


def test_the_next_call_finishes_a_change_left_pending_before_making_its_own(
    world: Callable[[str], World], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, interrupted = world("uninterrupted"), world("interrupted")
    expected.add()
    expected.remove([10003])
    with monkeypatch.context() as patch:
        fail_once(patch, update, "edit_catalogue")
        with pytest.raises(OSError):
            interrupted.add()
    assert interrupted.changes.changes() == []  # pending: no consumer (a transformer's catch_up) sees it yet
    assert [p.change.action for p in interrupted.changes.pending()] == ["add"]
    interrupted.remove([10003])  # another request: the addition is finished first, and comes first in the log
    assert interrupted.state() == expected.state()
    assert [c.action for c in interrupted.changes.changes()] == ["add", "remove"]


def test_a_failure_writing_the_removed_journal_loses_no_line(
    world: Callable[[str], World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal of removed lines is written before styles.csv loses them (it was written after: a failure between
    the two lost the lines for good, and the retry found nothing left to record)."""
    expected, interrupted = world("uninterrupted"), world("interrupted")
    expected.remove()
    real_open = Path.open
    failed: list[bool] = []

    def journal_fails(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if path.name == REMOVED_FILE and mode.startswith("a") and not failed:
            failed.append(True)
            raise OSError("injected failure: disk full")
        return real_open(path, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "open", journal_fails)
        with pytest.raises(OSError, match="disk full"):
            interrupted.remove()
    interrupted.remove()
    lines = [r["line"] for r in read_removed(interrupted.catalog)]
    assert [line.split(",", 1)[0] for line in lines] == ["10002", ZERO_PADDED]
    assert interrupted.state() == expected.state()


def test_a_re_added_id_keeps_its_replaced_line_and_photo(world: Callable[[str], World]) -> None:
    edits = world("edits")
    old_line = next(line for line in (edits.catalog / STYLES_FILE).read_text().splitlines() if line.startswith(f"{READDED},"))
    old_photo = (edits.catalog / "images" / f"{READDED}.jpg").read_bytes()
    assert edits.add().added == [ADDED, READDED]
    [record] = read_removed(edits.catalog)
    assert (record["id"], record["reason"], record["line"]) == (str(READDED), "replaced", old_line)
    assert (edits.catalog / record["image"]).read_bytes() == old_photo
    assert (edits.catalog / "images" / f"{READDED}.jpg").read_bytes() == (
        edits.additions / "images" / f"{READDED}.jpg"
    ).read_bytes()
    rows = read_styles(edits.catalog / STYLES_FILE).rows
    assert list(rows.loc[rows["id"] == str(READDED), "productDisplayName"]) == ["Renamed, again"]  # once, the new one


def test_removing_an_id_again_keeps_every_photo_it_had(world: Callable[[str], World]) -> None:
    edits = world("edits")
    photos = [(edits.catalog / "images" / f"{READDED}.jpg").read_bytes()]
    edits.remove([READDED])
    edits.add()  # back, with another photo
    photos.append((edits.catalog / "images" / f"{READDED}.jpg").read_bytes())
    edits.remove([READDED])
    kept = [(edits.catalog / r["image"]).read_bytes() for r in read_removed(edits.catalog) if r["id"] == str(READDED)]
    assert kept == photos  # the first photo, removed; the second, added back and removed again
    assert len(list((edits.catalog / REMOVED_IMAGES_DIR).glob(f"{READDED}.*.jpg"))) == 2
    assert not (edits.catalog / "images" / f"{READDED}.jpg").exists()


def test_an_id_with_leading_zeros_is_the_same_product(world: Callable[[str], World]) -> None:
    edits = world("edits")
    assert edits.remove([123]).removed == [123]
    assert ZERO_PADDED not in set(read_styles(edits.catalog / STYLES_FILE).rows["id"])  # the next retrain leaves it out
    assert not (edits.catalog / "images" / f"{ZERO_PADDED}.jpg").exists()
    [record] = read_removed(edits.catalog)
    assert record["line"].startswith(f"{ZERO_PADDED},") and (edits.catalog / record["image"]).is_file()


def test_every_file_is_fsynced_before_its_rename_and_its_folder_after(
    world: Callable[[str], World], monkeypatch: pytest.MonkeyPatch
) -> None:
    edits = world("edits")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        events.append(("rename", f"{os.path.abspath(src)} {os.path.abspath(dst)}"))
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    edits.add()
    edits.remove()
    renames = [(n, target) for n, (kind, target) in enumerate(events) if kind == "rename"]
    written = {target.split()[1] for _, target in renames}
    assert {str(edits.catalog / STYLES_FILE), str(edits.catalog / "images" / f"{ADDED}.jpg")} <= written
    assert any(name.startswith(str(edits.catalog / REMOVED_IMAGES_DIR)) for name in written)
    assert any(name.startswith(str(edits.root / "changes" / "pending")) for name in written)
    for n, target in renames:
        staged, final = target.split()
        assert ("fsync", staged) in events[:n], f"{final} renamed before its data was fsynced"
        assert ("fsync", os.path.dirname(final)) in events[n + 1 :], f"{final}'s folder not fsynced after the rename"
    journal = str(edits.catalog / REMOVED_FILE)
    first_journal = events.index(("fsync", journal))
    styles = next(n for n, target in renames if target.endswith(f" {edits.catalog / STYLES_FILE}"))
    assert first_journal < styles  # the replaced line is on disk before styles.csv loses it


def test_the_journal_records_parse_after_a_line_cut_short(world: Callable[[str], World]) -> None:
    edits = world("edits")
    (edits.catalog / REMOVED_FILE).write_text('{"removed_at": "2026-01-01", "line": "1,cut sho')  # a crash mid-append
    edits.remove()
    assert [r["id"] for r in read_removed(edits.catalog)] == ["10002", "123"]
    assert json.loads((edits.catalog / REMOVED_FILE).read_text().splitlines()[1])["id"] == "10002"
