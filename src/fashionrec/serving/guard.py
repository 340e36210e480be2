"""The ASGI request guard in front of KServe's app: refuses oversized bodies with a 413 before anything reads them,
answers the repository (load/unload) API only to holders of the admin token, rewrites binary tensor requests to JSON
(fashionrec.serving.binary), labels pre-encoded answers, counts every answer by status and times infer requests."""

from __future__ import annotations

import hmac
import time
from typing import Any

import orjson

from fashionrec.serving.binary import binary_to_json
from fashionrec.serving.metrics import transformer_metrics

ADMIN_HEADER = "authorization"  # "Bearer <token>", over REST (a header) and gRPC (metadata) alike
ADMIN_PATH = "/v2/repository/"
DRAIN_FACTOR = 4  # an oversized body is read and dropped up to this many times the limit, then the connection goes  # KServe's model repository extension: load and unload


def is_admin(authorization: str | None, token: str | None) -> bool:
    """Does an Authorization value carry the admin token (constant-time compare)?"""
    if token is None or not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode())


class RequestGuard:
    """Pure ASGI middleware: refuses bodies over ``max_body_bytes`` with a v2 error body and a 413 (before the
    handler reads them), counts every answer by status, and times infer requests."""

    def __init__(self, app: Any, max_body_bytes: int, admin_token: str | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.admin_token = admin_token

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
            if scope.get("path", "").startswith(ADMIN_PATH):
                authorization = headers.get(ADMIN_HEADER.encode(), b"").decode("latin-1")
                if not is_admin(authorization, self.admin_token):
                    await self._answer(send_and_record, 403, "the repository API needs the admin token")
                    return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                if headers.get(b"expect", b"").lower() != b"100-continue":  # the client sends before it reads
                    await self._drain(receive, DRAIN_FACTOR * self.max_body_bytes)
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

    @staticmethod
    async def _drain(receive: Any, limit: int) -> None:
        """Read and drop the body, so that a client that sends it all before reading (urllib, many SDKs) gets to read
        the 413 instead of a connection reset. Past ``limit`` bytes the connection is given up."""
        drained, more = 0, True
        while more and drained <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)

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


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def guard_app(app: Any, max_request_bytes: int, admin_token: str | None = None) -> None:
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
    app.add_middleware(RequestGuard, max_body_bytes=max_request_bytes, admin_token=admin_token)
