"""The encoder as a service: v2 request rows in, embeddings out. Framework-neutral: TorchServe's handler and the
plain KServe predictor both call it. Shipped inside the .mar, so it imports only torch, numpy, Pillow and the
fashionrec modules packed with it (config, imaging)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashionrec.config import INPUT_IMAGE, MAX_BATCH, MODEL_CARD_FILE, MODEL_NAME, OUTPUT_EMBEDDING, SERVED_WEIGHTS_FILE
from fashionrec.imaging import ImageDecodeError, decode_base64, load_batch
from fashionrec.serving.weights import load_safetensors


class BadRequest(ValueError):
    """The request cannot be served as sent; the message goes back to the client with a 400."""


@dataclass
class RowResult:
    status: int
    body: dict[str, Any] | list[Any]


def parse_v2_images(body: object) -> tuple[list[bytes], str | None]:
    """The image payloads of a v2 infer request body (a dict, or its JSON text/bytes), and its request id."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise BadRequest("request body must be a v2 inference request with an 'inputs' list")
    inputs = [i for i in body["inputs"] if isinstance(i, dict) and i.get("name") == INPUT_IMAGE]
    if len(inputs) != 1:
        raise BadRequest(f"expected exactly one input named '{INPUT_IMAGE}'")
    tensor = inputs[0]
    if tensor.get("datatype") != "BYTES":
        raise BadRequest(f"input '{INPUT_IMAGE}' must have datatype BYTES, got {tensor.get('datatype')!r}")
    data = tensor.get("data")
    if not isinstance(data, list) or not data:
        raise BadRequest(f"input '{INPUT_IMAGE}' needs a non-empty data list")
    if len(data) > MAX_BATCH:
        raise BadRequest(f"{len(data)} images in one request, above the limit of {MAX_BATCH}")
    shape = tensor.get("shape")
    if shape not in ([len(data)], [len(data), 1]):
        raise BadRequest(f"input '{INPUT_IMAGE}' shape {shape} does not match its {len(data)} elements")
    payloads = []
    for i, item in enumerate(data):
        if not isinstance(item, (str, bytes)):
            raise BadRequest(f"image {i} must be a base64 string")
        try:
            payloads.append(decode_base64(item))
        except ImageDecodeError as exc:
            raise BadRequest(f"image {i}: {exc}") from exc
    request_id = body.get("id")
    return payloads, str(request_id) if request_id is not None else None


class EncoderService:
    def __init__(
        self, module: torch.nn.Module, image_size: tuple[int, int], model_version: str, device: torch.device | None = None
    ) -> None:
        # On a GPU when the pod has one (the gpu-predictor overlay); fp32 either way, so a served vector equals the
        # catalogue's vector of the same photo whichever device embedded it.
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.module = module.to(self.device)
        self.image_size = image_size
        self.model_version = model_version

    @classmethod
    def load(cls, model_dir: Path) -> EncoderService:
        """The encoder rebuilt from code (the card names its backbone) with weights from safetensors: loading a model
        artifact never unpickles anything, so a crafted .mar cannot run code here."""
        from fashionrec.training.model import build_encoder  # torchvision: its backbones load only with a model

        card = json.loads((model_dir / MODEL_CARD_FILE).read_text(encoding="utf-8"))
        weights = model_dir / SERVED_WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found: the model store predates safetensors weights; package it again")
        encoder = build_encoder(str(card["backbone"]), "none", int(card["embedding_dim"]))
        encoder.load_state_dict(load_safetensors(weights), strict=True)
        return cls(encoder.eval(), tuple(card["image_size"]), str(card["model_version"]))

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        return self.module(torch.from_numpy(images).to(self.device, non_blocking=True)).float().cpu().numpy()

    def handle_rows(self, rows: list[dict[str, Any]]) -> list[RowResult]:
        """One result per TorchServe request row; all good rows share one forward pass (dynamic batching)."""
        parsed: list[tuple[np.ndarray, str | None, bool] | RowResult] = []
        for row in rows:
            try:
                parsed.append(self._parse_row(row))
            except (BadRequest, ImageDecodeError) as exc:
                parsed.append(RowResult(400, {"error": str(exc)}))
            except Exception as exc:  # anything else this row's bytes provoke: its own 400, the batch goes on
                parsed.append(RowResult(400, {"error": f"the request could not be read ({type(exc).__name__}: {exc})"}))
        batches = [p[0] for p in parsed if not isinstance(p, RowResult)]
        vectors = self.embed(np.concatenate(batches)) if batches else np.zeros((0, 0), dtype=np.float32)
        results: list[RowResult] = []
        offset = 0
        for p in parsed:
            if isinstance(p, RowResult):
                results.append(p)
                continue
            images, request_id, enveloped = p
            mine = vectors[offset : offset + len(images)]
            offset += len(images)
            results.append(RowResult(200, mine[0].tolist() if enveloped else self.v2_response(mine, request_id)))
        return results

    def _parse_row(self, row: dict[str, Any]) -> tuple[np.ndarray, str | None, bool]:
        body = row.get("body") if row.get("body") is not None else row.get("data")
        if isinstance(body, (bytes, bytearray)) and not body.lstrip().startswith(b"{"):
            # TorchServe's kservev2 envelope (if a runtime turns it on) hands over one decoded image per row.
            return load_batch([bytes(body)], self.image_size), None, True
        payloads, request_id = parse_v2_images(body)
        return load_batch(payloads, self.image_size), request_id, False

    def v2_response(self, vectors: np.ndarray, request_id: str | None) -> dict[str, Any]:
        response: dict[str, Any] = {
            "model_name": MODEL_NAME,
            "model_version": self.model_version,
            # Repeated as a parameter: KServe's REST client (0.21, InferResponse.from_bytes) drops model_version.
            "parameters": {"model_version": self.model_version},
            "outputs": [
                {"name": OUTPUT_EMBEDDING, "datatype": "FP32", "shape": list(vectors.shape), "data": vectors.reshape(-1).tolist()}
            ],
        }
        if request_id is not None:
            response["id"] = request_id
        return response
