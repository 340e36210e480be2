"""Feedback events: what a shopper was shown (``impression``), chose (``click``) and bought (``purchase``).

Clients post them to the transformer as CloudEvents 1.0 in structured JSON mode: one event
(``application/cloudevents+json``) or a batch (``application/cloudevents-batch+json``, a JSON array). Every event
names the answer it is about (``request_id`` and ``model_version``, both from the v2 response), the product
(``item_id``), its 1-based ``rank`` in that answer and an anonymous ``session_id``. Nothing else is accepted: an
unknown attribute or data field is refused, so that no photo, name or address can ride along. A batch is taken
whole or refused whole (400 naming the first bad event), so a client never has to guess which half arrived.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from fashionrec.config import MAX_TOP_K

SPEC_VERSION = "1.0"
TYPE_PREFIX = "io.fashionrec."
KINDS = ("impression", "click", "purchase")
MAX_EVENTS_PER_POST = 1000  # a page of 100 impressions ten times over: larger batches are a client bug
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "data")
OPTIONAL_ATTRIBUTES = ("time", "datacontenttype", "subject")
DATA_FIELDS = ("request_id", "model_version", "item_id", "rank", "session_id")
# Opaque identifiers only: a session id is a random token, never an e-mail address or a customer number with a name.
TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SESSION = re.compile(r"[A-Za-z0-9_-]{8,64}")


class InvalidEvent(ValueError):
    """A post the collector refuses (400); ``reason`` is a short, bounded label for the rejection counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FeedbackEvent:
    kind: str  # impression, click or purchase
    event_id: str  # the CloudEvents id (the client's; duplicates are the client's retries)
    request_id: str
    model_version: str
    item_id: int
    rank: int  # 1-based position of the item in the answer
    session_id: str
    received: float  # Unix seconds when the collector took it

    def log_line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_log_line(cls, line: str) -> FeedbackEvent:
        return cls(**json.loads(line))


def parse_feedback(body: bytes, received: float) -> list[FeedbackEvent]:
    """The events of one post (a CloudEvent or a JSON array of them); InvalidEvent naming the problem otherwise."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent("json", f"the body is not JSON: {exc}") from exc
    batch = document if isinstance(document, list) else [document]
    if not batch:
        raise InvalidEvent("batch_size", "an empty batch: send at least one event")
    if len(batch) > MAX_EVENTS_PER_POST:
        raise InvalidEvent("batch_size", f"{len(batch)} events in one post; at most {MAX_EVENTS_PER_POST}")
    events = []
    for position, event in enumerate(batch):
        try:
            events.append(_event(event, received))
        except InvalidEvent as exc:
            where = f"event {position}" if isinstance(document, list) else "the event"
            raise InvalidEvent(exc.reason, f"{where}: {exc}") from exc
    return events


def _event(event: Any, received: float) -> FeedbackEvent:
    if not isinstance(event, dict):
        raise InvalidEvent("spec", "not a JSON object (a CloudEvent in structured mode)")
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in event]
    if missing:
        raise InvalidEvent("spec", f"missing CloudEvents attribute(s) {missing}")
    unknown = sorted(set(event) - {*REQUIRED_ATTRIBUTES, *OPTIONAL_ATTRIBUTES})
    if unknown:
        raise InvalidEvent("field", f"unknown attribute(s) {unknown}: events carry only {list(REQUIRED_ATTRIBUTES)}")
    if event["specversion"] != SPEC_VERSION:
        raise InvalidEvent("spec", f"specversion must be {SPEC_VERSION!r}, got {event['specversion']!r}")
    kind = str(event["type"]).removeprefix(TYPE_PREFIX)
    if not str(event["type"]).startswith(TYPE_PREFIX) or kind not in KINDS:
        raise InvalidEvent("type", f"type must be one of {[TYPE_PREFIX + k for k in KINDS]}, got {event['type']!r}")
    data = event["data"]
    if not isinstance(data, dict):
        raise InvalidEvent("field", "data must be a JSON object")
    missing = [name for name in DATA_FIELDS if name not in data]
    unknown = sorted(set(data) - set(DATA_FIELDS))
    if missing or unknown:
        raise InvalidEvent(
            "field", f"data needs exactly {list(DATA_FIELDS)}: missing {missing}, unknown {unknown} (no personal data)"
        )
    return FeedbackEvent(
        kind=kind,
        event_id=_token(event["id"], "id", TOKEN),
        request_id=_token(data["request_id"], "request_id", TOKEN),
        model_version=_token(data["model_version"], "model_version", TOKEN),
        item_id=_integer(data["item_id"], "item_id", 0, 2**63 - 1),
        rank=_integer(data["rank"], "rank", 1, MAX_TOP_K),
        session_id=_token(data["session_id"], "session_id", SESSION),
        received=received,
    )


def _token(value: Any, name: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidEvent("value", f"{name} must be a string matching {pattern.pattern}, got {str(value)[:40]!r}")
    return value


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidEvent("value", f"{name} must be an integer between {low} and {high}, got {str(value)[:40]!r}")
    return value


def cloud_event(kind: str, event_id: str, request_id: str, model_version: str, item_id: int, rank: int,
                session_id: str, source: str = "fashionrec") -> dict[str, Any]:  # fmt: skip
    """One event as a client posts it (the gallery, the simulated shoppers, the tests)."""
    return {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": source,
        "type": TYPE_PREFIX + kind,
        "data": {
            "request_id": request_id,
            "model_version": model_version,
            "item_id": item_id,
            "rank": rank,
            "session_id": session_id,
        },
    }
