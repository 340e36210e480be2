"""The FAISS transformer: a kserve.Model in front of the encoder predictor.

- ``image`` requests: validate the images here (bad ones never reach the predictor), get embeddings from the
  predictor over v2, search FAISS, enrich the hits with item attributes from Feast.
- ``item_id`` requests: the item's embedding comes from the Feast online store; no predictor hop.
Every answer carries the model_version of the index, and an embedding from any other model version is refused
(never mix vectors of two models).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput, ServerNotReady

from fashionrec.config import (
    ATTRIBUTE_COLUMNS,
    DEFAULT_TOP_K,
    INPUT_IMAGE,
    INPUT_ITEM_ID,
    MAX_BATCH,
    MAX_TOP_K,
    OUTPUT_EMBEDDING,
    OUTPUT_ITEM_ID,
    OUTPUT_SCORE,
)
from fashionrec.featurestore import OnlineFeatures
from fashionrec.imaging import ImageDecodeError, decode_base64, decode_image
from fashionrec.index import ItemIndex

QUERY_KIND = "fashionrec_query"  # request parameter that tells predict() which path a request takes


def _parameter(request: InferRequest, name: str) -> Any:
    return (request.parameters or {}).get(name)


def parse_top_k(request: InferRequest) -> int:
    value = _parameter(request, "top_k")
    if value is None:
        return DEFAULT_TOP_K
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(f"top_k must be an integer between 1 and {MAX_TOP_K}")
    try:
        top_k = int(value)
    except ValueError as exc:
        raise InvalidInput(f"top_k must be an integer between 1 and {MAX_TOP_K}, got {value!r}") from exc
    if not 1 <= top_k <= MAX_TOP_K or top_k != float(value):
        raise InvalidInput(f"top_k must be an integer between 1 and {MAX_TOP_K}, got {value!r}")
    return top_k


def image_payloads(tensor: InferInput) -> list[bytes]:
    """The raw image bytes of a BYTES input: base64 strings in JSON, or raw bytes with the binary extension."""
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input '{INPUT_IMAGE}' must have datatype BYTES, got {tensor.datatype}")
    data = (
        list(np.asarray(tensor.as_numpy(), dtype=object).reshape(-1)) if tensor._raw_data is not None else list(tensor.data or [])
    )
    if not data:
        raise InvalidInput(f"input '{INPUT_IMAGE}' has no images")
    payloads = []
    for i, item in enumerate(data):
        try:
            payloads.append(bytes(item) if isinstance(item, (bytes, bytearray)) else decode_base64(item))
        except (ImageDecodeError, TypeError) as exc:
            raise InvalidInput(f"image {i}: {exc}") from exc
    return payloads


class FashionrecTransformer(Model):  # type: ignore[misc]
    def __init__(self, name: str, index_dir: Path, feature_repo: Path) -> None:
        super().__init__(name)
        self.index_dir = index_dir
        self.feature_repo = feature_repo
        self.index: ItemIndex | None = None
        self.features: OnlineFeatures | None = None

    def load(self) -> bool:
        import faiss

        faiss.omp_set_num_threads(1)  # searches are tiny; OpenMP threads only contend with the event loop
        self.index = ItemIndex.load(self.index_dir)
        self.features = OnlineFeatures(self.feature_repo)
        self.ready = True
        return self.ready

    @property
    def model_version(self) -> str:
        assert self.index is not None
        return self.index.meta.model_version

    # v2 model metadata
    def get_input_types(self) -> list[dict[str, Any]]:
        return [
            {"name": INPUT_IMAGE, "datatype": "BYTES", "shape": [-1]},
            {"name": INPUT_ITEM_ID, "datatype": "INT64", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": OUTPUT_ITEM_ID, "datatype": "INT64", "shape": [-1, -1]},
            {"name": OUTPUT_SCORE, "datatype": "FP32", "shape": [-1, -1]},
            *({"name": column, "datatype": "BYTES", "shape": [-1, -1]} for column in ATTRIBUTE_COLUMNS),
        ]

    async def preprocess(self, payload: InferRequest | dict[str, Any], headers: dict[str, str] | None = None) -> InferRequest:
        if not isinstance(payload, InferRequest):
            raise InvalidInput("use the v2 protocol: POST /v2/models/<name>/infer")
        top_k = parse_top_k(payload)
        names = [i.name for i in payload.inputs]
        unknown = sorted(set(names) - {INPUT_IMAGE, INPUT_ITEM_ID})
        if unknown or len(names) != 1:
            raise InvalidInput(f"send exactly one input, '{INPUT_IMAGE}' (BYTES) or '{INPUT_ITEM_ID}' (INT64); got {names}")
        tensor = payload.inputs[0]
        if tensor.name == INPUT_ITEM_ID:
            ids = self._item_ids(tensor)
            return InferRequest(
                model_name=self.name,
                infer_inputs=[InferInput(INPUT_ITEM_ID, [len(ids)], "INT64", ids)],
                request_id=payload.id,
                parameters={"top_k": top_k, QUERY_KIND: "item"},
            )
        payloads = image_payloads(tensor)
        self._check_batch(len(payloads))
        for i, data in enumerate(payloads):
            try:
                decode_image(data)
            except ImageDecodeError as exc:
                raise InvalidInput(f"image {i}: {exc}") from exc
        encoded = [base64.b64encode(p).decode("ascii") for p in payloads]
        return InferRequest(
            model_name=self.name,
            infer_inputs=[InferInput(INPUT_IMAGE, [len(encoded)], "BYTES", encoded)],
            request_id=payload.id,
            parameters={"top_k": top_k, QUERY_KIND: "image"},
        )

    def _check_batch(self, size: int) -> None:
        if size > MAX_BATCH:
            raise InvalidInput(f"{size} queries in one request, above the limit of {MAX_BATCH}")

    def _item_ids(self, tensor: InferInput) -> list[int]:
        if tensor.datatype not in ("INT64", "INT32"):
            raise InvalidInput(f"input '{INPUT_ITEM_ID}' must have datatype INT64, got {tensor.datatype}")
        try:
            ids = [int(v) for v in np.asarray(tensor.as_numpy()).reshape(-1)]
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"input '{INPUT_ITEM_ID}' must hold integers: {exc}") from exc
        if not ids:
            raise InvalidInput(f"input '{INPUT_ITEM_ID}' is empty")
        self._check_batch(len(ids))
        return ids

    async def encode(self, request: InferRequest, headers: dict[str, str] | None) -> tuple[np.ndarray, str | None]:
        """The predictor hop: embeddings of the request's images and the model_version that made them."""
        response: InferResponse = await super().predict(request, headers)
        outputs = {o.name: o for o in response.outputs}
        if OUTPUT_EMBEDDING not in outputs:
            raise ServerNotReady(f"predictor answered without an '{OUTPUT_EMBEDDING}' output")
        version = response.model_version or (response.parameters or {}).get("model_version")
        return np.asarray(outputs[OUTPUT_EMBEDDING].as_numpy(), dtype=np.float32), version

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> InferResponse:
        assert self.index is not None and self.features is not None
        top_k = int(_parameter(payload, "top_k"))
        exclude: list[int | None]
        if _parameter(payload, QUERY_KIND) == "item":
            ids = [int(v) for v in payload.inputs[0].data]
            vectors, versions = self.features.embeddings(ids)
            missing = [i for i, v in zip(ids, vectors, strict=True) if v is None]
            if missing:
                raise InvalidInput(f"unknown item_id(s) {missing}: not in the online store")
            self._check_version(versions)
            queries = np.stack([v for v in vectors if v is not None])
            exclude = list(ids)  # "more like this item": the item itself is not a recommendation
        else:
            queries, version = await self.encode(payload, headers)
            self._check_version([version])
            exclude = [None] * len(queries)
        scores, hits = self.index.search(queries, min(top_k + 1, self.index.meta.count))
        item_ids = np.full((len(queries), top_k), -1, dtype=np.int64)
        item_scores = np.zeros((len(queries), top_k), dtype=np.float32)
        for row in range(len(queries)):
            keep = [(s, h) for s, h in zip(scores[row], hits[row], strict=True) if h != -1 and h != exclude[row]][:top_k]
            for col, (score, hit) in enumerate(keep):
                item_ids[row, col], item_scores[row, col] = hit, score
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=self.model_version,
            infer_outputs=[
                InferOutput(OUTPUT_ITEM_ID, list(item_ids.shape), "INT64", item_ids),
                InferOutput(OUTPUT_SCORE, list(item_scores.shape), "FP32", item_scores),
            ],
        )

    def _check_version(self, versions: list[str | None]) -> None:
        stale = sorted({str(v) for v in versions if v != self.model_version})
        if stale:
            raise ServerNotReady(
                f"embedding model_version {stale} does not match the index's {self.model_version}; refusing to mix models"
            )

    async def postprocess(
        self, result: InferResponse, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> InferResponse:
        assert self.features is not None
        ids = np.asarray(result.outputs[0].data, dtype=np.int64).reshape(result.outputs[0].shape)
        flat = [int(i) for i in ids.reshape(-1) if i != -1]
        attributes = self.features.attributes(sorted(set(flat))) if flat else {c: [] for c in ATTRIBUTE_COLUMNS}
        position = {item: n for n, item in enumerate(sorted(set(flat)))}
        for column in ATTRIBUTE_COLUMNS:
            values = [("" if i == -1 else (attributes[column][position[int(i)]] or "")) for i in ids.reshape(-1)]
            result.outputs.append(InferOutput(column, list(ids.shape), "BYTES", values))
        return result


def main(argv: list[str] | None = None) -> None:
    """Run the transformer under kserve.ModelServer with KServe's standard arguments plus index and Feast paths."""
    import argparse

    from kserve import ModelServer, model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__)
    parser.add_argument("--index_dir", type=Path, required=True, help="folder with items.faiss and index.json")
    parser.add_argument("--feature_repo", type=Path, required=True, help="Feast repo folder (feature_store.yaml)")
    args, _ = parser.parse_known_args(argv)
    model = FashionrecTransformer(args.model_name, index_dir=args.index_dir, feature_repo=args.feature_repo)
    model.load()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc).start([model])


if __name__ == "__main__":
    main()
