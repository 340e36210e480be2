"""Hot swap on the real chain: queries keep flowing while a second model version is registered in TorchServe and
the transformer loads its index. Zero requests may fail, and answers turn to the new model_version."""

import threading
import time
from pathlib import Path

import httpx
import pytest

from fashionrec.config import MODEL_NAME
from fashionrec.local.hotswap import served_versions, swap_if_newer
from fashionrec.local.processes import LIVE_DIR, LocalTorchServe, serve_locally
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.client import image_request

pytestmark = pytest.mark.integration


def test_swap_under_load_fails_no_request_and_turns_to_the_new_version(
    stages: StageOutputs, second_version: StageOutputs, tiny_catalog: Path, tmp_path: Path
) -> None:
    body = image_request([(tiny_catalog / "images" / "10004.jpg").read_bytes()], top_k=3)
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()

    with serve_locally(stages.deployment, tmp_path) as (predictor, transformer):
        assert isinstance(predictor, LocalTorchServe)  # the swap drives TorchServe's management API

        def query_until_stopped() -> None:
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    response = client.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=body)
                    version = response.json().get("model_version", "") if response.status_code == 200 else response.text
                    answers.append((time.monotonic(), response.status_code, version))

        workers = [threading.Thread(target=query_until_stopped) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(1.5)
            assert swap_if_newer(predictor, transformer, tmp_path / LIVE_DIR, stages.deployment) is None  # served
            swapped = swap_if_newer(predictor, transformer, tmp_path / LIVE_DIR, second_version.deployment, drain_s=1.0)
            assert swapped is not None
            old, new = swapped
            swapped_at = time.monotonic()
            time.sleep(1.5)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        metrics = httpx.get(f"{transformer.url}/metrics").text
        versions_left = served_versions(predictor)

    assert old != new
    failed = [a for a in answers if a[1] != 200]
    assert not failed, failed[:3]
    seen = [v for _, _, v in answers]
    assert old in seen and new in seen
    assert all(v == new for t, _, v in answers if t > swapped_at + 0.5)  # after the swap, only the new model answers
    assert versions_left == {new: True}  # the old version was unregistered from TorchServe
    assert "fashionrec_index_swaps_total 1.0" in metrics
    assert f'model_version="{new}"' in metrics
    assert 'fashionrec_stale_embeddings_total{source="predictor"}' not in metrics
