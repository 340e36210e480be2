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
        infer = scope.get("path", "").endswith("/infer")
        held_start: dict[str, Any] | None = None

        async def send_and_record(message: dict[str, Any]) -> None:
            nonlocal status, held_start
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if infer:  # label it once the body is known (see _label_json_body)
                    held_start = message
                    return
            elif held_start is not None:
                await send(_label_json_body(held_start, message))
                held_start = None
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await self._refuse(send_and_record, f"request body of {int(length)} bytes")
                return
            binary_header = headers.get(b"inference-header-content-length")
            if (length is None or binary_header is not None) and scope.get("method") in ("POST", "PUT"):
                # Read the body here (bounded): chunked uploads, and binary tensor requests that are rewritten below.
                chunks, more, total = [], True, 0
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunks.append(message.get("body", b""))
                    total += len(chunks[-1])
                    more = message.get("more_body", False)
                    if total > self.max_body_bytes:
                        await self._refuse(send_and_record, "request body")
                        return
                body = b"".join(chunks)
                if binary_header is not None:
                    try:
                        body = binary_to_json(body, binary_header)
                    except ValueError as exc:
                        await self._answer(send_and_record, 400, f"binary tensor request: {exc}")
                        return
                    kept = [
                        (k, v)
                        for k, v in scope["headers"]
                        if k not in (b"content-length", b"content-type", b"inference-header-content-length")
                    ]
                    scope = {
                        **scope,
                        "headers": [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                    }
                receive = _replay(body)
            await self.app(scope, receive, send_and_record)
        finally:
            metrics.requests.labels(status=str(status)).inc()
            if infer:
                metrics.request_seconds.observe(time.perf_counter() - started)

    async def _refuse(self, send: Any, what: str) -> None:
        message = f"{what} is above the limit of {self.max_body_bytes} bytes; send fewer or smaller images per request"
        await self._answer(send, 413, message)

    @staticmethod
    async def _answer(send: Any, status: int, message: str) -> None:
        body = orjson.dumps({"error": message})  # the v2 error body
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _label_json_body(start: dict[str, Any], first_body: dict[str, Any]) -> dict[str, Any]:
    """The response start with content-type and content-length filled in where the handler left them out.

    The transformer's infer answer is pre-encoded JSON (``transformer.RecommendationResponse``), which KServe sends as
    a bare body with neither header (its path for binary-extension answers); clients and proxies need both.
    """
    headers = list(start.get("headers") or [])
    names = {name.lower() for name, _ in headers}
    if b"content-type" not in names and b"inference-header-content-length" not in names:
        headers.append((b"content-type", b"application/json"))
    if b"content-length" not in names and b"transfer-encoding" not in names and not first_body.get("more_body"):
        headers.append((b"content-length", str(len(first_body.get("body", b""))).encode()))
    return {**start, "headers": headers}


_NUMPY_TYPES = {
    "BOOL": "?", "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "u1", "UINT16": "<u2",
    "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip


def binary_to_json(body: bytes, header_length: bytes) -> bytes:
    """A v2 binary tensor request (JSON header + raw tensors) as the equivalent JSON request; BYTES become base64.

    KServe 0.21 reads binary BYTES tensors by decoding them as UTF-8, so raw image bytes fail there with a 500.
    Every structural problem is a ValueError (the guard answers 400).
    """
    import base64
    import struct

    import numpy as np

    if not header_length.isdigit() or not 0 < int(header_length) <= len(body):
        raise ValueError(
            f"Inference-Header-Content-Length {header_length.decode(errors='replace')!r} does not fit a {len(body)}-byte body"
        )
    split = int(header_length)
    try:
        request = orjson.loads(body[:split])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the JSON header is not JSON: {exc}") from exc
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise ValueError("the JSON header needs an 'inputs' list")
    offset = split
    for tensor in request["inputs"]:
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(body):
            raise ValueError(f"binary_data_size {size!r} of input {tensor.get('name')!r} runs past the end of the body")
        raw, offset = body[offset : offset + size], offset + size
        datatype = tensor.get("datatype")
        if datatype == "BYTES":
            items, at = [], 0
            while at < len(raw):
                if at + 4 > len(raw):
                    raise ValueError(f"input {tensor.get('name')!r}: truncated BYTES length prefix")
                (n,) = struct.unpack_from("<I", raw, at)
                if at + 4 + n > len(raw):
                    raise ValueError(f"input {tensor.get('name')!r}: a BYTES element runs past its tensor")
                items.append(base64.b64encode(raw[at + 4 : at + 4 + n]).decode("ascii"))
                at += 4 + n
            tensor["data"] = items
        elif datatype in _NUMPY_TYPES:
            dtype = np.dtype(_NUMPY_TYPES[datatype])
            if len(raw) % dtype.itemsize:
                raise ValueError(f"input {tensor.get('name')!r}: {len(raw)} bytes is not a whole number of {datatype}")
            tensor["data"] = np.frombuffer(raw, dtype=dtype).tolist()
        else:
            raise ValueError(f"input {tensor.get('name')!r}: unknown datatype {datatype!r}")
        parameters.pop("binary_data_size")  # type: ignore[union-attr]
    if offset != len(body):
        raise ValueError(f"{len(body) - offset} bytes after the last tensor")
    return orjson.dumps(request)


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
    """Put the size limit and the status/latency metrics in front of KServe's FastAPI app (before it starts), and
    answer bodies FastAPI cannot parse with a v2 error body and a 400 instead of its own 422 ``detail`` list."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import ORJSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def invalid_body(request: Any, exc: RequestValidationError) -> ORJSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()[:5])
        return ORJSONResponse({"error": f"not a v2 inference request: {problems}"}, status_code=400)

    async def http_error(request: Any, exc: StarletteHTTPException) -> ORJSONResponse:
        return ORJSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(RequestGuard, max_body_bytes=max_request_bytes)
