"""The catalogue change log: ordered, replayable, complete files only."""

import os
from pathlib import Path

import pytest

from fashionrec.data.changes import ChangeLog


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


def test_a_commit_cut_short_after_the_change_is_finished_by_committing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ChangeLog(str(tmp_path / "changes"))
    begun = log.begin("remove", [6])
    with monkeypatch.context() as patch:
        patch.setattr(ChangeLog, "_drop_pending", lambda self, name: (_ for _ in ()).throw(OSError("crash")))
        with pytest.raises(OSError):
            log.commit(begun.change)
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
    assert [str(tmp_path / f".{change.name}.parquet.tmp"), str(tmp_path / f".{change.name}.json.tmp")] == [
        s for s in synced if s.endswith(".tmp") and "pending" not in s
    ]
