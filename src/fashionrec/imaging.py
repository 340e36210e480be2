"""Decoding untrusted image bytes into model input. Used by training, embedding and the TorchServe handler alike,
so that the served encoder sees exactly what the trained one saw. Depends on numpy and Pillow only."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from fashionrec.config import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})


class ImageDecodeError(ValueError):
    """The payload is not an image this system accepts; the message says why, for a 4xx answer."""


def decode_base64(data: str | bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"image is not valid base64: {exc}") from exc


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open and fully decode ``data`` as an RGB image, or raise ImageDecodeError with the reason."""
    if len(data) == 0:
        raise ImageDecodeError("image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"image is {len(data)} bytes, above the limit of {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageDecodeError(f"image format {image.format} is not accepted")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(f"image is {width}x{height} pixels, above the limit of {max_pixels}")
            image.load()  # decodes now, so truncated files fail here rather than later
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("image cannot be decoded: not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image cannot be decoded: {exc}") from exc
    return image.convert("RGB")


def to_model_input(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (height, width) and return uint8 CHW, the layout the encoder takes."""
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def load_batch(payloads: list[bytes], size: tuple[int, int]) -> np.ndarray:
    """Decode many payloads into one uint8 NCHW array; the first bad payload raises ImageDecodeError."""
    out = np.empty((len(payloads), 3, size[0], size[1]), dtype=np.uint8)
    for i, payload in enumerate(payloads):
        try:
            out[i] = to_model_input(decode_image(payload), size)
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"image {i}: {exc}") from exc
    return out
