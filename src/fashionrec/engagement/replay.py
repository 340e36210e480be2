"""Shoppers' clicks as data: the sessions an offline replay scores a candidate model on, and the co-clicked pairs
that training may pull together.

A *session* here is one answered item query ("more like item q") with the items the shopper clicked in it. Only
item queries can be replayed: an image query's photo is never stored, so a candidate encoder cannot see it again.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from fashionrec.engagement.events import FeedbackEvent
from fashionrec.storage import read_log_lines

REPLAY_K = 5  # clicks recovered within the candidate's top 5


@dataclass(frozen=True)
class Session:
    query_item: int
    clicked: tuple[int, ...]  # distinct, in the order first clicked


def sessions(events: Iterable[FeedbackEvent], queries: Mapping[str, int]) -> list[Session]:
    """The answers with at least one click whose query item is known (``queries``: request id -> query item)."""
    clicked: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event.kind == "click" and event.request_id in queries and event.item_id not in clicked[event.request_id]:
            clicked[event.request_id].append(event.item_id)
    return [Session(queries[request], tuple(items)) for request, items in clicked.items()]


def coclicked_pairs(found: Iterable[Session]) -> list[tuple[int, int]]:
    """Pairs of distinct products clicked from the same query (each pair once, smaller id first)."""
    pairs: set[tuple[int, int]] = set()
    for session in found:
        items = sorted(set(session.clicked) - {session.query_item})
        pairs.update((a, b) for n, a in enumerate(items) for b in items[n + 1 :])
    return sorted(pairs)


def replay_recall(found: list[Session], neighbours: Callable[[int], list[int]], k: int = REPLAY_K) -> float:
    """Mean over sessions of the share of its clicks that the model's top ``k`` neighbours of the query recover
    (``neighbours(item)``: the model's ranked answer, the query itself left out); NaN without a session."""
    if not found:
        return float("nan")
    total = 0.0
    for session in found:
        top = set(neighbours(session.query_item)[:k])
        total += sum(item in top for item in session.clicked) / len(session.clicked)
    return total / len(found)


REPLAY_SHARE = 0.2  # of the logged sessions kept for the replay metric; the rest may train (co-clicked pairs)


def item_queries(request_log_lines: Iterable[str]) -> dict[str, int]:
    """Request id -> query item, from the request log's item-query lines (the transformer logs one per query)."""
    found = {}
    for line in request_log_lines:
        row = json.loads(line)
        if "query_item_id" in row and row.get("request_id"):
            found[str(row["request_id"])] = int(row["query_item_id"])
    return found


def for_replay(session_request: str) -> bool:
    """Whether a session (by its request id) is kept for the replay metric rather than for training: a stable hash,
    so the training and the evaluation step split the same log the same way and never share a session."""
    digest = hashlib.sha256(session_request.encode()).digest()
    return int.from_bytes(digest[:4], "big") < REPLAY_SHARE * 2**32


def logged_sessions(request_log: str, event_log: str) -> tuple[list[Session], list[Session]]:
    """The replayable sessions of the logs (locations as the transformer writes them), split into those that may
    train and those kept for the replay metric."""
    queries = item_queries(read_log_lines(request_log))
    events = [FeedbackEvent.from_log_line(line) for line in read_log_lines(event_log)]
    training: list[str] = []
    replay: list[str] = []
    for request in sorted({e.request_id for e in events if e.kind == "click" and e.request_id in queries}):
        (replay if for_replay(request) else training).append(request)
    by_request = {request: queries[request] for request in training}
    kept = {request: queries[request] for request in replay}
    return sessions(events, by_request), sessions(events, kept)
