"""Prometheus metrics of the transformer and the ASGI guard that counts every answer and refuses oversized bodies.

The metrics live in prometheus_client's default registry, which KServe's ModelServer already exposes on /metrics
(next to its own request_{preprocess,predict,postprocess}_seconds). They are created on first use, once per process.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram, Info

# Sub-millisecond resolution: the hop budget is 2 ms, the FAISS search and Feast read are fractions of it.
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class TransformerMetrics:
    requests: Counter
    request_seconds: Histogram
    predictor_seconds: Histogram
    faiss_seconds: Histogram
    feast_seconds: Histogram
    index_items: Gauge
    model: Info
    stale: Counter
    swaps: Counter


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
        index_items=Gauge("fashionrec_index_items", "Items in the current FAISS index"),
        model=Info("fashionrec_model", "The model version, index type and dataset digest now served"),
        stale=Counter(
            "fashionrec_stale_embeddings",
            "Requests refused because an embedding's model_version matched no loaded index",
            ["source"],
        ),
        swaps=Counter("fashionrec_index_swaps", "Index snapshots loaded while serving (hot swaps)"),
    )


class RequestGuard:
    """Pure ASGI middleware: refuses bodies over ``max_body_bytes`` with a v2 error body and a 413 (before the
    handler reads them), counts every answer by status, and times infer requests."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = transformer_metrics()
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await self._refuse(send_and_record, f"request body of {int(length)} bytes")
                return
            if length is None and scope.get("method") in ("POST", "PUT"):
                # Chunked upload: read it here, up to the limit, then hand the handler the bytes it would have read.
                body, more, total = [], True, 0
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body.append(message.get("body", b""))
                    total += len(body[-1])
                    more = message.get("more_body", False)
                    if total > self.max_body_bytes:
                        await self._refuse(send_and_record, "request body above")
                        return
                receive = _replay(b"".join(body))
            await self.app(scope, receive, send_and_record)
        finally:
            metrics.requests.labels(status=str(status)).inc()
            if scope.get("path", "").endswith("/infer"):
                metrics.request_seconds.observe(time.perf_counter() - started)

    async def _refuse(self, send: Any, what: str) -> None:
        message = f"{what} is above the limit of {self.max_body_bytes} bytes; send fewer or smaller images per request"
        body = orjson.dumps({"error": message})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def guard_app(app: Any, max_request_bytes: int) -> None:
    """Put the size limit and the status/latency metrics in front of KServe's FastAPI app (before it starts)."""
    app.add_middleware(RequestGuard, max_body_bytes=max_request_bytes)
