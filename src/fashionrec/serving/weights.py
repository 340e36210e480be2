"""Reading the encoder's weights from a safetensors file: a JSON header and raw little-endian tensor bytes, nothing
that can execute code (unlike a pickle, which torch.load without weights_only and torch.export.load may unpickle).

Written by the package stage with the safetensors library; read here with no dependency beyond torch, because this
module travels inside the .mar into the stock TorchServe image."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024


class NotSafetensors(ValueError):
    """The file is not a well-formed safetensors file; nothing of it was used."""


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    data = path.read_bytes()
    if len(data) < 8:
        raise NotSafetensors(f"{path} is too short to be safetensors")
    size = int.from_bytes(data[:8], "little")
    if size > min(MAX_HEADER_BYTES, len(data) - 8):
        raise NotSafetensors(f"{path}: header length {size} does not fit the file (a pickle or another format?)")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotSafetensors(f"{path}: the header is not JSON") from exc
    if not isinstance(header, dict):
        raise NotSafetensors(f"{path}: the header is not a JSON object")
    body = memoryview(data)[8 + size :]
    tensors: dict[str, torch.Tensor] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[spec["dtype"]]
            shape = [int(d) for d in spec["shape"]]
            start, end = (int(o) for o in spec["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise NotSafetensors(f"{path}: tensor {name!r} is described wrongly: {spec!r}") from exc
        expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if not 0 <= start <= end <= len(body) or end - start != expected:
            raise NotSafetensors(f"{path}: tensor {name!r} bytes [{start}, {end}) do not match {shape} {spec['dtype']}")
        tensors[name] = (
            torch.frombuffer(bytearray(body[start:end]), dtype=dtype).reshape(shape)
            if expected
            else torch.zeros(shape, dtype=dtype)
        )
    return tensors
