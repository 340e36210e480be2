"""Sessions from logged clicks, co-clicked pairs, and the replay metric."""

from __future__ import annotations

import json
import math
from pathlib import Path

from fashionrec.engagement.events import FeedbackEvent
from fashionrec.engagement.replay import Session, coclicked_pairs, logged_sessions, replay_recall, sessions
from fashionrec.storage import SkippedLines


def click(request: str, item: int, rank: int = 1) -> FeedbackEvent:
    return FeedbackEvent("click", f"{request}-{item}", request, "v1", item, rank, "session1234", 0.0)


def test_sessions_gather_each_answers_clicks_for_known_queries_and_pair_them() -> None:
    events = [click("a", 5), click("a", 7), click("a", 5), click("b", 9), click("c", 3)]
    events.append(FeedbackEvent("impression", "a-i", "a", "v1", 8, 2, "session1234", 0.0))
    found = sessions(events, {"a": 1, "b": 2})  # "c" has no known query: not replayable
    assert found == [Session(1, (5, 7)), Session(2, (9,))]
    assert coclicked_pairs([*found, Session(4, (7, 5, 4, 6))]) == [(5, 6), (5, 7), (6, 7)]  # the query itself is no pair


def test_replay_recall_is_the_share_of_clicks_the_candidates_top_k_recovers() -> None:
    found = [Session(1, (5, 7)), Session(2, (9,))]
    answers = {1: [5, 3, 4, 6, 8, 7], 2: [9]}
    assert replay_recall(found, answers.__getitem__, k=5) == (0.5 + 1.0) / 2  # 7 is sixth
    assert replay_recall(found, answers.__getitem__, k=6) == 1.0
    assert math.isnan(replay_recall([], answers.__getitem__))


def test_logged_sessions_skip_and_count_the_logs_bad_lines(tmp_path: Path) -> None:
    requests, events = tmp_path / "requests.jsonl", tmp_path / "events.jsonl"
    item_query = {"time": 1.0, "model_version": "v1", "request_id": "a", "query_item_id": 1, "item_ids": [5, 7]}
    requests.write_text(json.dumps(item_query) + '\n{"time": 2.0, "request_id": "b", "query_it\n')
    events.write_text(click("a", 5).log_line() + '\n{"kind": "click"}\n' + click("a", 7).log_line() + "\n")
    skipped = SkippedLines()
    training, replay = logged_sessions(str(requests), str(events), skipped)
    assert [*training, *replay] == [Session(1, (5, 7))]
    assert skipped.count == 2
