"""Decoding untrusted image bytes into model input. Used by validation, training, embedding and the TorchServe
handler alike, so that the served encoder sees exactly what the trained one saw. Depends on numpy and Pillow only."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from fashionrec.config import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_REQUEST_PIXELS

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
# Modes that convert to RGB without losing meaning; 16-bit and float modes (medical/scientific) are not photos.
CONVERTIBLE_MODES = frozenset({"RGB", "L", "RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1", "RGBX", "La"})


class ImageDecodeError(ValueError):
    """The payload is not an image this system accepts; the message says why (for a 4xx), ``kind`` names the class
    of problem (for quarantine reasons): empty, too_large_file, not_an_image, unsupported_format, too_many_pixels,
    unsupported_mode, truncated."""

    def __init__(self, message: str, kind: str = "not_an_image") -> None:
        super().__init__(message)
        self.kind = kind


def decode_base64(data: str | bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"image is not valid base64: {exc}", "not_base64") from exc


def open_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open and fully decode ``data`` without converting it (format and mode stay as stored)."""
    if len(data) == 0:
        raise ImageDecodeError("image is empty (0 bytes)", "empty")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"image is {len(data)} bytes, above the limit of {max_bytes}", "too_large_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageDecodeError(f"image format {image.format} is not accepted", "unsupported_format")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(f"image is {width}x{height} pixels, above the limit of {max_pixels}", "too_many_pixels")
            image.load()  # decodes now, so truncated files fail here rather than later
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("image cannot be decoded: not a recognised image format", "not_an_image") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image cannot be decoded: {exc}", "too_many_pixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        kind = "truncated" if "truncated" in str(exc) else "not_an_image"
        raise ImageDecodeError(f"image cannot be decoded: {exc}", kind) from exc
    if image.mode not in CONVERTIBLE_MODES:
        raise ImageDecodeError(f"image colour mode {image.mode} is not supported", "unsupported_mode")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any convertible mode; transparency is composited on white, like a catalogue photo's background."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open and fully decode ``data`` as an RGB image, or raise ImageDecodeError with the reason."""
    return to_rgb(open_image(data, max_bytes, max_pixels))


def header_pixels(payloads: list[bytes]) -> int:
    """Pixels the payloads would decode to, from their headers alone (unreadable ones count 0)."""
    total = 0
    for payload in payloads:
        try:
            with Image.open(io.BytesIO(payload)) as image:  # reads the header only
                total += image.size[0] * image.size[1]
        except Exception:  # unreadable: the decode reports it, in order
            continue
    return total


def validate_images(payloads: list[bytes], max_total_pixels: int = MAX_REQUEST_PIXELS) -> list[Image.Image]:
    """Decode every payload fully (as the encoder will) and return the RGB images, or raise ImageDecodeError naming
    the first bad one. The sizes in the headers are summed first, so a request that would decode to more than
    ``max_total_pixels`` costs nothing."""
    total = header_pixels(payloads)
    if total > max_total_pixels:
        raise ImageDecodeError(
            f"the images hold {total} pixels together, above the limit of {max_total_pixels} per request", "too_many_pixels"
        )
    decoded = []
    for i, payload in enumerate(payloads):
        try:
            decoded.append(decode_image(payload))
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"image {i}: {exc}", exc.kind) from exc
    return decoded


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
            raise ImageDecodeError(f"image {i}: {exc}", exc.kind) from exc
    return out
