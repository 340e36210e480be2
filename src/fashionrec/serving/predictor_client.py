"""The transformer's hop to the encoder predictor: one long-lived, pooled async connection set per process.

- ``v2`` (REST, JSON): works with TorchServe (which speaks only the infer endpoint of v2) and with the KServe-hosted
  encoder. aiohttp with a keep-alive pool: KServe's own httpx-based client costs about twice as much per call.
- ``grpc-v2``: the v2 gRPC protocol, only the KServe-hosted encoder has it (TorchServe's gRPC is its own API).

Both return the embeddings with the model_version that made them; the transformer decides what to do with it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import grpc
import numpy as np
import orjson
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.errors import InvalidInput, ServerNotReady

from fashionrec.config import INPUT_IMAGE, OUTPUT_EMBEDDING, predictor_model_name
from fashionrec.serving.torchserve import TorchServeKeys, bearer

PROTOCOLS = ("v2", "grpc-v2")
# TorchServe refuses a missing, wrong or expired key with a 400 of this type (not a 401).
TOKEN_REFUSED = b"InvalidKeyException"


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # [n, dim] float32
    model_version: str | None


class PredictorClient(Protocol):
    async def embed(
        self, images: list[bytes], encoded: list[str] | None, request_id: str | None, model_version: str
    ) -> Embeddings:
        """Embed raw images with the encoder of ``model_version`` (the predictor serves each version under its own
        name); ``encoded`` is their base64 form when the caller already has it (saves re-encoding)."""
        ...

    async def close(self) -> None: ...


def predictor_error(status: int, body: bytes) -> Exception:
    """A predictor's non-200 answer as the exception KServe turns into the right status for our client."""
    try:
        parsed = orjson.loads(body)
        message = str(parsed.get("error") or parsed.get("message") or parsed) if isinstance(parsed, dict) else str(parsed)
    except orjson.JSONDecodeError:
        message = body[:300].decode("utf-8", "replace")
    if 400 <= status < 500 and status not in (404, 408, 429):
        return InvalidInput(f"the encoder refused the request: {message}")
    return ServerNotReady(f"the encoder answered {status}: {message}")


def parse_v2_embeddings(body: dict[str, Any]) -> Embeddings:
    outputs = {o.get("name"): o for o in body.get("outputs") or [] if isinstance(o, dict)}
    if OUTPUT_EMBEDDING not in outputs:
        raise ServerNotReady(f"the encoder answered without an '{OUTPUT_EMBEDDING}' output")
    tensor = outputs[OUTPUT_EMBEDDING]
    vectors = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    # KServe 0.21's REST response parser drops model_version, so the encoder repeats it in parameters.
    version = body.get("model_version") or (body.get("parameters") or {}).get("model_version")
    return Embeddings(vectors, None if version is None else str(version))


class RestPredictor:
    """v2 REST over a keep-alive aiohttp pool, created lazily inside the server's event loop. With ``key_file`` (a
    local TorchServe's key_file.json) every call carries its inference key."""

    def __init__(self, host: str, timeout_s: float = 30.0, pool_size: int = 64, key_file: Path | None = None) -> None:
        base = host if host.startswith(("http://", "https://")) else f"http://{host}"
        self.base_url = base.rstrip("/")
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self.key_file = key_file
        self._headers: dict[str, str] | None = None
        self._session: Any = None

    def headers(self, fresh: bool = False) -> dict[str, str]:
        """The request headers, with the inference key read once (again when ``fresh``: a restarted TorchServe has a
        new one)."""
        if self._headers is None or fresh:
            headers = {"Content-Type": "application/json"}
            if self.key_file is not None:
                try:
                    headers |= bearer(TorchServeKeys.read(self.key_file).inference)
                except (OSError, ValueError) as exc:
                    raise ServerNotReady(f"the encoder's key file cannot be read yet: {exc}") from exc
            self._headers = headers
        return self._headers

    def _client(self) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=60, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def url(self, model_version: str) -> str:
        return f"{self.base_url}/v2/models/{predictor_model_name(model_version)}/infer"

    async def embed(
        self, images: list[bytes], encoded: list[str] | None, request_id: str | None, model_version: str
    ) -> Embeddings:
        url = self.url(model_version)
        data = encoded if encoded is not None else [base64.b64encode(i).decode("ascii") for i in images]
        body: dict[str, Any] = {"inputs": [{"name": INPUT_IMAGE, "datatype": "BYTES", "shape": [len(data)], "data": data}]}
        if request_id:
            body["id"] = request_id
        payload = orjson.dumps(body)
        status, raw = await self._post(url, payload, self.headers())
        if status != 200 and self.key_file is not None and TOKEN_REFUSED in raw:
            status, raw = await self._post(url, payload, self.headers(fresh=True))  # its keys changed: it was restarted
            if status != 200 and TOKEN_REFUSED in raw:
                raise ServerNotReady(f"the encoder refused the inference key of {self.key_file.name}")
        if status != 200:
            raise predictor_error(status, raw)
        return parse_v2_embeddings(orjson.loads(raw))

    async def _post(self, url: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            async with self._client().post(url, data=data, headers=headers) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ServerNotReady(f"the encoder at {url} is unreachable: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class GrpcPredictor:
    """v2 gRPC (KServe's InferenceGRPCClient: one channel, multiplexed)."""

    def __init__(self, host: str, timeout_s: float = 30.0) -> None:
        self.host = host
        self.timeout_s = timeout_s
        self._client: Any = None

    async def embed(
        self, images: list[bytes], encoded: list[str] | None, request_id: str | None, model_version: str
    ) -> Embeddings:
        if self._client is None:
            # KServe's default retry policy re-sends only on UNAVAILABLE (the encoder not answering), which is safe.
            self._client = InferenceGRPCClient(self.host, timeout=self.timeout_s)
        tensor = InferInput(INPUT_IMAGE, [len(images)], "BYTES")
        tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
        request = InferRequest(model_name=predictor_model_name(model_version), infer_inputs=[tensor], request_id=request_id)
        try:
            response = await self._client.infer(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidInput(f"the encoder refused the request: {exc.details()}") from exc
            raise ServerNotReady(f"the encoder at {self.host} answered {exc.code().name}: {exc.details()}") from exc
        outputs = {o.name: o for o in response.outputs}
        if OUTPUT_EMBEDDING not in outputs:
            raise ServerNotReady(f"the encoder answered without an '{OUTPUT_EMBEDDING}' output")
        vectors = np.asarray(outputs[OUTPUT_EMBEDDING].as_numpy(), dtype=np.float32)
        version = response.model_version or (response.parameters or {}).get("model_version")
        return Embeddings(vectors, None if version is None else str(version))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def make_predictor(protocol: str, host: str, timeout_s: float = 30.0, key_file: Path | None = None) -> PredictorClient:
    """A client of the predictor at ``host``; ``key_file``: a local TorchServe's keys (v2 REST only: TorchServe has
    no v2 gRPC)."""
    if protocol == "v2":
        return RestPredictor(host, timeout_s, key_file=key_file)
    if protocol == "grpc-v2":
        if key_file is not None:
            raise ValueError("a TorchServe key file goes with the v2 REST protocol only (TorchServe has no v2 gRPC)")
        return GrpcPredictor(host, timeout_s)
    raise ValueError(f"predictor protocol must be one of {PROTOCOLS}, got {protocol!r}")
