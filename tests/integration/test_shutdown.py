"""SIGTERM (what Kubernetes sends on every rollout) shuts both kserve.ModelServer programs down cleanly: the request in
flight is answered, the exit code is 0 and the log holds no traceback."""

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from fashionrec.config import MODEL_NAME
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.client import image_request
from fashionrec.serving.processes import LocalKServeEncoder, LocalModelServer, serve_locally

pytestmark = pytest.mark.integration


def terminate(server: LocalModelServer) -> int:
    assert server.process is not None and server.process.process is not None
    server.process.process.send_signal(signal.SIGTERM)
    return server.process.process.wait(60)


def test_sigterm_answers_the_request_in_flight_and_exits_cleanly(
    stages: StageOutputs, tiny_catalog: Path, tmp_path: Path
) -> None:
    images = [p.read_bytes() for p in sorted((tiny_catalog / "images").glob("*.jpg"))[:32]]
    with serve_locally(stages.deployment, tmp_path, runtime="kserve") as (encoder, transformer):
        assert isinstance(encoder, LocalKServeEncoder)
        answered: list[int] = []

        def query() -> None:
            url = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"
            answered.append(httpx.post(url, json=image_request(images, top_k=3), timeout=60).status_code)

        in_flight = threading.Thread(target=query)
        in_flight.start()
        time.sleep(0.1)  # the 32-image request is being served
        transformer_exit = terminate(transformer)
        in_flight.join()
        encoder_exit = terminate(encoder)
    assert answered == [200]
    assert transformer_exit == 0 and encoder_exit == 0
    for name in ("transformer", "kserve-encoder"):
        log = next(tmp_path.rglob(f"{name}.log")).read_text()
        assert "Shutting down" in log and "Traceback" not in log, log[-3000:]
