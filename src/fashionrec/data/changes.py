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
    <changes_uri>/HEAD                                 rewritten (whole) after every commit and compaction
    <changes_uri>/compacted/<unix ns>-<random>.json   {"changes": [...]}: the changes ``compact`` folded that are still
                                                       the last change of some product, with their names, oldest first

A poll costs what changed, not the size of the log: a reader reads HEAD and lists the folder only when HEAD differs
from what it read before (a log written before HEAD existed is listed every time, until its next commit). HEAD is
written after the change file, and read before the listing, so a commit a listing missed moves HEAD again for the
next poll. ``compact`` (``fashionrec catalog compact``; the cluster's update_catalog step runs it after each batch)
folds the changes older than a retention into the compacted state and deletes their files: the state is what every
consumer derives (the last change of each product: ``latest_changes``, replay, ``added_since``, a new replica's
catch-up), and a folded change keeps its name, so a replica that applied it skips it as before, and one that did not
gets it. Only the rows of additions that are no product's last change any more are deleted.

The vectors themselves are read from the online store (Feast), keyed by the transformer's own model version, so a
replica never adds a vector of another model. Replaying is idempotent: an add replaces, a remove of an absent item
is a no-op, and order decides between them. A writer records its intent (``begin``) before it touches a store, and
commits once the change is made; one that failed between the two leaves a pending record, which the next writer
finishes (``pending``) before anything else. Local files are fsynced before their rename.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from fashionrec.data.catalog import write_durably
from fashionrec.storage import redact_urls, storage

Action = Literal["add", "remove"]
ACTIONS: tuple[str, ...] = ("add", "remove")
CHANGE_SUFFIX = ".json"
ROWS_SUFFIX = ".parquet"
PENDING_DIR = "pending"  # under the log: changes begun and not committed yet
HEAD_FILE = "HEAD"  # under the log: no suffix, so no reader takes it for a change
COMPACTED_DIR = "compacted"  # under the log: the compacted states, the newest one current
# Changes younger than this keep their own files: the recent history stays readable change by change.
COMPACT_AFTER = timedelta(days=7)


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


@dataclass(frozen=True)
class _Listing:
    """What one listing of the log found, under the HEAD read just before it (None: the log has none)."""

    head: bytes | None
    files: frozenset[str]  # the changes with a file of their own
    compacted: str | None  # the current compacted state's file
    state: dict[str, Change]  # its changes, by name

    @property
    def names(self) -> list[str]:
        return sorted(self.files | self.state.keys())


class ChangeLog:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = storage(self.uri)  # a folder, gs://, s3:// or KFP's minio://
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        self.local = "file" in protocols
        self._known: _Listing | None = None  # the last listing: reused while HEAD has not moved

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
        self._write_head(change.name)  # a retry moves it too: the try that wrote the change may have failed before
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

    def _write_head(self, after: str) -> None:
        """Move HEAD: every reader lists the log at its next poll. Each write differs (a random part), so that a
        retry that writes the name of an older change still reads as a move."""
        body = {"after": after, "write": f"{time.time_ns():020d}-{secrets.token_hex(4)}"}
        self._put(f"{self.root}/{HEAD_FILE}", json.dumps(body).encode("utf-8"))

    def _head(self) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(f"{self.root}/{HEAD_FILE}"))
        except FileNotFoundError:
            return None

    def _listing(self, fresh: bool = False) -> _Listing:
        """The log's changes: the last listing while HEAD has not moved since it (one small read), a new one
        otherwise (``fresh``: in any case)."""
        head = self._head()  # before the listing: a commit that the listing misses moves HEAD after this read
        known = self._known
        if not fresh and head is not None and known is not None and known.head == head:
            return known
        try:
            listing = self._list(head, known)
        except FileNotFoundError:  # a compaction deleted what the listing named: list again
            listing = self._list(head, known)
        self._known = listing
        return listing

    def _list(self, head: bytes | None, known: _Listing | None) -> _Listing:
        self.fs.invalidate_cache(self.root)  # s3fs and gcsfs cache listings for good: a poller would never see more
        if not self.fs.exists(self.root):
            return _Listing(head, frozenset(), None, {})
        entries = [str(path).rsplit("/", 1)[-1] for path in self.fs.ls(self.root, detail=False)]
        files = frozenset(f.removesuffix(CHANGE_SUFFIX) for f in entries if _is_json(f))
        states = self._states() if COMPACTED_DIR in entries else []
        if not states:
            return _Listing(head, files, None, {})
        compacted = states[-1]
        if known is not None and known.compacted == compacted:
            return _Listing(head, files, compacted, known.state)  # each state's file is written once, never changed
        body = json.loads(self.fs.cat_file(f"{self.root}/{COMPACTED_DIR}/{compacted}"))
        state = {str(entry["name"]): Change(**entry) for entry in body["changes"]}
        return _Listing(head, files, compacted, state)

    def _states(self) -> list[str]:
        """The compacted states' files, oldest first (the last is current; an older one is left by a compaction that
        was cut short)."""
        folder = f"{self.root}/{COMPACTED_DIR}"
        self.fs.invalidate_cache(folder)
        if not self.fs.exists(folder):
            return []
        return sorted(f for f in (str(p).rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)) if _is_json(f))

    def names(self) -> list[str]:
        """Every change's name, oldest first (those folded into the compacted state included)."""
        return self._listing().names

    def read(self, name: str) -> Change:
        """One change; ValueError if its file is not a change (hand-edited, another tool's)."""
        path = f"{self.root}/{name}{CHANGE_SUFFIX}"
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            folded = self._listing(fresh=True).state.get(name)  # compacted since it was listed
            if folded is None:
                raise
            return folded
        try:
            body: dict[str, Any] = json.loads(raw)
            change = Change(name=name, **body)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{redact_urls(self.uri)}/{name}{CHANGE_SUFFIX} is not a catalogue change: {exc}") from exc
        if change.action not in ACTIONS or not all(isinstance(i, int) for i in change.item_ids):
            raise ValueError(f"{redact_urls(self.uri)}/{name}{CHANGE_SUFFIX} is not a catalogue change: {body}")
        return change

    def changes(self, skip: set[str] | frozenset[str] = frozenset(), bad: set[str] | None = None) -> list[Change]:
        """Every change not in ``skip``, oldest first. A file that is not a change is left out (and its name added to
        ``bad`` when given) instead of blocking every change after it. While HEAD has not moved this reads HEAD
        only, and the files of the changes not in ``skip``."""
        try:
            return self._changes(self._listing(), skip, bad)
        except FileNotFoundError:  # a change listed before a compaction folded it away: the state has what is left
            return self._changes(self._listing(fresh=True), skip, bad)

    def _changes(self, listing: _Listing, skip: set[str] | frozenset[str], bad: set[str] | None) -> list[Change]:
        found = []
        for name in listing.names:
            if name in skip:
                continue
            folded = listing.state.get(name)
            if folded is not None:
                found.append(folded)
                continue
            try:
                found.append(self.read(name))
            except ValueError:
                if bad is None:
                    raise
                bad.add(name)
        return found

    def compact(self, older_than: timedelta = COMPACT_AFTER, now: datetime | None = None) -> int:
        """Fold the committed changes made more than ``older_than`` before ``now`` into the compacted state and
        delete their files; returns how many it folded. The state keeps, oldest first and under their names, the
        changes that are still the last change of some product: what every consumer derives from the log stays the
        same, a replica that applied a folded change skips it as before, and a new one applies the state. The rows
        of an addition that is no product's last change any more are deleted; those of the others stay. A file that
        is not a change is left where it is, and so is a change whose pending record is (its writer finishes it by
        the file). Run one compaction at a time."""
        listing = self._listing(fresh=True)
        # After the listing: a change listed with no pending record left had it dropped, and needs no finishing.
        unfinished = {pending.change.name for pending in self.pending()}
        cutoff = (now or datetime.now(UTC)) - older_than
        folding = []
        for name in sorted(listing.files - unfinished):
            try:
                change = self.read(name)
            except ValueError:
                continue  # not a change: a person looks at it (every reader reports it)
            if _utc(change.created) <= cutoff:
                folding.append(change)
        if not folding:
            return 0
        merged = {**listing.state, **{change.name: change for change in folding}}
        ordered = [merged[name] for name in sorted(merged)]
        last: dict[int, str] = {}
        for change in ordered:
            last.update(dict.fromkeys(change.item_ids, change.name))
        kept = set(last.values())
        state = f"{time.time_ns():020d}-{secrets.token_hex(4)}{CHANGE_SUFFIX}"
        body = {"compacted": datetime.now(UTC).isoformat(), "changes": [asdict(c) for c in ordered if c.name in kept]}
        # The state first: until the files go, a reader finds each folded change in both, and takes it once.
        self._put(f"{self.root}/{COMPACTED_DIR}/{state}", json.dumps(body).encode("utf-8"))
        for change in folding:
            self._remove(f"{self.root}/{change.name}{CHANGE_SUFFIX}")
        for change in ordered:
            if change.name not in kept and change.action == "add":
                self._remove(self.rows_uri(change))
        for older in self._states():
            if older < state:
                self._remove(f"{self.root}/{COMPACTED_DIR}/{older}")
        self._write_head(f"{COMPACTED_DIR}/{state}")
        return len(folding)

    def _remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # gone already: a compaction cut short and run again
            self.fs.rm(path)

    def rows_uri(self, change: Change) -> str:
        """Path of an add's rows in ``fs``."""
        return f"{self.root}/{change.name}{ROWS_SUFFIX}"


def _body(change: Change) -> dict[str, Any]:
    return {k: v for k, v in asdict(change).items() if k != "name"}


def _is_json(file: str) -> bool:
    """A change's (or a state's) file name, not a staged one."""
    return file.endswith(CHANGE_SUFFIX) and not file.startswith(".")


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
