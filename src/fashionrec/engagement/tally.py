"""Engagement per model version, from feedback events: the same arithmetic live (the transformer's counters) and
offline (an experiment's report, over the event log).

The unit is an *answer shown*: a request whose rank-1 item was reported as an impression. Per answer:
- ``clicked``: at least one click at rank <= CTR_RANK (so CTR@5 = clicked / answers, a share of answers in [0, 1]);
- ``reciprocal_rank``: 1 / the best rank clicked (0 without a click), so MRR = reciprocal_ranks / answers.
Both are bounded per answer, which is what lets the sequential test treat answers as independent trials.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from fashionrec.engagement.events import FeedbackEvent

CTR_RANK = 5  # clicks within the first five count towards CTR@5 (what the gallery shows first)
TRACKED_ANSWERS = 100_000  # answers whose best click is remembered (~15 MB); older ones count as new if clicked again


@dataclass
class Engagement:
    """Counts for one model version (totals or a delta)."""

    impressions: float = 0.0
    clicks: float = 0.0
    purchases: float = 0.0
    answers: float = 0.0  # answers shown
    clicked: float = 0.0  # answers with a click at rank <= CTR_RANK
    reciprocal_ranks: float = 0.0  # sum over answers of 1 / best rank clicked

    @property
    def ctr(self) -> float:
        return self.clicked / self.answers if self.answers else 0.0

    @property
    def mrr(self) -> float:
        return self.reciprocal_ranks / self.answers if self.answers else 0.0

    def add(self, other: Engagement) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def minus(self, before: Engagement) -> Engagement:
        return Engagement(**{name: getattr(self, name) - getattr(before, name) for name in self.__dataclass_fields__})


class AnswerTracker:
    """Turns events into engagement deltas, remembering each recent answer's best click (bounded, oldest forgotten).
    Not thread-safe: the collector calls it under its lock."""

    def __init__(self, capacity: int = TRACKED_ANSWERS) -> None:
        self.capacity = capacity
        self._best_rank: OrderedDict[tuple[str, str], int] = OrderedDict()  # (model_version, request_id) -> rank

    def observe(self, event: FeedbackEvent) -> Engagement:
        delta = Engagement()
        if event.kind == "impression":
            delta.impressions = 1
            delta.answers = 1 if event.rank == 1 else 0
        elif event.kind == "purchase":
            delta.purchases = 1
        else:
            delta.clicks = 1
            key = (event.model_version, event.request_id)
            best = self._best_rank.pop(key, 0)
            if not best or event.rank < best:
                delta.reciprocal_ranks = 1 / event.rank - (1 / best if best else 0.0)
                delta.clicked = 1 if event.rank <= CTR_RANK and not (best and best <= CTR_RANK) else 0
                best = event.rank
            self._best_rank[key] = best
            while len(self._best_rank) > self.capacity:
                self._best_rank.popitem(last=False)
        return delta


def tally(events: Iterable[FeedbackEvent]) -> dict[str, Engagement]:
    """Engagement per model version over a sequence of events (e.g. an event log)."""
    tracker = AnswerTracker(capacity=10**9)
    found: dict[str, Engagement] = {}
    for event in events:
        found.setdefault(event.model_version, Engagement()).add(tracker.observe(event))
    return found


def by_answer_time(events: Iterable[FeedbackEvent], split_at: float) -> tuple[list[FeedbackEvent], list[FeedbackEvent]]:
    """The events of answers shown before ``split_at`` (Unix seconds) and of those shown at or after it; an answer's
    time is its first impression's, so a late click counts with the answer it was on. Events of answers never shown
    (no impression) belong to neither."""
    events = list(events)
    shown: dict[tuple[str, str], float] = {}
    for event in events:
        if event.kind == "impression":
            key = (event.model_version, event.request_id)
            shown[key] = min(shown.get(key, event.received), event.received)
    before: list[FeedbackEvent] = []
    after: list[FeedbackEvent] = []
    for event in events:
        when = shown.get((event.model_version, event.request_id))
        if when is not None:
            (before if when < split_at else after).append(event)
    return before, after
