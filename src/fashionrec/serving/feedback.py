"""The transformer's feedback collector: ``POST /v2/models/<name>/feedback`` takes shoppers' impression, click and
purchase events (CloudEvents JSON, fashionrec.engagement.events), counts engagement per model version in
Prometheus and queues the events for the event log (a bounded buffer flushed by a background thread to a local
.jsonl file or part files on object storage, beside the request log).

Answers: 202 (taken: counted and queued), 400 (a bad post, with the reason; counted by reason), 429 with
Retry-After (the buffer is full: the client keeps its events and retries). Never a 5xx for anything a client sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import ORJSONResponse

from fashionrec.config import feedback_path
from fashionrec.engagement.events import FeedbackEvent, InvalidEvent, parse_feedback
from fashionrec.engagement.tally import AnswerTracker, Engagement
from fashionrec.serving.metrics import transformer_metrics
from fashionrec.storage import LogBuffer, redact_urls

EVENT_BUFFER = 100_000  # events between two flushes at most (~400 B each as records: ~40 MB at worst)
EVENT_FLUSH_SECONDS = 5.0
MAX_VERSION_LABELS = 16  # distinct model_version label values; further ones (a client's typo, an old tab) count as "other"
OTHER_VERSION = "other"
RETRY_AFTER_S = 5
logger = logging.getLogger(__name__)


class BufferFull(RuntimeError):
    """The event log's buffer is full (the store is slow or down): refuse the post, the client retries."""


class FeedbackCollector:
    """Thread-safe: request threads ``take`` posts, a background thread ``flush``es the buffer."""

    def __init__(self, event_log: str | None, capacity: int = EVENT_BUFFER) -> None:
        self.buffer: LogBuffer[FeedbackEvent] | None = (
            LogBuffer(event_log, FeedbackEvent.log_line, capacity=capacity, lossless=True) if event_log else None
        )
        self._tracker = AnswerTracker()
        self._versions: set[str] = set()
        self._lock = threading.Lock()

    def take(self, body: bytes) -> int:
        """Validate, queue and count one post's events; returns how many. InvalidEvent or BufferFull otherwise."""
        metrics = transformer_metrics()
        try:
            events = parse_feedback(body, received=time.time())
        except InvalidEvent as exc:
            metrics.feedback_rejected.labels(reason=exc.reason).inc()
            raise
        if self.buffer is not None and not self.buffer.add(events):
            metrics.feedback_rejected.labels(reason="buffer_full").inc()
            raise BufferFull(f"the event buffer holds {len(self.buffer)} events waiting for the log; retry later")
        with self._lock:
            deltas = [(self._label(event.model_version), event.kind, self._tracker.observe(event)) for event in events]
        for version, kind, delta in deltas:
            self._count(version, kind, delta)
        return len(events)

    def _label(self, version: str) -> str:
        if version not in self._versions and len(self._versions) < MAX_VERSION_LABELS:
            self._versions.add(version)
        return version if version in self._versions else OTHER_VERSION

    @staticmethod
    def _count(version: str, kind: str, delta: Engagement) -> None:
        metrics = transformer_metrics()
        metrics.feedback_events.labels(model_version=version, type=kind).inc()
        if delta.answers:
            metrics.engagement_answers.labels(model_version=version).inc(delta.answers)
        if delta.clicked:
            metrics.engagement_clicked.labels(model_version=version).inc(delta.clicked)
        if delta.reciprocal_ranks:
            metrics.engagement_reciprocal_ranks.labels(model_version=version).inc(delta.reciprocal_ranks)

    def flush(self) -> None:
        """Write the queued events to the event log; a failure is logged and the events kept (within the bound)."""
        if self.buffer is None:
            return
        try:
            self.buffer.flush()
        except Exception:
            logger.exception(
                "writing feedback events to %s failed; keeping them for the next flush", redact_urls(self.buffer.location)
            )
        finally:
            transformer_metrics().feedback_buffered.set(len(self.buffer))

    def run(self, stopping: threading.Event, every_s: float = EVENT_FLUSH_SECONDS) -> None:
        """Flush every ``every_s`` until ``stopping`` is set, then once more."""
        while not stopping.wait(every_s):
            self.flush()
        self.flush()


def add_feedback_route(
    app: FastAPI, model_name: str, collector: FeedbackCollector, off_loop: Callable[..., Awaitable[int]]
) -> None:
    """``POST /v2/models/<model_name>/feedback`` on KServe's app (before it starts); the body is parsed by
    ``off_loop`` (the transformer's bounded CPU pool), so a large batch never stalls the event loop."""

    async def post_feedback(request: Request) -> Response:
        try:
            taken = await off_loop(collector.take, await request.body())
        except InvalidEvent as exc:
            return ORJSONResponse({"error": f"feedback refused: {exc}"}, status_code=400)
        except BufferFull as exc:
            return ORJSONResponse({"error": str(exc)}, status_code=429, headers={"Retry-After": str(RETRY_AFTER_S)})
        return ORJSONResponse({"accepted": taken}, status_code=202)

    app.add_api_route(feedback_path(model_name), post_feedback, methods=["POST"])
