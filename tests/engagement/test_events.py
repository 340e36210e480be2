"""Feedback events: what the collector takes, and what it refuses with a reason (never silently, never half)."""

from __future__ import annotations

import json

import pytest

from fashionrec.engagement.events import MAX_EVENTS_PER_POST, FeedbackEvent, InvalidEvent, cloud_event, parse_feedback


def click(**data: object) -> dict[str, object]:
    event = cloud_event("click", "e1", "req-1", "v1", 42, 3, "session1234")
    event["data"].update(data)
    return event


def test_one_event_and_a_batch_parse_to_events_that_survive_the_log() -> None:
    (one,) = parse_feedback(json.dumps(click()).encode(), received=5.0)
    assert (one.kind, one.request_id, one.model_version, one.item_id, one.rank, one.session_id) == (
        "click", "req-1", "v1", 42, 3, "session1234"
    )  # fmt: skip
    assert FeedbackEvent.from_log_line(one.log_line()) == one
    batch = [
        cloud_event(kind, f"e{n}", "req-2", "v2", n, n + 1, "session1234") for n, kind in enumerate(("impression", "purchase"))
    ]
    assert [e.kind for e in parse_feedback(json.dumps(batch).encode(), 0.0)] == ["impression", "purchase"]


@pytest.mark.parametrize(
    ("body", "reason", "says"),
    [
        (b"{not json", "json", "not JSON"),
        (b"[]", "batch_size", "empty batch"),
        (json.dumps([click()] * (MAX_EVENTS_PER_POST + 1)).encode(), "batch_size", f"at most {MAX_EVENTS_PER_POST}"),
        (json.dumps({**click(), "specversion": "0.3"}).encode(), "spec", "specversion"),
        (json.dumps({k: v for k, v in click().items() if k != "source"}).encode(), "spec", "source"),
        (json.dumps({**click(), "type": "io.fashionrec.view"}).encode(), "type", "io.fashionrec.click"),
        (json.dumps({**click(), "email": "a@b.c"}).encode(), "field", "email"),
        (json.dumps(click(photo="AAAA")).encode(), "field", "photo"),
        (json.dumps(click(rank=0)).encode(), "value", "rank"),
        (json.dumps(click(rank=True)).encode(), "value", "rank"),
        (json.dumps(click(item_id="42")).encode(), "value", "item_id"),
        (json.dumps(click(session_id="jane.doe@example.com")).encode(), "value", "session_id"),
        (json.dumps(click(model_version="v 1; drop")).encode(), "value", "model_version"),
    ],
)
def test_a_bad_post_is_refused_with_its_reason(body: bytes, reason: str, says: str) -> None:
    with pytest.raises(InvalidEvent, match=says) as refused:
        parse_feedback(body, 0.0)
    assert refused.value.reason == reason


def test_a_batch_with_one_bad_event_is_refused_whole_naming_it() -> None:
    with pytest.raises(InvalidEvent, match="event 1: "):
        parse_feedback(json.dumps([click(), click(rank=-1)]).encode(), 0.0)
