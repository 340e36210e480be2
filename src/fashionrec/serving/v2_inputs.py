"""Reading the inputs of a v2 infer request: the checks the transformer and the KServe-hosted encoder share.

Every problem is an ``InvalidInput`` (KServe answers 400 with a v2 error body), never an exception that becomes a 500.
"""

from __future__ import annotations

import binascii
import struct

import numpy as np
from kserve import InferInput
from kserve.errors import InvalidInput

from fashionrec.config import INPUT_IMAGE, INPUT_ITEM_ID, MAX_BATCH
from fashionrec.imaging import ImageDecodeError, decode_base64


def _check_batch(size: int) -> None:
    if size == 0:
        raise InvalidInput("the input holds no queries")
    if size > MAX_BATCH:
        raise InvalidInput(f"{size} queries in one request, above the limit of {MAX_BATCH}")


def _declared_size(tensor: InferInput) -> int:
    shape = tensor.shape
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) or len(shape) not in (1, 2):
        raise InvalidInput(f"input '{tensor.name}' shape must be [n] or [n, 1], got {shape}")
    if len(shape) == 2 and shape[1] != 1:
        raise InvalidInput(f"input '{tensor.name}' shape must be [n] or [n, 1], got {shape}")
    return shape[0]


def image_payloads(tensor: InferInput) -> tuple[list[bytes], list[str] | None]:
    """Raw image bytes of a BYTES input, and the base64 strings as sent (JSON) so they can be forwarded as they are.

    BYTES come as base64 strings in JSON, or raw with the binary tensor extension (Inference-Header-Content-Length).
    """
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input '{INPUT_IMAGE}' must have datatype BYTES, got {tensor.datatype}")
    declared = _declared_size(tensor)
    if tensor._raw_data is not None:
        try:
            items = list(np.asarray(tensor.as_numpy(), dtype=object).reshape(-1))
        except (ValueError, TypeError, IndexError, UnicodeDecodeError, struct.error) as exc:
            # struct.error: a BYTES length prefix that runs past the end of raw_input_contents (gRPC)
            raise InvalidInput(f"input '{INPUT_IMAGE}' binary data does not hold {declared} BYTES elements: {exc}") from exc
        encoded = None
    else:
        items = tensor.data if isinstance(tensor.data, list) else [tensor.data]
        encoded = [i for i in items if isinstance(i, str)]
        if len(encoded) != len(items):
            encoded = None
    if len(items) != declared:
        raise InvalidInput(f"input '{INPUT_IMAGE}' shape {tensor.shape} does not match its {len(items)} elements")
    _check_batch(len(items))
    payloads = []
    for i, item in enumerate(items):
        try:
            payloads.append(bytes(item) if isinstance(item, (bytes, bytearray)) else decode_base64(item))
        except (ImageDecodeError, TypeError, ValueError, binascii.Error) as exc:
            raise InvalidInput(f"image {i}: {exc}") from exc
    return payloads, encoded


def item_ids(tensor: InferInput) -> list[int]:
    if tensor.datatype not in ("INT64", "INT32", "UINT64", "UINT32"):
        raise InvalidInput(f"input '{INPUT_ITEM_ID}' must have datatype INT64, got {tensor.datatype}")
    declared = _declared_size(tensor)
    try:
        values = np.asarray(tensor.as_numpy()).reshape(-1)
        ids = [int(v) for v in values]
        if values.dtype.kind not in "iu" or any(not -(2**63) <= i < 2**63 for i in ids):
            raise ValueError(f"got {values.dtype} values")
    except (TypeError, ValueError, OverflowError, IndexError, struct.error) as exc:
        raise InvalidInput(f"input '{INPUT_ITEM_ID}' must hold 64-bit integers: {exc}") from exc
    if len(ids) != declared:
        raise InvalidInput(f"input '{INPUT_ITEM_ID}' shape {tensor.shape} does not match its {len(ids)} elements")
    _check_batch(len(ids))
    return ids
