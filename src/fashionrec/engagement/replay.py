"""Shoppers' clicks as data: the sessions an offline replay scores a candidate model on, and the co-clicked pairs
that training may pull together.

A *session* here is one answered item query ("more like item q") with the items the shopper clicked in it. Only
item queries can be replayed: an image query's photo is never stored, so a candidate encoder cannot see it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from fashionrec.engagement.events import FeedbackEvent
from fashionrec.storage import SkippedLines, read_log_records

REPLAY_K = 5  # clicks recovered within the candidate's top 5
logger = logging.getLogger(__name__)


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


def item_query(line: str) -> tuple[str, int] | None:
    """(request id, query item) of a request-log line; None for an image query. ValueError, TypeError or KeyError
    when the line is not one the transformer writes."""
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError(f"a JSON {type(row).__name__}, not an object")
    if "query_item_id" in row and row.get("request_id"):
        return str(row["request_id"]), int(row["query_item_id"])
    return None


def item_queries(request_log_lines: Iterable[str]) -> dict[str, int]:
    """Request id -> query item, from the request log's item-query lines (the transformer logs one per query)."""
    return dict(query for line in request_log_lines if (query := item_query(line)) is not None)


def for_replay(session_request: str) -> bool:
    """Whether a session (by its request id) is kept for the replay metric rather than for training: a stable hash,
    so the training and the evaluation step split the same log the same way and never share a session."""
    digest = hashlib.sha256(session_request.encode()).digest()
    return int.from_bytes(digest[:4], "big") < REPLAY_SHARE * 2**32


def logged_sessions(request_log: str, event_log: str, skipped: SkippedLines | None = None) -> tuple[list[Session], list[Session]]:
    """The replayable sessions of the logs (locations as the transformer writes them), split into those that may
    train and those kept for the replay metric. Lines that do not parse are skipped, counted in ``skipped`` and
    logged, never fatal."""
    skipped = SkippedLines() if skipped is None else skipped
    queries = dict(read_log_records(request_log, item_query, skipped))
    events = list(read_log_records(event_log, FeedbackEvent.from_log_line, skipped))
    if skipped.count:
        logger.warning("skipped %d unreadable log line(s): %s", skipped.count, "; ".join(skipped.examples))
    training: list[str] = []
    replay: list[str] = []
    for request in sorted({e.request_id for e in events if e.kind == "click" and e.request_id in queries}):
        (replay if for_replay(request) else training).append(request)
    by_request = {request: queries[request] for request in training}
    kept = {request: queries[request] for request in replay}
    return sessions(events, by_request), sessions(events, kept)
