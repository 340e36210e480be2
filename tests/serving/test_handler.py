"""The TorchServe handler with a mock context and a tiny exported model in tmp_path."""

import base64
import io
import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import pytest
import torch
from PIL import Image

from fashionrec.config import EMBEDDING_DIM, MAX_BATCH, MODEL_CARD_FILE, MODEL_NAME, SERVED_WEIGHTS_FILE
from fashionrec.serving.encoder_service import EncoderService
from fashionrec.serving.entrypoints import kserve_file
from fashionrec.serving.package import HANDLER_FILE
from fashionrec.serving.torchserve import TorchServeSettings, torchserve_properties
from fashionrec.training.model import build_encoder

torchserve = pytest.importorskip("ts")  # part of the [encoder] extra, installed by `make setup`


def load_handler_class() -> type[Any]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("encoder_handler", kserve_file(HANDLER_FILE))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EncoderHandler


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the .mar holds: safetensors weights of a resnet18 encoder (seed 0) and its model card."""
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("handler_model")
    torch.manual_seed(0)
    encoder = build_encoder("resnet18").eval()
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(directory / SERVED_WEIGHTS_FILE))
    card = {"image_size": [80, 60], "model_version": "tiny-1", "backbone": "resnet18", "embedding_dim": EMBEDDING_DIM}
    (directory / MODEL_CARD_FILE).write_text(json.dumps(card))
    return directory


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def v2_body(images: list[bytes], request_id: str = "r1") -> dict[str, Any]:
    data = [base64.b64encode(i).decode() for i in images]
    return {"id": request_id, "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}]}


@pytest.fixture
def handler(model_dir: Path) -> tuple[Any, MagicMock]:
    handler = load_handler_class()()
    context = MagicMock()
    context.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
    handler.initialize(context)
    return handler, context


def test_batched_rows_get_one_v2_response_each(handler: tuple[Any, MagicMock]) -> None:
    h, context = handler
    rows = [
        {"body": v2_body([jpeg((255, 0, 0)), jpeg((0, 0, 255))], "a")},
        {"body": json.dumps(v2_body([jpeg((0, 255, 0))], "b")).encode()},
    ]
    out = h.handle(rows, context)
    assert len(out) == 2
    first, second = out
    assert first["id"] == "a" and first["model_name"] == MODEL_NAME and first["model_version"] == "tiny-1"
    assert first["outputs"][0]["shape"] == [2, EMBEDDING_DIM] and second["outputs"][0]["shape"] == [1, EMBEDDING_DIM]
    vectors = np.asarray(first["outputs"][0]["data"]).reshape(2, -1)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    context.set_response_status.assert_not_called()


def test_a_bad_row_gets_its_own_400_and_the_rest_are_served(handler: tuple[Any, MagicMock]) -> None:
    h, context = handler
    rows = [
        {"body": v2_body([b"not an image"])},
        {"body": v2_body([jpeg((1, 2, 3))])},
        {"body": {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]}},
        {"body": v2_body([jpeg((1, 2, 3))] * (MAX_BATCH + 1))},
        {"body": b"{not json"},
    ]
    out = h.handle(rows, context)
    assert "error" in out[0] and "image 0" in out[0]["error"]
    assert out[1]["outputs"][0]["shape"] == [1, EMBEDDING_DIM]
    assert "datatype BYTES" in out[2]["error"]
    assert "above the limit" in out[3]["error"]
    assert "not JSON" in out[4]["error"]
    failed = sorted(call.kwargs["idx"] for call in context.set_response_status.call_args_list)
    assert failed == [0, 2, 3, 4]
    assert {call.kwargs["code"] for call in context.set_response_status.call_args_list} == {400}


def test_an_unexpected_error_in_one_row_fails_only_that_row(
    handler: tuple[Any, MagicMock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever one row's bytes provoke while being read, the other rows of the dynamic batch are answered."""
    import fashionrec.serving.encoder_service as service_module

    poisoned = jpeg((7, 7, 7))
    real_load_batch = service_module.load_batch

    def load_batch(payloads: list[bytes], size: tuple[int, int]) -> np.ndarray:
        if poisoned in payloads:
            raise OSError("broken data stream when reading image file")  # e.g. a PIL decoder error we do not map
        return real_load_batch(payloads, size)

    monkeypatch.setattr(service_module, "load_batch", load_batch)
    h, context = handler
    out = h.handle(
        [{"body": v2_body([jpeg((1, 2, 3))])}, {"body": v2_body([poisoned])}, {"body": v2_body([jpeg((4, 5, 6))])}], context
    )
    assert out[0]["outputs"][0]["shape"] == [1, EMBEDDING_DIM] and out[2]["outputs"][0]["shape"] == [1, EMBEDDING_DIM]
    assert "OSError: broken data stream" in out[1]["error"]
    assert [(c.kwargs["idx"], c.kwargs["code"]) for c in context.set_response_status.call_args_list] == [(1, 400)]


def test_envelope_rows_with_raw_image_bytes_are_understood(handler: tuple[Any, MagicMock]) -> None:
    h, context = handler
    out = h.handle([{"data": jpeg((9, 9, 9))}], context)
    assert len(out[0]) == EMBEDDING_DIM


def test_service_matches_the_eager_model(model_dir: Path) -> None:
    service = EncoderService.load(model_dir)
    batch = np.random.default_rng(0).integers(0, 256, (3, 3, 80, 60), dtype=np.uint8)
    torch.manual_seed(0)  # the fixture's encoder, rebuilt
    eager = build_encoder("resnet18").eval()
    with torch.no_grad():
        expected = eager(torch.from_numpy(batch)).numpy()
    served = service.embed(batch)
    assert served.shape == (3, EMBEDDING_DIM) and np.allclose(served, expected, atol=1e-5)
    torch.manual_seed(1)
    with torch.no_grad():
        assert not np.allclose(served, build_encoder("resnet18").eval()(torch.from_numpy(batch)).numpy(), atol=1e-3)


def test_properties_render_the_settings_and_name_each_version() -> None:
    import json

    settings = TorchServeSettings(batch_size=16, max_batch_delay_ms=7, java_heap="256m")
    text = torchserve_properties(settings, {"abc123": "fashionrec.mar", "old456": "fashionrec-old456.mar"})
    assert '"batchSize":16' in text and '"maxBatchDelay":7' in text and "-Xmx256m" in text
    snapshot = json.loads(next(line for line in text.splitlines() if line.startswith("model_snapshot=")).split("=", 1)[1])
    assert snapshot["modelCount"] == 2
    assert snapshot["models"]["fashionrec-abc123"]["abc123"]["marName"] == "fashionrec.mar"
    assert snapshot["models"]["fashionrec-old456"]["old456"]["marName"] == "fashionrec-old456.mar"
    assert "disable_token_authorization=true" in text and "metrics_mode=prometheus" in text


class PickleBomb:
    """Unpickling this runs code: it would write the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path, str]]:
        return (Path.write_text, (self.marker, "pwned"))


def test_a_model_artifact_carrying_a_pickle_is_refused_without_running_it(model_dir: Path, tmp_path: Path) -> None:
    import pickle
    import shutil

    from fashionrec.serving.weights import NotSafetensors

    marker = tmp_path / "ran"
    crafted = tmp_path / "crafted"
    shutil.copytree(model_dir, crafted)
    (crafted / SERVED_WEIGHTS_FILE).write_bytes(pickle.dumps(PickleBomb(marker)))  # as a weights file
    with pytest.raises(NotSafetensors):
        EncoderService.load(crafted)
    torch.save({"weights": PickleBomb(marker)}, crafted / SERVED_WEIGHTS_FILE)  # a torch zip-pickle
    with pytest.raises(NotSafetensors):
        EncoderService.load(crafted)
    (crafted / SERVED_WEIGHTS_FILE).unlink()
    (crafted / "encoder.pt2").write_bytes(pickle.dumps(PickleBomb(marker)))  # the old format is not read at all
    with pytest.raises(FileNotFoundError, match="package it again"):
        EncoderService.load(crafted)
    assert not marker.exists()
    pickle.loads(pickle.dumps(PickleBomb(marker)))  # the payload is real: unpickled, it does run
    assert marker.read_text() == "pwned"


def test_the_weights_reader_matches_the_safetensors_library(model_dir: Path) -> None:
    from safetensors.torch import load_file

    from fashionrec.serving.weights import load_safetensors

    ours, theirs = load_safetensors(model_dir / SERVED_WEIGHTS_FILE), load_file(str(model_dir / SERVED_WEIGHTS_FILE))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
