"""A transformer replica's catch-up (ServingSnapshot.catch_up, as its poller calls it every couple of seconds) against
the change log: a poll costs what changed, and a compaction of the log neither replays nor loses a change."""

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from fashionrec.data.changes import Change, ChangeLog
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
