"""The transformer's live monitor: a bounded window of recent image queries (their embeddings, the monitored image
statistics, the recommended ids and top-1 scores), tested against the served model's reference profile off the
request path, and the Prometheus gauges a dashboard and the alert rules read (fashionrec_drift_*,
fashionrec_recommendation_coverage, fashionrec_recommendation_gini, fashionrec_low_score_share).

Optionally every observation goes to a JSONL request log for offline analysis (`fashionrec monitor`): the embedding,
the statistics, the top-k ids and top-1 score and the model_version; never the photo itself. A local ``*.jsonl``
file is appended to; any other location (a folder, gs://, s3://, minio://) gets one part file per flush, named by
time and process, as object storage cannot append and every replica writes its own. A write that fails keeps its
lines for the next (as far as the buffer's bound allows; each line lost is reported) and never stops the drift
test; the monitor records when its evaluation and its write last succeeded, which the transformer publishes
(fashionrec_monitor_last_success_timestamp_seconds) for the alert on a monitor gone stale.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.drift.detectors import MIN_WINDOW, DriftDecision, decide, image_stat_drift, mmd_permutation_test
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.storage import LogBuffer, redact_urls

# One logged image query: (time, embedding, image statistics, recommended ids, top-1 score, request id).
LoggedQuery = tuple[float, np.ndarray, dict[str, float], np.ndarray, float, str]
# One logged item query: (time, request id, the item asked about, recommended ids): what an offline replay needs.
LoggedItemQuery = tuple[float, str, int, np.ndarray]
REQUEST_LOG_BUFFER = 10_000  # queries between two flushes at most (~2 KB each: ~20 MB; a flush every MONITOR_SECONDS)
WINDOW = 200  # image queries per test: ~0.8 power on a small embedding shift (tests/monitoring/test_drift.py)
ALPHA = 0.01  # false-alarm rate of each evaluation (image statistics: Bonferroni-corrected across them)
PERMUTATIONS = 200
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    """One evaluation of the window."""

    window: int
    decision: DriftDecision
    coverage: float  # share of the catalogue recommended within the window
    gini: float  # inequality of how often each catalogue item was recommended (0: even, 1: one item only)
    low_score_share: float  # share of queries whose top-1 score is below the reference's 5th percentile


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    if values.sum() == 0:
        return 0.0
    ranks = np.arange(1, len(values) + 1)
    return float((2 * (ranks * values).sum()) / (len(values) * values.sum()) - (len(values) + 1) / len(values))


class LiveMonitor:
    """Thread-safe: request threads ``record``, a background thread ``evaluate``s. ``evaluated_at`` and
    ``written_at`` are the Unix times of the last evaluation and the last request-log write that succeeded (the
    monitor's start until then, so that one that never succeeds goes stale from it); ``on_dropped`` hears of
    every request-log line lost (buffer full, or a failed write past the bound)."""

    def __init__(
        self, profile: ReferenceProfile, window: int = WINDOW, request_log: str | Path | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:  # fmt: skip
        self.profile = profile
        self.window = window
        self.request_log = request_log
        self._lock = threading.Lock()
        self._embeddings: deque[np.ndarray] = deque(maxlen=window)
        self._stats: deque[dict[str, float]] = deque(maxlen=window)
        self._hits: deque[np.ndarray] = deque(maxlen=window)
        self._top1: deque[float] = deque(maxlen=window)
        # queries not in the request log yet: (time, embedding, statistics, hits, top-1 score)
        self._pending: LogBuffer[LoggedQuery | LoggedItemQuery] | None = None
        if request_log is not None:
            self._pending = LogBuffer(str(request_log), self._log_line, capacity=REQUEST_LOG_BUFFER, on_drop=on_dropped)
        self._recorded = 0
        self._evaluated_count = 0
        self.evaluated_at = self.written_at = time.time()

    def record(
        self, embeddings: np.ndarray, stats: list[dict[str, float]], hits: np.ndarray, top1: np.ndarray, request_id: str = ""
    ) -> None:
        """One request's image queries (row i: its embedding, statistics, recommended ids and top-1 score). Only
        appends: the request-log lines are written by ``flush``, on the monitor's thread."""
        now = time.time()
        logged: list[LoggedQuery | LoggedItemQuery] = []
        with self._lock:
            for vector, row_stats, row_hits, score in zip(embeddings, stats, hits, top1, strict=True):
                query = (np.asarray(vector, dtype=np.float32), row_stats, np.asarray(row_hits), float(score))
                self._embeddings.append(query[0])
                self._stats.append(row_stats)
                self._hits.append(query[2])
                self._top1.append(query[3])
                logged.append((now, *query, request_id))
            self._recorded += len(embeddings)
        if self._pending is not None:
            self._pending.add(logged)  # bounded: past it, the log loses queries (counted), the server nothing

    def flush(self) -> None:
        """Write the request-log lines recorded since the last flush (on every evaluation, at a hot swap and at
        shutdown). Raises when the write fails; the lines stay for the next flush, as far as the bound allows."""
        if self._pending is not None:
            self._pending.flush()
        self.written_at = time.time()

    @property
    def dropped(self) -> int:
        """Queries the request log lost: its buffer was full, or a failed write held more than it has room for."""
        return self._pending.dropped if self._pending is not None else 0

    @property
    def buffered(self) -> int:
        """Request-log lines waiting for the next flush."""
        return len(self._pending) if self._pending is not None else 0

    def record_item(self, request_id: str, item_id: int, hits: np.ndarray) -> None:
        """An item query ("more like item_id") and its answer, for the request log only (no drift test reads it):
        with the shoppers' clicks on it, what an offline replay scores a candidate model on."""
        if self._pending is not None:
            self._pending.add([(time.time(), request_id, int(item_id), np.asarray(hits))])

    def _log_line(self, record: LoggedQuery | LoggedItemQuery) -> str:
        if len(record) == 4:
            when, request_id, item_id, answer = record
            return json.dumps(
                {
                    "time": when,
                    "model_version": self.profile.model_version,
                    "request_id": request_id,
                    "query_item_id": item_id,
                    "item_ids": [int(i) for i in answer if i != -1],
                }
            )
        when, vector, stats, hits, top1, request_id = record
        return json.dumps(
            {
                "request_id": request_id,
                "time": when,
                "model_version": self.profile.model_version,
                "embedding": [round(float(v), 6) for v in vector],
                "stats": stats,
                "item_ids": [int(i) for i in hits if i != -1],
                "top1_score": top1,
            }
        )

    def evaluate(self) -> Health | None:
        """Write pending request-log lines, then test the window against the reference if it holds enough queries
        and changed since the last evaluation. None when there was nothing (new) to test. A failed write is logged
        and never stops the test: the drift gauges must not freeze while the log's storage is down (its lines wait
        for the next flush, ``written_at`` stays behind and the drops are counted)."""
        try:
            self.flush()
        except Exception:
            where = redact_urls(str(self.request_log))
            logger.exception("writing the request log to %s failed; its lines wait for the next flush", where)
        with self._lock:
            fresh = self._recorded != self._evaluated_count
            self._evaluated_count = self._recorded
            embeddings = np.stack(list(self._embeddings)) if self._embeddings else np.empty((0, 0), dtype=np.float32)
            stats = list(self._stats)
            hits = list(self._hits)
            top1 = np.asarray(self._top1, dtype=np.float64)
        health = health_of(self.profile, embeddings, stats, hits, top1) if fresh and len(embeddings) >= MIN_WINDOW else None
        self.evaluated_at = time.time()
        return health


def health_of(
    profile: ReferenceProfile, embeddings: np.ndarray, stats: list[dict[str, float]], hits: list[np.ndarray], top1: np.ndarray
) -> Health:
    """Drift of a window of queries against the profile, and the health of what was recommended to them."""
    results = [mmd_permutation_test(profile.embeddings, embeddings, permutations=PERMUTATIONS, alpha=ALPHA)]
    window_stats = {name: np.asarray([row[name] for row in stats], dtype=np.float64) for name in profile.image_stats}
    results += image_stat_drift(profile.image_stats, window_stats, alpha=ALPHA)
    recommended = np.concatenate(hits) if hits else np.empty(0, dtype=np.int64)
    recommended = recommended[recommended != -1]
    _, counts = np.unique(recommended, return_counts=True)
    catalogue_counts = np.zeros(max(profile.catalogue_size, len(counts)))
    catalogue_counts[: len(counts)] = counts
    return Health(
        window=len(embeddings),
        decision=decide(results),
        coverage=len(counts) / max(profile.catalogue_size, 1),
        gini=gini(catalogue_counts),
        low_score_share=float((top1 < profile.low_score_threshold).mean()) if len(top1) else 0.0,
    )


def as_dict(health: Health) -> dict[str, Any]:
    return {
        "window": health.window,
        "drifted": health.decision.drifted,
        "reasons": health.decision.reasons,
        "coverage": health.coverage,
        "gini": health.gini,
        "low_score_share": health.low_score_share,
        "signals": {
            r.signal: {"statistic": r.statistic, "p_value": r.p_value, "drifted": r.drifted} for r in health.decision.results
        },
    }
