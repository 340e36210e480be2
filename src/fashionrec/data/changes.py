"""The catalogue change log: an append-only folder (local, or gs://, s3:// through fsspec) that every transformer
replica polls and applies to its live index, and that a new replica replays on start.

One JSON file per change, named so that names sort in the order the changes were made (the writer's clock: run
the writers where clocks are synchronised, as on any Kubernetes cluster):

    <changes_uri>/<unix nanoseconds>-<random>.json   {"action": "add" | "remove", "item_ids": [...], "created": ...,
                                                       "model_versions": [...]}   (versions encoded, for an add)
    <changes_uri>/<same name>.parquet                 for an add: the rows and vectors written to the online store
                                                       (the offline record of the addition, one row per version)

The vectors themselves are read from the online store (Feast), keyed by the transformer's own model version, so a
replica never adds a vector of another model. Replaying is idempotent: an add replaces, a remove of an absent item
is a no-op, and order decides between them.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fashionrec.storage import storage

Action = Literal["add", "remove"]
ACTIONS: tuple[str, ...] = ("add", "remove")
CHANGE_SUFFIX = ".json"
ROWS_SUFFIX = ".parquet"


@dataclass(frozen=True)
class Change:
    name: str  # sorts in the order of the changes
    action: Action
    item_ids: list[int]
    created: str
    model_versions: list[str] = field(default_factory=list)


class ChangeLog:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = storage(self.uri)  # a folder, gs://, s3:// or KFP's minio://

    def append(self, action: Action, item_ids: list[int], model_versions: list[str] | None = None,
               rows: bytes | None = None) -> Change:  # fmt: skip
        """Record a change (and, for an add, its rows as parquet bytes, written first); returns it."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        change = Change(name, action, [int(i) for i in item_ids], datetime.now(UTC).isoformat(), list(model_versions or []))
        self.fs.makedirs(self.root, exist_ok=True)
        if rows is not None:
            self.fs.pipe_file(f"{self.root}/{name}{ROWS_SUFFIX}", rows)
        # Written to a temporary name and renamed where the storage can: a poller never reads half a change.
        body = json.dumps({k: v for k, v in asdict(change).items() if k != "name"}).encode("utf-8")
        staged = f"{self.root}/.{name}{CHANGE_SUFFIX}.tmp"
        self.fs.pipe_file(staged, body)
        self.fs.mv(staged, f"{self.root}/{name}{CHANGE_SUFFIX}")
        return change

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
            raise ValueError(f"{self.uri}/{name}{CHANGE_SUFFIX} is not a catalogue change: {exc}") from exc
        if change.action not in ACTIONS or not all(isinstance(i, int) for i in change.item_ids):
            raise ValueError(f"{self.uri}/{name}{CHANGE_SUFFIX} is not a catalogue change: {body}")
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
