"""Recall watched live: a small share of real queries (plain and filtered) is re-run as an exact search off the
request path, and the served index's recall@10 over the last checks is published per model version beside the
recall it was calibrated to reach (FashionrecIndexRecallLow fires when it stays below).

What can lower it after calibration: many live additions to an HNSW graph, a catalogue that drifted from the one the
knob was measured on, restrictive filters. Its cost is bounded: a request is sampled with probability ``share``,
at most one check waits and one runs at a time on its own thread (a sample that finds one waiting is skipped and
counted), and a check is one exact scan of the index (tens of ms at 1M items, benchmarks/bench_filters.py).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from fashionrec.config import INDEX_RECALL_K, INDEX_RECALL_TARGET
from fashionrec.retrieval.attributes import ItemFilter
from fashionrec.retrieval.calibration import recall_at_k
from fashionrec.retrieval.index import ItemIndex
from fashionrec.serving.metrics import transformer_metrics

RECALL_SAMPLE_SHARE = 0.01  # requests whose search is checked (the transformer's --recall_sample_share)
RECALL_WINDOW = 200  # checked queries the published recall averages over, per model version
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    index: ItemIndex
    queries: np.ndarray  # [n, dim], as searched
    served: np.ndarray  # [n, >= INDEX_RECALL_K] item ids the served search returned, best first
    item_filter: ItemFilter


class RecallWatch:
    """Takes samples from the request path (``offer``, never blocking) and checks them on its own thread (``run``)."""

    def __init__(self, share: float = RECALL_SAMPLE_SHARE, window: int = RECALL_WINDOW, seed: int | None = None) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the recall sample share must be between 0 and 1, got {share}")
        self.share = share
        self.window = window
        self._pending: queue.Queue[Sample] = queue.Queue(maxsize=1)
        self._recalls: dict[str, deque[float]] = {}
        self._random = random.Random(seed)

    def offer(self, index: ItemIndex, queries: np.ndarray, served: np.ndarray, item_filter: ItemFilter) -> bool:
        """Maybe keep this search for a check (True if kept). Copies only what it keeps."""
        if self.share == 0.0 or self._random.random() >= self.share or served.shape[1] < INDEX_RECALL_K:
            return False
        sample = Sample(index, queries.copy(), served[:, :INDEX_RECALL_K].copy(), item_filter)
        try:
            self._pending.put_nowait(sample)
        except queue.Full:
            transformer_metrics().recall_checks.labels(model_version=index.meta.model_version, outcome="skipped").inc()
            return False
        return True

    def check_once(self, timeout: float | None = None) -> float | None:
        """Check the waiting sample (waiting up to ``timeout`` for one): its recall@10, or None if there was none."""
        try:
            sample = self._pending.get(timeout=timeout)
        except queue.Empty:
            return None
        _, truth = sample.index.exact_search(sample.queries, INDEX_RECALL_K, sample.item_filter)
        rows = [(s, t[t >= 0]) for s, t in zip(sample.served, truth, strict=True) if (t >= 0).any()]
        if not rows:
            return None
        recall = float(np.mean([recall_at_k(s[None, :], t[None, :]) for s, t in rows]))
        version = sample.index.meta.model_version
        recalls = self._recalls.setdefault(version, deque(maxlen=self.window))
        recalls.append(recall)
        metrics = transformer_metrics()
        metrics.index_recall.labels(model_version=version).set(float(np.mean(recalls)))
        metrics.recall_checks.labels(model_version=version, outcome="checked").inc()
        return recall

    def publish_target(self, index: ItemIndex) -> None:
        """The recall the index was calibrated to reach (exact indexes and those chosen by size: the default)."""
        calibration = index.meta.calibration or {}
        target = float(calibration.get("target_recall", INDEX_RECALL_TARGET))
        transformer_metrics().index_recall_target.labels(model_version=index.meta.model_version).set(target)

    def run(self, stopping: threading.Event) -> None:
        """Check samples until stopped; a failed check is logged, never fatal."""
        while not stopping.is_set():
            try:
                self.check_once(timeout=0.5)
            except Exception:
                logger.exception("a live recall check failed")
