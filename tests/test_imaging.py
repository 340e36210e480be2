import base64
import io

import numpy as np
import pytest
from PIL import Image

from fashionrec.imaging import ImageDecodeError, decode_base64, decode_image, load_batch, to_model_input


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_valid_images_decode_to_rgb() -> None:
    for mode, fmt in (("RGB", "JPEG"), ("L", "JPEG"), ("RGBA", "PNG"), ("CMYK", "JPEG")):
        image = decode_image(encode(Image.new(mode, (60, 80)), fmt))
        assert image.mode == "RGB" and image.size == (60, 80)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"definitely not an image", "not a recognised image format"),
        (b"GIF89a" + b"\x00" * 3, "cannot be decoded"),
    ],
)
def test_bad_payloads_raise_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(payload)


def test_truncated_jpeg_is_rejected() -> None:
    data = encode(Image.effect_noise((120, 160), 50).convert("RGB"))
    with pytest.raises(ImageDecodeError, match=r"truncated|cannot be decoded"):
        decode_image(data[: len(data) // 2])


def test_size_limits() -> None:
    data = encode(Image.new("RGB", (400, 400)), "PNG")
    with pytest.raises(ImageDecodeError, match="bytes, above the limit"):
        decode_image(data, max_bytes=100)
    with pytest.raises(ImageDecodeError, match="pixels, above the limit"):
        decode_image(data, max_pixels=10_000)


def test_base64() -> None:
    assert decode_base64(base64.b64encode(b"abc")) == b"abc"
    with pytest.raises(ImageDecodeError, match="base64"):
        decode_base64("not base64!!")


def test_model_input_layout_and_batch_error_names_the_image() -> None:
    array = to_model_input(Image.new("RGB", (30, 40), (10, 20, 30)), (80, 60))
    assert array.shape == (3, 80, 60) and array.dtype == np.uint8
    assert tuple(array[:, 0, 0]) == (10, 20, 30)
    good = encode(Image.new("RGB", (60, 80)))
    assert load_batch([good, good], (80, 60)).shape == (2, 3, 80, 60)
    with pytest.raises(ImageDecodeError, match="image 1"):
        load_batch([good, b"junk"], (80, 60))
