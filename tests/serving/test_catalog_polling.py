"""A transformer replica's catch-up (ServingSnapshot.catch_up, as its poller calls it every couple of seconds) against
the change log: a poll costs what changed, and a compaction of the log neither replays nor loses a change."""

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from fashionrec.config import ATTRIBUTE_COLUMNS
from fashionrec.data.changes import Change, ChangeLog
from fashionrec.retrieval.attributes import ItemAttributes, ItemFilter
from fashionrec.retrieval.index import ItemIndex
from fashionrec.serving.metrics import transformer_metrics
from fashionrec.serving.transformer import ServingSnapshot


@dataclass
class Replica:
    """What catch_up needs of a snapshot; ``apply`` records instead of touching an index."""

    model_version: str = "v1"
    applied: set[str] = field(default_factory=set)
    calls: list[Change] = field(default_factory=list)
    index: set[int] = field(default_factory=set)

    def apply(self, change: Change) -> None:
        self.calls.append(change)
        (self.index.update if change.action == "add" else self.index.difference_update)(change.item_ids)
        self.applied.add(change.name)

    def catch_up(self, log: ChangeLog) -> int:
        return ServingSnapshot.catch_up(cast(ServingSnapshot, self), log)


def edit(log: ChangeLog, start: int, count: int) -> list[Change]:
    """``count`` changes: additions of new products, and removals of some of them."""
    made = []
    for n in range(start, start + count):
        made.append(log.append("remove", [n - 3]) if n % 4 == 3 else log.append("add", [n], ["v1"], rows=b"rows"))
    return made


def test_an_idle_poll_reads_one_small_file_and_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = ChangeLog(str(tmp_path / "changes"))
    edit(writer, 0, 40)
    log, replica = ChangeLog(str(tmp_path / "changes")), Replica()
    assert replica.catch_up(log) == 40
    listed: list[str] = []
    real_ls = log.fs.ls

    def ls(path: str, *args: Any, **kwargs: Any) -> Any:
        listed.append(str(path))
        return real_ls(path, *args, **kwargs)

    monkeypatch.setattr(log.fs, "ls", ls)
    assert [replica.catch_up(log) for _ in range(5)] == [0] * 5 and listed == []
    edit(writer, 40, 1)
    assert replica.catch_up(log) == 1 and len(listed) == 1  # HEAD moved: one listing
    assert len(replica.calls) == len({c.name for c in replica.calls}) == 41  # each change applied once


def test_replicas_before_and_after_a_compaction_apply_each_change_once_and_agree(tmp_path: Path) -> None:
    writer = ChangeLog(str(tmp_path / "changes"))
    made = edit(writer, 0, 24)
    ahead, behind = Replica(), Replica()
    ahead_log, behind_log = ChangeLog(str(tmp_path / "changes")), ChangeLog(str(tmp_path / "changes"))
    ahead.catch_up(ahead_log)  # every change applied
    for change in made[:10]:  # a replica that had applied only the first ten when the log was compacted
        behind.apply(change)
    assert writer.compact(older_than=timedelta(0)) == len(made)
    assert ahead.catch_up(ahead_log) == 0  # nothing applied again
    later = edit(writer, 24, 6)
    assert ahead.catch_up(ahead_log) == len(later) and ahead.calls[-len(later) :] == later
    behind.catch_up(behind_log)
    new = Replica()  # started after the compaction: the compacted state, then the changes since
    new.catch_up(ChangeLog(str(tmp_path / "changes")))
    everything = Replica()
    for change in [*made, *later]:
        everything.apply(change)
    for replica in (ahead, behind, new):
        assert replica.index == everything.index
        assert len(replica.calls) == len({c.name for c in replica.calls})  # none applied twice
    assert {c.name for c in behind.calls} >= {c.name for c in later}


@dataclass
class Store:
    """The online store as a snapshot reads it: vectors of one version that appear when they are written."""

    vectors: dict[int, np.ndarray] = field(default_factory=dict)

    def embeddings(self, items: list[int], model_version: str) -> list[np.ndarray | None]:
        return [self.vectors.get(item) for item in items]

    def attributes(self, items: list[int]) -> dict[str, list[str | None]]:
        """Odd products are women's, even ones men's."""
        rows: dict[str, list[str | None]] = {c: ["x"] * len(items) for c in ATTRIBUTE_COLUMNS}
        return rows | {"gender": ["Women" if item % 2 else "Men" for item in items]}


def test_an_addition_without_a_vector_is_retried_until_it_lands_and_never_after_a_removal(tmp_path: Path) -> None:
    """Products added for another version only: the index misses them, says so, and takes each one the poll after
    its vector is written (reencode_additions); a product removed meanwhile never comes back."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = Store({0: vectors[0]})
    built = ItemAttributes.of_table(pd.DataFrame({"item_id": [0], **{c: ["Men"] for c in ATTRIBUTE_COLUMNS}}))
    snapshot = ServingSnapshot(
        ItemIndex.build(np.arange(1), vectors[:1], "v1", "digest", kind="flat", attributes=built), cast(Any, store)
    )
    women = ItemFilter({"gender": frozenset({"Women"})})
    log = ChangeLog(str(tmp_path / "changes"))
    log.append("add", [1, 2, 3], ["v0"], rows=b"rows")
    waiting = transformer_metrics().catalog_waiting.labels(model_version="v1")

    assert snapshot.catch_up(log) == 1 and snapshot.index.count == 1
    assert snapshot.waiting_items == 3 and waiting._value.get() == 3 and not snapshot.applied
    store.vectors[1] = vectors[1]  # its vector is written
    snapshot.catch_up(log)
    assert snapshot.index.count == 2 and snapshot.waiting_items == 2 and not snapshot.applied
    # Filterable as soon as it is searchable, with the attributes the store holds for it.
    assert snapshot.index.search_filtered(vectors[1:2], 3, women)[1][0].tolist() == [1, -1, -1]
    log.append("remove", [2])
    snapshot.catch_up(log)
    assert snapshot.waiting_items == 1  # 3 only: the removed product no longer waits
    store.vectors[2], store.vectors[3] = vectors[2], vectors[3]  # a late write of the removed product's vector too
    snapshot.catch_up(log)
    assert snapshot.index.vectors_of([2])[0] is None  # never added after its removal
    assert snapshot.waiting_items == 0 and waiting._value.get() == 0 and len(snapshot.applied) == 2
    assert snapshot.index.count == 3 and snapshot.catch_up(log) == 0  # 0, 1 and 3; nothing left to retry
    assert sorted(snapshot.index.search_filtered(vectors[3:4], 3, women)[1][0].tolist()) == [-1, 1, 3]
