"""Prometheus metrics of the transformer (request counts by status, latencies of each hop, the served version).

The metrics live in prometheus_client's default registry, which KServe's ModelServer already exposes on /metrics
(next to its own request_{preprocess,predict,postprocess}_seconds). They are created on first use, once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, Info

if TYPE_CHECKING:  # an annotation only: the encoder runtimes import these metrics too, not the drift tests
    from fashionrec.drift.live import Health, LiveMonitor

# Sub-millisecond resolution: the hop budget is 2 ms, the FAISS search and Feast read are fractions of it.
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class TransformerMetrics:
    requests: Counter
    request_seconds: Histogram
    predictor_seconds: Histogram
    faiss_seconds: Histogram
    feast_seconds: Histogram
    respond_seconds: Histogram
    index_items: Gauge
    model: Info
    stale: Counter
    swaps: Counter
    version_requests: Counter
    version_seconds: Histogram
    canary_share: Gauge
    catalog_changes: Counter
    catalog_waiting: Gauge
    index_recall: Gauge
    index_recall_target: Gauge
    recall_checks: Counter
    drift_score: Gauge
    drift_p_value: Gauge
    drift_detected: Gauge
    drift_window: Gauge
    coverage: Gauge
    gini: Gauge
    low_score_share: Gauge
    monitor_last_success: Gauge
    monitor_interval: Gauge
    request_log_dropped: Counter
    request_log_buffered: Gauge
    feedback_events: Counter
    feedback_rejected: Counter
    feedback_buffered: Gauge
    engagement_answers: Counter
    engagement_clicked: Counter
    engagement_reciprocal_ranks: Counter


@functools.cache
def transformer_metrics() -> TransformerMetrics:
    return TransformerMetrics(
        requests=Counter("fashionrec_requests", "HTTP answers of the transformer, by status code", ["status"]),
        request_seconds=Histogram(
            "fashionrec_request_seconds", "Whole infer request, first byte in to last byte out", buckets=LATENCY_BUCKETS
        ),
        predictor_seconds=Histogram(
            "fashionrec_predictor_seconds", "Round trip to the encoder predictor", buckets=LATENCY_BUCKETS
        ),
        faiss_seconds=Histogram("fashionrec_faiss_seconds", "FAISS search of one request", buckets=LATENCY_BUCKETS),
        feast_seconds=Histogram(
            "fashionrec_feast_seconds", "Feast online read of one request", ["read"], buckets=LATENCY_BUCKETS
        ),
        respond_seconds=Histogram(
            "fashionrec_response_encode_seconds", "Encoding one REST answer to JSON bytes", buckets=LATENCY_BUCKETS
        ),
        index_items=Gauge("fashionrec_index_items", "Items in the current FAISS index"),
        model=Info("fashionrec_model", "The model version, index type and dataset digest now served"),
        stale=Counter(
            "fashionrec_stale_embeddings",
            "Requests refused because an embedding's model_version matched no loaded index",
            ["source"],
        ),
        swaps=Counter("fashionrec_index_swaps", "Index snapshots loaded while serving (hot swaps)"),
        # What a rollout compares between the canary and the stable version (fashionrec.deploy.canary).
        version_requests=Counter(
            "fashionrec_model_requests", "Infer requests by the model version that answered them", ["model_version", "outcome"]
        ),
        version_seconds=Histogram(
            "fashionrec_model_request_seconds",
            "Infer latency (preprocessed request to answer) of successful requests, by model version",
            ["model_version"],
            buckets=LATENCY_BUCKETS,
        ),
        canary_share=Gauge("fashionrec_canary_share", "Share of requests the canary snapshot answers (0: no canary)"),
        catalog_changes=Counter(
            "fashionrec_catalog_changes",
            "Items of catalogue changes applied to a live index, by action and outcome (no_vector: the online store "
            "has no vector of that index's model version for an added item)",
            ["model_version", "action", "outcome"],
        ),
        catalog_waiting=Gauge(
            "fashionrec_catalog_items_waiting_for_vector",
            "Products added live that this index has no vector of its model version for yet: retried at every poll",
            ["model_version"],
        ),
        # Recall watched live (fashionrec.serving.recall): sampled queries re-run as exact searches, off the path.
        index_recall=Gauge(
            "fashionrec_index_recall",
            "Served index's recall@10 against exact search over the last checked queries (filters included)",
            ["model_version"],
        ),
        index_recall_target=Gauge(
            "fashionrec_index_recall_target", "The recall@10 the index was calibrated to reach", ["model_version"]
        ),
        recall_checks=Counter(
            "fashionrec_recall_checks",
            "Sampled queries re-run as exact searches (outcome: checked, or skipped while one was in progress)",
            ["model_version", "outcome"],
        ),
        # Monitoring (fashionrec.drift.live): the recent query window against the model's reference profile.
        drift_score=Gauge("fashionrec_drift_score", "Drift statistic of the recent window (MMD^2 or KS D)", ["signal"]),
        drift_p_value=Gauge("fashionrec_drift_p_value", "p-value of the drift test of the recent window", ["signal"]),
        drift_detected=Gauge(
            "fashionrec_drift_detected", "1 when the signal drifted (p-value at or below its threshold)", ["signal"]
        ),
        drift_window=Gauge("fashionrec_drift_window_size", "Image queries in the window the drift tests used"),
        coverage=Gauge("fashionrec_recommendation_coverage", "Share of the catalogue recommended within the window"),
        gini=Gauge("fashionrec_recommendation_gini", "Gini of how often each catalogue item was recommended (window)"),
        low_score_share=Gauge(
            "fashionrec_low_score_share", "Share of window queries whose top-1 score is below the reference's 5th percentile"
        ),
        # Whether the monitor itself works: a thread that stopped, or a request log that cannot be written, leaves
        # every gauge above at its last value, which the alerts would read as calm.
        monitor_last_success=Gauge(
            "fashionrec_monitor_last_success_timestamp_seconds",
            "Unix time of the monitor's last successful step (evaluation: the drift test of every served window; "
            "request_log: the write of every monitor's pending lines), the oldest of the monitors",
            ["step"],
        ),
        monitor_interval=Gauge("fashionrec_monitor_interval_seconds", "How often the monitor runs (--monitor_seconds)"),
        request_log_dropped=Counter(
            "fashionrec_request_log_dropped_lines",
            "Request-log lines lost: the buffer was full, or a failed write held more lines than it has room for",
        ),
        request_log_buffered=Gauge("fashionrec_request_log_buffered_lines", "Request-log lines waiting for the next write"),
        # Engagement (fashionrec.serving.feedback): what shoppers were shown and chose, per model version. CTR@5 is
        # clicked_answers / answers, MRR reciprocal_ranks / answers (fashionrec.engagement.tally).
        feedback_events=Counter(
            "fashionrec_feedback_events", "Feedback events taken, by model version and type", ["model_version", "type"]
        ),
        feedback_rejected=Counter("fashionrec_feedback_rejected", "Feedback posts refused (4xx), by reason", ["reason"]),
        feedback_buffered=Gauge("fashionrec_feedback_buffered", "Feedback events waiting for the event log"),
        engagement_answers=Counter(
            "fashionrec_engagement_answers", "Answers shown to shoppers (rank-1 impressions)", ["model_version"]
        ),
        engagement_clicked=Counter(
            "fashionrec_engagement_clicked_answers", "Answers shown with a click within the top 5", ["model_version"]
        ),
        engagement_reciprocal_ranks=Counter(
            "fashionrec_engagement_reciprocal_ranks", "Sum over answers of 1 / the best rank clicked", ["model_version"]
        ),
    )


def publish_health(health: Health) -> None:
    """Set the transformer's drift and recommendation-health gauges from one evaluation of its live window."""
    metrics = transformer_metrics()
    for result in health.decision.results:
        metrics.drift_score.labels(signal=result.signal).set(result.statistic)
        metrics.drift_p_value.labels(signal=result.signal).set(result.p_value)
        metrics.drift_detected.labels(signal=result.signal).set(1.0 if result.drifted else 0.0)
    metrics.drift_window.set(health.window)
    metrics.coverage.set(health.coverage)
    metrics.gini.set(health.gini)
    metrics.low_score_share.set(health.low_score_share)


EVALUATION_STEP = "evaluation"  # the label values of fashionrec_monitor_last_success_timestamp_seconds
REQUEST_LOG_STEP = "request_log"


def publish_monitoring(served: list[LiveMonitor], writing: list[LiveMonitor], logged: bool) -> None:
    """The monitor's own health: the oldest last success of the ``served`` monitors' evaluations and, with a
    request log (``logged``), of the ``writing`` monitors' writes (the served ones and those swapped out with lines
    still to write), and the lines they hold."""
    metrics = transformer_metrics()
    if served:
        metrics.monitor_last_success.labels(step=EVALUATION_STEP).set(min(m.evaluated_at for m in served))
    if logged and writing:
        metrics.monitor_last_success.labels(step=REQUEST_LOG_STEP).set(min(m.written_at for m in writing))
        metrics.request_log_buffered.set(sum(m.buffered for m in writing))
