"""Live monitoring on the real local chain (TorchServe + transformer): photos like the catalogue's leave the drift
gauges at rest; a stream of darkened grey photos raises them; the request log holds what the queries saw."""

import json
from pathlib import Path

import httpx
import pytest
from client_load import wait_for

from fashionrec.config import MODEL_NAME
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.local.monitoring_loop import darkened, gauge
from fashionrec.local.stages import StageOutputs
from fashionrec.monitoring.report import RequestLog, analyse, decide_retraining
from fashionrec.serving.client import image_request
from fashionrec.serving.processes import serve_locally

pytestmark = pytest.mark.integration


def test_a_shifted_query_stream_raises_the_drift_gauges_and_a_normal_one_does_not(
    stages: StageOutputs, tiny_catalog: Path, tmp_path: Path
) -> None:
    photos = [path.read_bytes() for path in sorted((tiny_catalog / "images").glob("*.jpg"))]
    log = tmp_path / "requests.jsonl"
    with serve_locally(stages.deployment, tmp_path / "serve", request_log=log, monitor_seconds=0.5) as (_, transformer):
        url = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"

        def send(images: list[bytes]) -> None:
            for start in range(0, len(images), 6):
                assert httpx.post(url, json=image_request(images[start : start + 6]), timeout=60).status_code == 200

        def metrics() -> str:
            return httpx.get(f"{transformer.url}/metrics", timeout=10).text

        send(photos)  # the catalogue's own photos: the reference's distribution
        assert wait_for(lambda: gauge(metrics(), "fashionrec_drift_window_size") == len(photos), timeout=60)
        calm = metrics()
        assert gauge(calm, "fashionrec_drift_detected", 'signal="embedding"') == 0.0
        assert gauge(calm, "fashionrec_drift_detected", 'signal="brightness"') == 0.0
        assert gauge(calm, "fashionrec_recommendation_coverage") is not None

        send([darkened(photo) for photo in photos] * 4)  # 240 shifted queries fill the 200-query window
        assert wait_for(lambda: gauge(metrics(), "fashionrec_drift_detected", 'signal="brightness"') == 1.0, timeout=60)
        shifted = metrics()
        assert gauge(shifted, "fashionrec_drift_detected", 'signal="embedding"') == 1.0
        assert (gauge(shifted, "fashionrec_drift_p_value", 'signal="embedding"') or 1.0) <= 0.01
        assert gauge(shifted, "fashionrec_drift_window_size") == 200

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 5 * len(photos) and all(len(line["embedding"]) == 256 for line in lines)
    assert lines[-1]["stats"]["brightness"] < lines[0]["stats"]["brightness"]
    assert "image" not in lines[0]  # what the queries saw, never the photos
    # `fashionrec monitor` reads the same log: the latest window asks for retraining, the first does not
    profile = ReferenceProfile.of_index(stages.index_dir)
    assert profile is not None
    healths = analyse(profile, RequestLog.read(log, profile.model_version), window=len(photos))  # windows of 60
    assert not healths[0].decision.drifted and healths[-1].decision.drifted
    assert decide_retraining(healths, new_items=0, catalogue_size=profile.catalogue_size).retrain
