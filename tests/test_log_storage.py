"""The JSON-lines logs (fashionrec.storage): a bad line is skipped and counted, never fatal; a reader opens only the
parts of the days it asks for; compaction merges finished days into one part each, loses and duplicates nothing,
even when interrupted, and drops the days past what is kept."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fashionrec.storage import SkippedLines, compact_log, read_log_lines, read_log_records

DAY = 86400.0
NOW = 1_780_000_000.0  # a fixed clock: 2026-05-28 20:26 UTC
OLD_DAY = (NOW // DAY - 3) * DAY  # midnight UTC three days before


def part(folder: Path, when: float, lines: list[str], writer: str = "7-abcdef") -> Path:
    """A part file as write_log_lines names it, written at ``when``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{int(when * 1e9):020d}-{writer}.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def rows(n: int, when: float) -> list[str]:
    return [json.dumps({"n": n + i, "time": when}) for i in range(3)]


def numbers(location: Path, since: float | None = None) -> list[int]:
    return [json.loads(line)["n"] for line in read_log_lines(str(location), since)]


def parse(line: str) -> int:
    return int(json.loads(line)["n"])


@pytest.mark.parametrize("layout", ["file", "parts"])
def test_a_truncated_or_foreign_line_is_skipped_and_counted_and_the_rest_is_read(tmp_path: Path, layout: str) -> None:
    good = [json.dumps({"n": 1}), json.dumps({"n": 2})]
    bad = ['{"n": 3, "emb', "[1, 2]", '{"m": 4}']  # cut short by a crash, another shape, another format
    if layout == "file":
        location = tmp_path / "log.jsonl"
        location.write_bytes(("\n".join([good[0], *bad, good[1]]) + "\n").encode() + b'{"n": \xff}\n')
    else:
        location = tmp_path / "log"
        part(location, NOW, [good[0], *bad])
        part(location, NOW + 1, [good[1]])
        (location / f"{int((NOW + 2) * 1e9):020d}-7-ffffff.jsonl").write_bytes(b'{"n": \xff}\n')  # not UTF-8
    skipped = SkippedLines()
    assert list(read_log_records(str(location), parse, skipped)) == [1, 2]
    assert skipped.count == 4 and len(skipped.examples) == 4
    assert all(":" in example for example in skipped.examples)  # where: the part (or file) and the line


def test_a_reader_since_a_time_opens_only_the_parts_written_since(tmp_path: Path) -> None:
    log = tmp_path / "log"
    part(log, NOW - 20 * DAY, rows(0, NOW - 20 * DAY))
    (log / f"{int((NOW - 19 * DAY) * 1e9):020d}-7-000000.jsonl").write_text("not json at all\n")  # never opened
    part(log, NOW - DAY, rows(10, NOW - DAY))
    assert numbers(log, since=NOW - 14 * DAY) == [10, 11, 12]
    skipped = SkippedLines()
    assert list(read_log_records(str(log), parse, skipped, since=NOW - 14 * DAY)) == [10, 11, 12]
    assert skipped.count == 0
    assert list(read_log_records(str(log), parse, skipped)) == [0, 1, 2, 10, 11, 12]  # and everything without
    assert skipped.count == 1


def test_compaction_merges_each_finished_day_into_one_part_and_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "log"
    old_day = OLD_DAY
    for hour in range(5):  # five flushes of two replicas on an old day
        part(log, old_day + hour * 3600, rows(10 * hour, old_day), writer=f"7-{hour:06x}")
        part(log, old_day + hour * 3600 + 1, rows(10 * hour + 5, old_day), writer=f"8-{hour:06x}")
    part(log, NOW - 60, rows(100, NOW))  # today's: still written to, left alone
    before = numbers(log)
    done = compact_log(str(log), now=NOW)
    assert (done.merged, done.written, done.deleted) == (10, 1, 10)
    names = sorted(p.name for p in log.iterdir())
    assert len(names) == 2 and "-day-" in names[0] and "-day-" not in names[1]
    assert numbers(log) == before  # same lines, same order
    assert compact_log(str(log), now=NOW).written == 0  # done: a rerun changes nothing
    assert numbers(log, since=NOW - 14 * DAY) == before


def test_an_interrupted_compaction_duplicates_nothing_and_the_next_one_finishes_it(tmp_path: Path) -> None:
    log = tmp_path / "log"
    old_day = OLD_DAY
    for n in range(3):
        part(log, old_day + n, rows(10 * n, old_day))
    before = numbers(log)
    compact_log(str(log), now=NOW)
    day_part = next(log.glob("*-day-*.jsonl"))
    for n in range(2):  # as if it stopped while deleting what the day part holds: two of the three still there
        part(log, old_day + n, rows(10 * n, old_day))
    assert numbers(log) == before  # the day part holds them: read once
    assert compact_log(str(log), now=NOW).deleted == 2
    assert sorted(log.iterdir()) == [day_part] and numbers(log) == before


def test_compaction_drops_the_parts_past_what_is_kept_and_leaves_a_local_file_alone(tmp_path: Path) -> None:
    log = tmp_path / "log"
    part(log, NOW - 40 * DAY, rows(0, NOW - 40 * DAY))
    part(log, NOW - 39 * DAY, rows(10, NOW - 39 * DAY))
    part(log, NOW - 2 * DAY, rows(20, NOW - 2 * DAY))
    done = compact_log(str(log), now=NOW, keep_days=30)
    assert done.deleted == 3 and done.written == 1  # two past the 30 days, one merged into its day part
    assert numbers(log) == [20, 21, 22]
    single = tmp_path / "requests.jsonl"
    single.write_text("\n".join(rows(0, time.time())) + "\n")
    assert compact_log(str(single), now=NOW, keep_days=0).deleted == 0 and numbers(single) == [0, 1, 2]
