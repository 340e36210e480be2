"""Add and remove products live: validate, encode with every served encoder, write the online store, record the
change (fashionrec.data.changes) that every transformer applies to its live index, and keep the catalogue that
the next full retrain reads in step.

An addition is validated by the same Great Expectations suite as a pipeline run (invalid rows are quarantined and
reported, never dropped; an addition batch has no valid-fraction floor). Each valid image is encoded by the
predictor's encoder of every model version being served (production, and a canary during a rollout): the vectors
carry their version, which is their key in the online store, and an encoder answering with another version is
refused. A removal deletes the product's attributes and vectors of every version.

Every change is made in an order that a retry can always finish: first its intent goes into the change log as a
pending record (for an add with its rows, vectors and photos), then the online stores are written and the
catalogue edited (both idempotent), then the change is committed to the log, where consumers see it. A call that
fails in between leaves the pending record; the next call finishes it before anything else (a retry of the same
request returns that change instead of making it twice). The catalogue folder gains the added rows and images (the
pipeline's source of truth for the next retrain); every line taken out or replaced goes to ``removed.jsonl`` beside
``styles.csv`` (with when and why), its photo to ``removed_images/`` (fashionrec.data.catalog.edit_catalogue).
Every other line of styles.csv stays byte for byte as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fashionrec.config import ATTRIBUTE_COLUMNS, FEAST_JOIN_KEY, SNAPSHOT_FEATURE_REPO_DIR
from fashionrec.data.catalog import IMAGES_DIR, STYLES_FILE, edit_catalogue, normal_id, styles_lines
from fashionrec.data.changes import Change, ChangeLog, PendingChange
from fashionrec.data.validation.checks import ValidationSettings
from fashionrec.data.validation.quarantine import validate_catalog
from fashionrec.data.validation.report import output_paths, write_outputs
from fashionrec.retrieval.embeddings import read_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import OnlineFeatures, is_shared, open_store
from fashionrec.retrieval.online_rows import delete_items, write_items
from fashionrec.serving.predictor_client import PredictorClient, make_predictor
from fashionrec.serving.release import fetch_serving

if TYPE_CHECKING:
    from feast import FeatureStore

ENCODE_BATCH = 16  # images per predictor request


class CatalogUpdateError(RuntimeError):
    """The change could not be made; nothing was recorded in the change log."""


@dataclass(frozen=True)
class ServedVersion:
    """A model version being served and the Feast repo whose online store its transformer reads."""

    model_version: str
    feature_repo: Path


@dataclass(frozen=True)
class AddResult:
    added: list[int]
    quarantined: int
    model_versions: list[str]
    change: Change | None  # None when no row was valid


@dataclass(frozen=True)
class RemoveResult:
    removed: list[int]  # ids that had rows in an online store
    unknown: list[int]
    change: Change


def stage_additions(images: Path, styles: Path, out_dir: Path) -> Path:
    """A catalogue folder (styles.csv + images/) of the new products, so the pipeline's validation reads it as is."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(styles, out_dir / STYLES_FILE)
    (out_dir / IMAGES_DIR).symlink_to(images.resolve(), target_is_directory=True)
    return out_dir


async def encode(images: list[bytes], model_version: str, predictor: PredictorClient) -> np.ndarray:
    """Embeddings of the images by the predictor's encoder of ``model_version``, refusing any other version."""
    batches = []
    for start in range(0, len(images), ENCODE_BATCH):
        embeddings = await predictor.embed(images[start : start + ENCODE_BATCH], None, f"catalog-add-{start}", model_version)
        if str(embeddings.model_version) != model_version:
            raise CatalogUpdateError(f"asked the encoder of {model_version}, got vectors of {embeddings.model_version}")
        batches.append(np.asarray(embeddings.vectors, dtype=np.float32))
    return np.concatenate(batches)


def _rows_table(valid: pd.DataFrame, model_version: str, change_digest: str) -> pd.DataFrame:
    rows = pd.DataFrame(
        {FEAST_JOIN_KEY: valid["id"].astype("int64").to_numpy(), "event_timestamp": pd.Timestamp.now(tz="UTC").floor("ms")}
    )
    for column in ATTRIBUTE_COLUMNS:
        rows[column] = valid[column].astype(str).to_numpy()
    rows["model_version"] = model_version
    rows["dataset_digest"] = change_digest
    return rows


def add_items(
    additions: Path,
    served: list[ServedVersion],
    predictor: PredictorClient,
    changes: ChangeLog,
    catalog_dir: Path | None,
    report_dir: Path,
) -> AddResult:
    """Validate ``additions`` (a catalogue folder), encode the valid rows with every served version, then record the
    change as pending, write each version's online store, extend the catalogue and commit the change; returns what
    was added. Changes left pending by a failed call are finished first (this very addition included: a retry)."""

    if not served:
        raise CatalogUpdateError("no served model version to encode the new products with: is anything being served?")
    result = validate_catalog(additions, ValidationSettings(min_valid_fraction=0.0, workers=1))
    write_outputs(result, additions, output_paths(report_dir))
    valid = result.valid
    images = list(valid["image"])
    ids = [int(i) for i in valid["id"]]
    versions = sorted({s.model_version for s in served})
    lines = styles_lines(valid)
    request = _request("add", ids, versions, lines, images)
    retried = finish_pending(changes, served).get(request)
    if retried is not None:  # a failed call of this same addition began it: the retry's answer is that change
        return AddResult(retried.change.item_ids, len(result.quarantine), retried.change.model_versions, retried.change)
    if valid.empty:
        return AddResult([], len(result.quarantine), [], None)
    digest = "catalog-add:" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    vectors = {version: asyncio.run(_encode_closing(images, version, predictor)) for version in versions}
    tables = {version: _rows_table(valid, version, digest) for version in versions}
    with tempfile.TemporaryDirectory() as tmp:
        offline = Path(tmp) / "rows.parquet"
        # The photos travel with the record: a version rolled out later encodes them from here (reencode_additions),
        # and a retry of a failed call writes the stores and the catalogue from it.
        rows = pd.concat([t.assign(image=images) for t in tables.values()], ignore_index=True)
        write_embeddings(rows, np.concatenate([vectors[v] for v in versions]), offline)
        record = offline.read_bytes()
    pending = changes.begin("add", ids, versions, rows=record, detail=_detail(request, catalog_dir, lines=lines))
    change = _complete(changes, pending, served)
    return AddResult(ids, len(result.quarantine), versions, change)


async def _encode_closing(images: list[bytes], version: str, predictor: PredictorClient) -> np.ndarray:
    try:
        return await encode(images, version, predictor)
    finally:
        await predictor.close()  # its connection pool belongs to this event loop


def remove_items(item_ids: list[int], served: list[ServedVersion], changes: ChangeLog, catalog_dir: Path | None) -> RemoveResult:
    """Record the removal as pending, delete the products' attributes and vectors (every version) from each served
    online store, move their rows out of the catalogue, then commit the change; returns which ids had rows. Changes
    left pending by a failed call are finished first (this very removal included: a retry)."""

    if not item_ids:
        raise CatalogUpdateError("no item ids to remove")
    wanted = sorted({int(i) for i in item_ids})
    request = _request("remove", wanted)
    pending = finish_pending(changes, served).get(request)
    if pending is None:
        had_rows: set[int] = set()
        for target in served:
            had_rows |= set(OnlineFeatures(target.feature_repo).present(wanted))
        detail = _detail(request, catalog_dir, present=sorted(had_rows))
        pending = changes.begin("remove", wanted, detail=detail)
        _complete(changes, pending, served)
    present = set(pending.detail["present"])  # as found before the first try deleted anything
    return RemoveResult(sorted(present), sorted(set(wanted) - present), pending.change)


def finish_pending(changes: ChangeLog, served: list[ServedVersion]) -> dict[str, PendingChange]:
    """Finish the changes that failed calls began, oldest first: the stores and the catalogue they name get what an
    uninterrupted call would have written (served versions the change was encoded for), then each is committed.
    Returns them by the request that began them."""
    finished = {}
    for pending in changes.pending():
        _complete(changes, pending, served)
        finished[str(pending.detail.get("request"))] = pending
    return finished


def _complete(changes: ChangeLog, pending: PendingChange, served: list[ServedVersion]) -> Change:
    """Make a begun change (every step idempotent, so a second try after a failure anywhere ends the same), then
    commit it."""
    change, detail = pending.change, pending.detail
    if not pending.committed:
        catalog = Path(detail["catalog"]) if detail.get("catalog") else None
        if change.action == "add":
            with changes.fs.open(changes.rows_uri(change), "rb") as handle:
                table, vectors = read_embeddings(handle)
            _write_stores(served, table, vectors)
            if catalog is not None:
                photos = table.drop_duplicates(FEAST_JOIN_KEY)
                images = {normal_id(i): bytes(b) for i, b in zip(photos[FEAST_JOIN_KEY], photos["image"], strict=True)}
                edit_catalogue(catalog, change.name, lines=detail["lines"], images=images)
        else:
            _delete_from_stores(served, change.item_ids)
            if catalog is not None:
                edit_catalogue(catalog, change.name, drop_ids=change.item_ids)
    changes.commit(change)
    return change


def _write_stores(served: list[ServedVersion], table: pd.DataFrame, vectors: np.ndarray) -> None:
    """Each served version's rows and vectors of a recorded addition into its online store. With a shared store
    (Redis) several targets are one store: the writes are idempotent."""
    rows = table.drop(columns=["image"])
    for target in served:
        mine = (rows["model_version"] == target.model_version).to_numpy()
        if mine.any():
            write_items(open_store(target.feature_repo), rows[mine].reset_index(drop=True), vectors[mine])


def _delete_from_stores(served: list[ServedVersion], item_ids: list[int]) -> None:
    for target in served:
        delete_items(open_store(target.feature_repo), item_ids)


def _request(action: str, item_ids: list[int], versions: list[str] | None = None, lines: list[str] | None = None,
             images: list[bytes] | None = None) -> str:  # fmt: skip
    """What identifies a call's change, so that its retry finds the one a failed try began."""
    photos = [hashlib.sha256(image).hexdigest() for image in images or []]
    return hashlib.sha256(json.dumps([action, item_ids, versions or [], lines or [], photos]).encode()).hexdigest()


def _detail(request: str, catalog_dir: Path | None, **more: Any) -> dict[str, Any]:
    """A pending change's record of the call: its request, and the catalogue it edits (absolute: a retry may run
    elsewhere)."""
    return {"request": request, "catalog": str(catalog_dir.absolute()) if catalog_dir is not None else None, **more}


def latest_changes(changes: ChangeLog) -> dict[int, Change]:
    """The last change of every product the log names: the catalogue's state as the log tells it."""
    latest: dict[int, Change] = {}
    for change in changes.changes():
        latest.update(dict.fromkeys(change.item_ids, change))
    return latest


def _added_rows(changes: ChangeLog, added: dict[int, Change], items: list[int]) -> pd.DataFrame:
    """The recorded rows (every encoded version, with the photos) of ``items``, from the change that last added each."""

    tables = []
    for change in {added[item].name: added[item] for item in items}.values():
        with changes.fs.open(changes.rows_uri(change), "rb") as handle:
            table, vectors = read_embeddings(handle)
        table["embedding"] = list(vectors)
        tables.append(table[table["item_id"].isin([i for i in items if added[i].name == change.name])])
    return pd.concat(tables, ignore_index=True)


def reencode_additions(changes: ChangeLog, target: ServedVersion, predictor: PredictorClient) -> int:
    """Encode with ``target``'s version the products added through the change log (and not removed since) that its
    online store has no vector of: additions made after its training run read the catalogue. The rollout calls this
    once the predictor serves the new version and before its transformer loads. Returns how many it encoded."""

    added = {item: change for item, change in latest_changes(changes).items() if change.action == "add"}
    if not added:
        return 0
    known = OnlineFeatures(target.feature_repo).embeddings(sorted(added), target.model_version)
    missing = [item for item, vector in zip(sorted(added), known, strict=True) if vector is None]
    if not missing:
        return 0
    rows = _added_rows(changes, added, missing).drop_duplicates("item_id", keep="last")
    images = [bytes(image) for image in rows["image"]]
    table = rows.drop(columns=["image", "embedding"]).assign(model_version=target.model_version)
    vectors = asyncio.run(_encode_closing(images, target.model_version, predictor))
    write_items(open_store(target.feature_repo), table, vectors)
    return len(table)


def replay_changes(changes: ChangeLog, model_version: str) -> Callable[[FeatureStore], None]:
    """What runs after a release's offline source was materialized again (a rollback to a retired version): the
    catalogue changes since win. Removed products are deleted again; added ones get their recorded attributes back,
    and this version's vectors where the change has them (reencode_additions encodes the others)."""

    def replay(store: FeatureStore) -> None:

        latest = latest_changes(changes)
        removed = [item for item, change in latest.items() if change.action == "remove"]
        if removed:
            delete_items(store, removed)
        added = {item: change for item, change in latest.items() if change.action == "add"}
        if not added:
            return
        rows = _added_rows(changes, added, sorted(added))
        mine = rows[rows["model_version"] == model_version]
        if len(mine):
            write_items(store, mine.drop(columns=["image", "embedding"]), np.stack(mine["embedding"].to_list()))
        others = rows[~rows["item_id"].isin(mine["item_id"])].drop_duplicates("item_id", keep="last")
        write_items(store, others.drop(columns=["image", "embedding"]), None)  # attributes only

    return replay


def fetch_feature_repo(releases_uri: str, model_version: str, out_dir: Path) -> Path:
    """The Feast repo of a published release, copied from the releases' storage into ``out_dir``."""

    try:
        return fetch_serving(releases_uri, model_version, SNAPSHOT_FEATURE_REPO_DIR, out_dir)
    except FileNotFoundError as exc:
        raise CatalogUpdateError(str(exc)) from exc


def run_catalog_update(
    additions: Path | None,
    remove_ids: list[int],
    releases_uri: str,
    model_versions: list[str],
    predictor_host: str,
    changes_uri: str,
    catalog_dir: Path | None,
    report_dir: Path,
) -> dict[str, float]:
    """The update_catalog component's body: a batch of additions and removals on a cluster, against the shared
    online store that the served releases' Feast repos name, then a compaction of the change log. Returns its
    counts."""

    if not model_versions:
        raise CatalogUpdateError("name the model versions being served (model_versions)")
    with tempfile.TemporaryDirectory(prefix="fashionrec-catalog-") as tmp:
        served = [ServedVersion(v, fetch_feature_repo(releases_uri, v, Path(tmp) / v)) for v in model_versions]
        for target in served:
            if not is_shared(open_store(target.feature_repo)):
                raise CatalogUpdateError(
                    f"the release of {target.model_version} keeps its online store in its own sqlite file: live catalogue "
                    "updates on a cluster need the shared one (run the pipeline with online_store=redis://...)"
                )
        changes = ChangeLog(changes_uri)
        counts = {"added": 0.0, "quarantined": 0.0, "removed": 0.0}
        if additions is not None and (additions / STYLES_FILE).exists():
            result = add_items(additions, served, make_predictor("v2", predictor_host), changes, catalog_dir, report_dir)
            counts |= {"added": float(len(result.added)), "quarantined": float(result.quarantined)}
        if remove_ids:
            counts["removed"] = float(len(remove_items(remove_ids, served, changes, catalog_dir).removed))
    changes.compact()  # past the log's retention: it grows with the products changed, not with every edit
    return counts
