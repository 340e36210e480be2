"""Engagement arithmetic, shared by the live counters and the offline report."""

from __future__ import annotations

import pytest

from fashionrec.engagement.events import FeedbackEvent
from fashionrec.engagement.tally import AnswerTracker, tally


def event(kind: str, request: str, rank: int, version: str = "v1") -> FeedbackEvent:
    return FeedbackEvent(kind, f"{request}-{kind}-{rank}", request, version, 100 + rank, rank, "session1234", 0.0)


def test_ctr_and_mrr_count_answers_once_by_their_best_click() -> None:
    events = [event("impression", "a", r) for r in range(1, 11)] + [event("impression", "b", r) for r in range(1, 11)]
    events += [event("click", "a", 7), event("click", "a", 2), event("click", "a", 4), event("purchase", "a", 2)]
    events += [event("click", "b", 8), event("impression", "c", 1, version="v2")]
    seen = tally(events)
    v1 = seen["v1"]
    assert (v1.answers, v1.impressions, v1.clicks, v1.purchases) == (2, 20, 4, 1)
    assert v1.clicked == 1  # a: clicks at 7, then 2 (within the top 5); b: only at 8
    assert v1.ctr == pytest.approx(0.5)
    assert v1.mrr == pytest.approx((1 / 2 + 1 / 8) / 2)  # a's best rank is 2, b's 8
    assert seen["v2"].answers == 1 and seen["v2"].ctr == 0.0


def test_the_tracker_forgets_the_oldest_answers_beyond_its_bound() -> None:
    tracker = AnswerTracker(capacity=2)
    first = tracker.observe(event("click", "a", 1)).clicked
    for request in ("b", "c"):
        tracker.observe(event("click", request, 1))
    again = tracker.observe(event("click", "a", 1)).clicked  # "a" was forgotten: its click counts again
    repeat = tracker.observe(event("click", "c", 1)).clicked  # "c" is remembered: not twice
    assert (first, again, repeat) == (1, 1, 0)
