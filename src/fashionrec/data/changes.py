"""The catalogue change log: an append-only folder (local, or gs://, s3:// through fsspec) that every transformer
replica polls and applies to its live index, and that a new replica replays on start.

One JSON file per change, named so that names sort in the order the changes were made (the writer's clock: run
the writers where clocks are synchronised, as on any Kubernetes cluster):

    <changes_uri>/<unix nanoseconds>-<random>.json   {"action": "add" | "remove", "item_ids": [...], "created": ...,
                                                       "model_versions": [...]}   (versions encoded, for an add)
    <changes_uri>/<same name>.parquet                 for an add: the rows and vectors written to the online store
                                                       (the offline record of the addition, one row per version)
    <changes_uri>/pending/<same name>.json            a change begun and not yet made (``begin``): no consumer reads
                                                       it; ``commit`` adds the change above and deletes it

The vectors themselves are read from the online store (Feast), keyed by the transformer's own model version, so a
replica never adds a vector of another model. Replaying is idempotent: an add replaces, a remove of an absent item
is a no-op, and order decides between them. A writer records its intent (``begin``) before it touches a store, and
commits once the change is made; one that failed between the two leaves a pending record, which the next writer
finishes (``pending``) before anything else. Local files are fsynced before their rename.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fashionrec.data.catalog import write_durably
from fashionrec.storage import redact_urls, storage

Action = Literal["add", "remove"]
ACTIONS: tuple[str, ...] = ("add", "remove")
CHANGE_SUFFIX = ".json"
ROWS_SUFFIX = ".parquet"
PENDING_DIR = "pending"  # under the log: changes begun and not committed yet


@dataclass(frozen=True)
class Change:
    name: str  # sorts in the order of the changes
    action: Action
    item_ids: list[int]
    created: str
    model_versions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PendingChange:
    """A change begun and not committed: its writer failed, or is still at it."""

    change: Change
    detail: dict[str, Any]  # what its writer needs to finish it; the log does not read it
    committed: bool = False  # in the log already: only its pending record is left (a failure inside ``commit``)


class ChangeLog:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = storage(self.uri)  # a folder, gs://, s3:// or KFP's minio://
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        self.local = "file" in protocols

    def append(self, action: Action, item_ids: list[int], model_versions: list[str] | None = None,
               rows: bytes | None = None) -> Change:  # fmt: skip
        """Record a change already made (and, for an add, its rows as parquet bytes, written first); returns it."""
        change = self.begin(action, item_ids, model_versions, rows).change
        self.commit(change)
        return change

    def begin(self, action: Action, item_ids: list[int], model_versions: list[str] | None = None,
              rows: bytes | None = None, detail: dict[str, Any] | None = None) -> PendingChange:  # fmt: skip
        """Record the intent of a change before making it: its rows (for an add) and a pending record holding
        ``detail`` (JSON), which no consumer reads. ``commit`` it once made; ``pending`` finds it if it never was."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        change = Change(name, action, [int(i) for i in item_ids], datetime.now(UTC).isoformat(), list(model_versions or []))
        pending = PendingChange(change, dict(detail or {}))
        if rows is not None:
            self._put(f"{self.root}/{name}{ROWS_SUFFIX}", rows)
        body = {"change": _body(change), "detail": pending.detail}
        self._put(f"{self.root}/{PENDING_DIR}/{name}{CHANGE_SUFFIX}", json.dumps(body).encode("utf-8"))
        return pending

    def commit(self, change: Change) -> None:
        """Put a begun change in the log for its consumers (unless it is there already), then drop its pending record."""
        final = f"{self.root}/{change.name}{CHANGE_SUFFIX}"
        if not self.fs.exists(final):
            self._put(final, json.dumps(_body(change)).encode("utf-8"))
        self._drop_pending(change.name)

    def pending(self) -> list[PendingChange]:
        """The changes begun and never committed, oldest first: their writer failed before finishing them."""
        folder = f"{self.root}/{PENDING_DIR}"
        self.fs.invalidate_cache(folder)
        if not self.fs.exists(folder):
            return []
        found = []
        for path in sorted(str(p) for p in self.fs.ls(folder, detail=False)):
            file = path.rsplit("/", 1)[-1]
            if not file.endswith(CHANGE_SUFFIX) or file.startswith("."):
                continue
            name = file.removesuffix(CHANGE_SUFFIX)
            body = json.loads(self.fs.cat_file(path))
            change = Change(name=name, **body["change"])
            found.append(PendingChange(change, body["detail"], self.fs.exists(f"{self.root}/{name}{CHANGE_SUFFIX}")))
        return found

    def _drop_pending(self, name: str) -> None:
        self.fs.rm(f"{self.root}/{PENDING_DIR}/{name}{CHANGE_SUFFIX}")

    def _put(self, path: str, body: bytes) -> None:
        """Write one file whole: on local disk fsynced and renamed (it is the record a retry relies on), elsewhere
        staged and moved where the storage can. A poller never reads half a change."""
        if self.local:
            write_durably(Path(path), body)
            return
        folder, file = path.rsplit("/", 1)
        self.fs.makedirs(folder, exist_ok=True)
        staged = f"{folder}/.{file}.tmp"
        self.fs.pipe_file(staged, body)
        self.fs.mv(staged, path)

    def names(self) -> list[str]:
        self.fs.invalidate_cache(self.root)  # s3fs and gcsfs cache listings for good: a poller would never see more
        if not self.fs.exists(self.root):
            return []
        files = [str(path).rsplit("/", 1)[-1] for path in self.fs.ls(self.root, detail=False)]
        return sorted(f.removesuffix(CHANGE_SUFFIX) for f in files if f.endswith(CHANGE_SUFFIX) and not f.startswith("."))

    def read(self, name: str) -> Change:
        """One change; ValueError if its file is not a change (hand-edited, another tool's)."""
        try:
            body: dict[str, Any] = json.loads(self.fs.cat_file(f"{self.root}/{name}{CHANGE_SUFFIX}"))
            change = Change(name=name, **body)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{redact_urls(self.uri)}/{name}{CHANGE_SUFFIX} is not a catalogue change: {exc}") from exc
        if change.action not in ACTIONS or not all(isinstance(i, int) for i in change.item_ids):
            raise ValueError(f"{redact_urls(self.uri)}/{name}{CHANGE_SUFFIX} is not a catalogue change: {body}")
        return change

    def changes(self, skip: set[str] | frozenset[str] = frozenset(), bad: set[str] | None = None) -> list[Change]:
        """Every change not in ``skip``, oldest first. A file that is not a change is left out (and its name added to
        ``bad`` when given) instead of blocking every change after it."""
        found = []
        for name in self.names():
            if name in skip:
                continue
            try:
                found.append(self.read(name))
            except ValueError:
                if bad is None:
                    raise
                bad.add(name)
        return found

    def rows_uri(self, change: Change) -> str:
        """Path of an add's rows in ``fs``."""
        return f"{self.root}/{change.name}{ROWS_SUFFIX}"


def _body(change: Change) -> dict[str, Any]:
    return {k: v for k, v in asdict(change).items() if k != "name"}


def added_since(log: ChangeLog, since: str) -> set[int]:
    """Products added to the catalogue after ``since`` (ISO time, e.g. a release's) and not removed again: the
    catalogue growth a model published then has never seen."""
    cutoff = _utc(since)
    added: set[int] = set()
    for change in log.changes():
        if _utc(change.created) <= cutoff:
            continue
        if change.action == "add":
            added.update(change.item_ids)
        else:
            added.difference_update(change.item_ids)
    return added


def _utc(text: str) -> datetime:
    """An ISO time; one without a zone (a date, say) is taken as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
