"""The catalogue change log: ordered, replayable, complete files only."""

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fashionrec.catalog.update import latest_changes
from fashionrec.data.changes import COMPACTED_DIR, HEAD_FILE, Action, Change, ChangeLog, PendingChange, added_since


def test_changes_come_back_in_the_order_they_were_made_with_their_rows(tmp_path: Path) -> None:
    log = ChangeLog(str(tmp_path / "changes"))
    assert log.names() == []
    first = log.append("add", [3, 4], ["v1"], rows=b"parquet bytes")
    second = log.append("remove", [4])
    assert [c.name for c in log.changes()] == [first.name, second.name]
    replayed = log.changes()
    assert (replayed[0].action, replayed[0].item_ids, replayed[0].model_versions) == ("add", [3, 4], ["v1"])
    assert (replayed[1].action, replayed[1].item_ids) == ("remove", [4])
    assert log.changes(skip={first.name}) == [second]
    assert Path(log.rows_uri(first)).read_bytes() == b"parquet bytes"
    assert not [p for p in (tmp_path / "changes").iterdir() if p.name.startswith(".")]  # no staged file left


def test_an_unknown_action_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    log = ChangeLog(str(tmp_path / "changes"))
    with pytest.raises(ValueError, match="action must be one of"):
        log.append("update", [1])  # type: ignore[arg-type]
    assert log.names() == []


def test_a_half_written_change_is_not_read(tmp_path: Path) -> None:
    log = ChangeLog(str(tmp_path))
    (tmp_path / ".00000000000000000001-abcd.json.tmp").write_text("{")
    assert log.changes() == []


def test_a_file_that_is_not_a_change_is_reported_and_skipped_not_blocking(tmp_path: Path) -> None:
    log = ChangeLog(str(tmp_path))
    (tmp_path / "00000000000000000001-abcd.json").write_text('{"action": "update", "item_ids": [1]}')
    later = log.append("remove", [2])
    with pytest.raises(ValueError, match="is not a catalogue change"):
        log.changes()
    bad: set[str] = set()
    assert log.changes(bad=bad) == [later] and bad == {"00000000000000000001-abcd"}


def test_a_begun_change_is_read_by_no_consumer_until_it_is_committed(tmp_path: Path) -> None:
    log = ChangeLog(str(tmp_path / "changes"))
    begun = log.begin("add", [5], ["v1"], rows=b"parquet bytes", detail={"request": "r1"})
    assert log.names() == [] and log.changes() == []  # a transformer's catch_up applies nothing of it
    [pending] = log.pending()
    assert (pending.change, pending.detail, pending.committed) == (begun.change, {"request": "r1"}, False)
    assert Path(log.rows_uri(begun.change)).read_bytes() == b"parquet bytes"
    log.commit(begun.change)
    assert log.changes() == [begun.change] and log.pending() == []


def half_committed(log: ChangeLog, monkeypatch: pytest.MonkeyPatch) -> PendingChange:
    """A removal whose commit wrote the change and then crashed before dropping its pending record."""
    begun = log.begin("remove", [6])
    with monkeypatch.context() as patch:
        patch.setattr(ChangeLog, "_drop_pending", lambda self, name: (_ for _ in ()).throw(OSError("crash")))
        with pytest.raises(OSError):
            log.commit(begun.change)
    return begun


def test_a_commit_cut_short_after_the_change_is_finished_by_committing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ChangeLog(str(tmp_path / "changes"))
    begun = half_committed(log, monkeypatch)
    assert log.changes() == [begun.change]
    assert [(p.change, p.committed) for p in log.pending()] == [(begun.change, True)]
    log.commit(begun.change)  # no second copy of the change
    assert log.changes() == [begun.change] and log.pending() == []


def test_local_changes_are_fsynced_before_their_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    change = ChangeLog(str(tmp_path)).append("add", [7], ["v1"], rows=b"rows")
    assert [
        str(tmp_path / f".{change.name}.parquet.tmp"),
        str(tmp_path / f".{change.name}.json.tmp"),
        str(tmp_path / f".{HEAD_FILE}.tmp"),  # after the change: a poller that sees HEAD move finds the change
    ] == [s for s in synced if s.endswith(".tmp") and "pending" not in s]


class CountedCalls:
    """The listings and reads a ChangeLog makes of its storage."""

    def __init__(self, log: ChangeLog, monkeypatch: pytest.MonkeyPatch) -> None:
        self.listed: list[str] = []
        self.read: list[str] = []
        real_ls, real_cat = log.fs.ls, log.fs.cat_file

        def ls(path: str, *args: Any, **kwargs: Any) -> Any:
            self.listed.append(str(path))
            return real_ls(path, *args, **kwargs)

        def cat_file(path: str, *args: Any, **kwargs: Any) -> Any:
            self.read.append(str(path).rsplit("/", 1)[-1])
            return real_cat(path, *args, **kwargs)

        monkeypatch.setattr(log.fs, "ls", ls)
        monkeypatch.setattr(log.fs, "cat_file", cat_file)

    def reset(self) -> None:
        self.listed.clear()
        self.read.clear()


def test_a_poll_with_no_new_change_reads_the_head_and_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica polls every couple of seconds: it listed the whole folder each time, and the folder only grows."""
    writer, reader = ChangeLog(str(tmp_path / "changes")), ChangeLog(str(tmp_path / "changes"))
    made = [writer.append("add", [i], ["v1"], rows=b"rows") for i in range(30)]
    applied = {change.name for change in reader.changes()}
    assert applied == {change.name for change in made}
    calls = CountedCalls(reader, monkeypatch)
    for _ in range(3):
        assert reader.changes(skip=applied) == []
    assert calls.listed == [] and calls.read == [HEAD_FILE] * 3

    later = writer.append("remove", [3])
    calls.reset()
    assert reader.changes(skip=applied) == [later]  # HEAD moved: one listing, and the new change read
    assert len(calls.listed) == 1 and calls.read == [HEAD_FILE, f"{later.name}.json"]
    assert reader.changes() == [*made, later]  # a new snapshot (nothing applied yet) still gets every change


def test_a_change_whose_head_move_failed_is_seen_once_its_commit_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = ChangeLog(str(tmp_path / "changes")), ChangeLog(str(tmp_path / "changes"))
    first = writer.append("add", [1], ["v1"], rows=b"rows")
    assert reader.changes() == [first]
    begun = writer.begin("remove", [1])
    with monkeypatch.context() as patch:
        patch.setattr(ChangeLog, "_write_head", lambda self, after: (_ for _ in ()).throw(OSError("crash")))
        with pytest.raises(OSError):
            writer.commit(begun.change)
    assert [p.committed for p in writer.pending()] == [True]  # not committed until HEAD moved: the retry finishes it
    writer.commit(begun.change)  # the change is there already: only HEAD moves
    assert reader.changes(skip={first.name}) == [begun.change]


def catalogue(changes: list[Change]) -> set[int]:
    """The products a replica's index holds after applying ``changes`` in order (the last change of each wins)."""
    held: set[int] = set()
    for change in changes:
        (held.update if change.action == "add" else held.difference_update)(change.item_ids)
    return held


def history(log: ChangeLog) -> list[Change]:
    """Adds and removes that supersede one another, an id re-added after its removal among them."""
    steps: list[tuple[Action, list[int]]] = [
        ("add", [1, 2]), ("add", [3]), ("remove", [2]), ("add", [2, 6]), ("remove", [3]),
        ("add", [4, 5]), ("remove", [5]), ("add", [7]),
    ]  # fmt: skip
    return [log.append(action, ids, ["v1"], rows=f"rows {n}".encode() if action == "add" else None)
            for n, (action, ids) in enumerate(steps)]  # fmt: skip


def test_compaction_keeps_what_every_consumer_derives_and_the_rows_still_needed(tmp_path: Path) -> None:
    log = ChangeLog(str(tmp_path / "changes"))
    made = history(log)
    begun = log.begin("add", [8], ["v1"], rows=b"pending rows")  # not committed: compaction leaves it alone
    before = (latest_changes(log), added_since(log, "2000-01-01"), catalogue(log.changes()))
    cut = datetime.fromisoformat(made[4].created)  # the first five changes are past the retention
    assert log.compact(older_than=timedelta(days=7), now=cut + timedelta(days=7)) == 5
    assert (latest_changes(log), added_since(log, "2000-01-01"), catalogue(log.changes())) == before
    folder = tmp_path / "changes"
    assert sorted(p.stem for p in folder.glob("*.json")) == [c.name for c in made[5:]]  # folded: their files went
    # add [3] and remove [2] are no product's last change any more; add [1, 2] is still 1's, add [2, 6] 2's and 6's
    assert [c.name for c in log.changes()] == [made[n].name for n in (0, 3, 4, 5, 6, 7)]
    assert not Path(log.rows_uri(made[1])).exists()
    assert all(Path(log.rows_uri(c)).exists() for c in latest_changes(log).values() if c.action == "add")
    assert Path(log.rows_uri(begun.change)).read_bytes() == b"pending rows"
    fresh = ChangeLog(str(folder))  # another replica
    assert fresh.changes() == log.changes() and fresh.read(made[0].name) == made[0]

    assert log.compact(older_than=timedelta(0)) == 3  # the rest, into the same state
    assert (latest_changes(log), added_since(log, "2000-01-01"), catalogue(log.changes())) == before
    assert list(folder.glob("*.json")) == [] and len(list((folder / COMPACTED_DIR).glob("*.json"))) == 1
    assert all(Path(log.rows_uri(made[n])).exists() for n in (0, 3, 5, 7))  # every product's last addition
    log.commit(begun.change)
    assert log.changes()[-1] == begun.change and 8 in latest_changes(log)


def test_a_compaction_cut_short_leaves_every_change_read_once_and_the_next_one_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ChangeLog(str(tmp_path / "changes"))
    history(log)
    expected = log.changes()
    with monkeypatch.context() as patch:  # the state is written, then the first deletion fails
        patch.setattr(ChangeLog, "_remove", lambda self, path: (_ for _ in ()).throw(OSError("crash")))
        with pytest.raises(OSError):
            log.compact(older_than=timedelta(0))
    kept = [c for c in expected if c.name in {c.name for c in latest_changes(log).values()}]
    assert ChangeLog(str(tmp_path / "changes")).changes() == expected  # the files are still there: each read once
    assert log.compact(older_than=timedelta(0)) == len(expected)
    assert ChangeLog(str(tmp_path / "changes")).changes() == kept and list((tmp_path / "changes").glob("*.json")) == []


def test_compaction_leaves_a_file_that_is_not_a_change_for_a_person(tmp_path: Path) -> None:
    log = ChangeLog(str(tmp_path))
    (tmp_path / "00000000000000000001-abcd.json").write_text('{"action": "update", "item_ids": [1]}')
    later = log.append("remove", [2])
    assert log.compact(older_than=timedelta(0)) == 1
    bad: set[str] = set()
    assert log.changes(bad=bad) == [later] and bad == {"00000000000000000001-abcd"}


def test_compaction_leaves_a_change_whose_pending_record_is_left_for_its_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its writer finishes it by its file (committed: nothing is made twice); folded, a retry would make it again."""
    log = ChangeLog(str(tmp_path / "changes"))
    begun = half_committed(log, monkeypatch)
    other = log.append("add", [7], ["v1"], rows=b"rows")
    assert log.compact(older_than=timedelta(0)) == 1  # the addition only
    assert [(p.change, p.committed) for p in log.pending()] == [(begun.change, True)]
    log.commit(begun.change)
    assert log.compact(older_than=timedelta(0)) == 1 and log.changes() == [begun.change, other]
