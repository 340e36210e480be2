"""The collector's bounded buffer: a burst or an unreachable store costs the client a retry (429), never the
server's memory, and nothing taken is lost once the store is back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionrec import storage
from fashionrec.engagement.events import FeedbackEvent, cloud_event
from fashionrec.serving.feedback import BufferFull, FeedbackCollector
from fashionrec.serving.metrics import transformer_metrics
from fashionrec.storage import read_log_lines


def post(n: int, start: int = 0) -> bytes:
    return json.dumps(
        [cloud_event("impression", f"e{i}", f"r{i}", "buffered", i, 1, "session1234") for i in range(start, start + n)]
    ).encode()


def test_a_full_buffer_refuses_whole_posts_and_keeps_what_it_took_until_the_store_is_back(tmp_path: Path) -> None:
    blocker = tmp_path / "store"
    blocker.write_text("a file where the log's folder should be: every write fails")
    collector = FeedbackCollector(str(blocker / "events.jsonl"), capacity=25)
    full = transformer_metrics().feedback_rejected.labels(reason="buffer_full")
    refused_before = full._value.get()
    assert collector.take(post(10)) == 10
    collector.flush()  # fails (logged): the 10 stay
    assert collector.take(post(10, start=10)) == 10
    with pytest.raises(BufferFull, match="retry later"):
        collector.take(post(10, start=20))  # 30 > 25: the whole post is refused, none of it taken
    assert full._value.get() == refused_before + 1
    assert collector.buffer is not None and len(collector.buffer) == 20
    blocker.unlink()
    collector.flush()
    logged = [FeedbackEvent.from_log_line(line) for line in read_log_lines(str(blocker / "events.jsonl"))]
    assert sorted(event.item_id for event in logged) == list(range(20))
    assert collector.take(post(10, start=20)) == 10  # room again


def test_events_taken_while_a_write_fails_are_all_kept_never_dropped_to_make_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every event was acknowledged (202): a write failing while new posts fill the buffer loses none of them (it
    used to put back only what fitted beside the new ones)."""
    log = tmp_path / "events.jsonl"
    collector = FeedbackCollector(str(log), capacity=20)
    assert collector.take(post(20)) == 20
    real_write = storage.write_log_lines

    def write_failing_while_posts_arrive(location: str, lines: list[str]) -> None:
        assert collector.take(post(20, start=20)) == 20  # a post taken while the write is on the wire
        raise OSError("the store went away mid-write")

    monkeypatch.setattr(storage, "write_log_lines", write_failing_while_posts_arrive)
    collector.flush()
    assert collector.buffer is not None and len(collector.buffer) == 40 and collector.buffer.dropped == 0
    with pytest.raises(BufferFull):
        collector.take(post(1, start=40))  # over the bound until it drains
    monkeypatch.setattr(storage, "write_log_lines", real_write)
    collector.flush()
    logged = [FeedbackEvent.from_log_line(line) for line in read_log_lines(str(log))]
    assert sorted(event.item_id for event in logged) == list(range(40))
