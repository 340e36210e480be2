"""The catalogue change log: ordered, replayable, complete files only."""

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
