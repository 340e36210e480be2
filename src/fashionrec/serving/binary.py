"""The v2 binary tensor extension, rewritten to the JSON form before KServe sees it (KServe 0.21 decodes binary BYTES
as UTF-8 and answers raw image bytes with a 500)."""

from __future__ import annotations

import orjson

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
