"""A small v2 client for the transformer: build requests, call, and turn responses into rows."""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from fashionrec.config import (
    ATTRIBUTE_COLUMNS,
    DEFAULT_TOP_K,
    EXCLUDE_PARAMETER,
    FAMILY_CAP_PARAMETER,
    FILTER_PARAMETER,
    INPUT_IMAGE,
    INPUT_ITEM_ID,
    MMR_PARAMETER,
    MODEL_NAME,
    OUTPUT_ITEM_ID,
    OUTPUT_SCORE,
    feedback_path,
)
from fashionrec.storage import redact_urls


class QueryError(RuntimeError):
    """The server refused the query (status: the HTTP status, 0 when there was no answer) and the message why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Hit:
    item_id: int
    score: float
    attributes: dict[str, str]


@dataclass(frozen=True)
class Steering:
    """What a query may return and how varied (README, contract): ``filter`` e.g. ``{"gender": "Women",
    "articleType": ["Tops", "Tunics"], "year": {"min": 2012}}``; ids never to return; at most ``family_cap``
    answers per product family; ``mmr_lambda`` < 1 trades similarity for variety."""

    filter: dict[str, Any] | None = None
    exclude_ids: list[int] | None = None
    family_cap: int | None = None
    mmr_lambda: float | None = None

    def parameters(self, top_k: int) -> dict[str, Any]:
        """v2 parameters are scalars (over REST and gRPC alike): the filter and the exclusions travel as JSON text."""
        parameters: dict[str, Any] = {"top_k": top_k}
        if self.filter:
            parameters[FILTER_PARAMETER] = json.dumps(self.filter)
        if self.exclude_ids:
            parameters[EXCLUDE_PARAMETER] = json.dumps(self.exclude_ids)  # checked by the transformer
        if self.family_cap is not None:
            parameters[FAMILY_CAP_PARAMETER] = self.family_cap
        if self.mmr_lambda is not None:
            parameters[MMR_PARAMETER] = self.mmr_lambda
        return parameters


def image_request(images: list[bytes], top_k: int = DEFAULT_TOP_K, steering: Steering | None = None) -> dict[str, Any]:
    encoded = [base64.b64encode(i).decode("ascii") for i in images]
    return {
        "inputs": [{"name": INPUT_IMAGE, "datatype": "BYTES", "shape": [len(encoded)], "data": encoded}],
        "parameters": (steering or Steering()).parameters(top_k),
    }


def binary_image_request(images: list[bytes], top_k: int = DEFAULT_TOP_K) -> tuple[bytes, dict[str, str]]:
    """The same query with the v2 binary tensor extension: raw image bytes after the JSON header, no base64.

    Returns (body, headers); BYTES elements are each prefixed with their length (4 bytes, little endian).
    """
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = {
        "inputs": [
            {
                "name": INPUT_IMAGE,
                "datatype": "BYTES",
                "shape": [len(images)],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"top_k": top_k},
    }
    encoded = json.dumps(header).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(encoded))}
    return encoded + raw, headers


def item_request(item_ids: list[int], top_k: int = DEFAULT_TOP_K, steering: Steering | None = None) -> dict[str, Any]:
    return {
        "inputs": [{"name": INPUT_ITEM_ID, "datatype": "INT64", "shape": [len(item_ids)], "data": item_ids}],
        "parameters": (steering or Steering()).parameters(top_k),
    }


def parse_hits(response: dict[str, Any]) -> list[list[Hit]]:
    """One list of hits per query, best first; empty slots (catalogue smaller than top_k) are left out."""
    outputs = {o["name"]: o for o in response["outputs"]}
    shape = outputs[OUTPUT_ITEM_ID]["shape"]
    ids = np.asarray(outputs[OUTPUT_ITEM_ID]["data"], dtype=np.int64).reshape(shape)
    scores = np.asarray(outputs[OUTPUT_SCORE]["data"], dtype=np.float32).reshape(shape)
    columns = {c: np.asarray(outputs[c]["data"], dtype=object).reshape(shape) for c in ATTRIBUTE_COLUMNS if c in outputs}
    return [
        [
            Hit(int(ids[r, c]), float(scores[r, c]), {name: str(values[r, c]) for name, values in columns.items()})
            for c in range(shape[1])
            if ids[r, c] != -1
        ]
        for r in range(shape[0])
    ]


def infer(base_url: str, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    return _post(f"{base_url.rstrip('/')}/v2/models/{MODEL_NAME}/infer", body, 200, timeout)


def post_feedback(base_url: str, events: list[dict[str, Any]], timeout: float = 30.0) -> int:
    """Post CloudEvents (fashionrec.engagement.events) as one batch; returns how many the transformer took."""
    url = f"{base_url.rstrip('/')}{feedback_path()}"
    return int(_post(url, events, 202, timeout, {"content-type": "application/cloudevents-batch+json"})["accepted"])


def _post(url: str, body: Any, expected: int, timeout: float, headers: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        response = httpx.post(
            url, content=json.dumps(body).encode(), timeout=timeout, headers=headers or {"content-type": "application/json"}
        )
    except httpx.TransportError as exc:
        raise QueryError(0, redact_urls(f"cannot reach {url} ({exc}); is `fashionrec serve` running?")) from exc
    if response.status_code != expected:
        try:
            message = str(response.json().get("error", response.text))
        except ValueError:
            message = response.text
        raise QueryError(response.status_code, message)
    result: dict[str, Any] = response.json()
    return result
