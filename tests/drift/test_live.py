"""The live monitor: a bounded window of image queries tested against the model's reference profile; recommendation
health over the window; the request log (no photos); the gauges it sets."""

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from fashionrec.drift import live
from fashionrec.drift.live import LiveMonitor, gini
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.serving.metrics import publish_health

DIM = 32
STATS = ("brightness", "contrast")


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def catalogue(rng: np.random.Generator, count: int, centres: np.ndarray) -> np.ndarray:
    return unit(centres[rng.integers(0, len(centres), count)] + 0.3 * rng.standard_normal((count, DIM)))


@pytest.fixture()
def world() -> tuple[ReferenceProfile, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((12, DIM))
    profile = ReferenceProfile(
        model_version="v1",
        embeddings=catalogue(rng, 400, centres[:8]),
        image_stats={"brightness": rng.normal(180, 20, 400), "contrast": rng.normal(50, 8, 400)},
        class_shares={"Tshirts": 1.0},
        top1_scores=rng.uniform(0.7, 0.99, 200),
        catalogue_size=1000,
    )
    return profile, centres, rng


def queries(monitor: LiveMonitor, rng: np.random.Generator, vectors: np.ndarray, brightness: float, score: float) -> None:
    for start in range(0, len(vectors), 4):  # requests of 4 images
        batch = vectors[start : start + 4]
        stats = [{"brightness": rng.normal(brightness, 20), "contrast": rng.normal(50, 8)} for _ in batch]
        hits = rng.integers(0, 1000, (len(batch), 5))
        monitor.record(batch, stats, hits, np.full(len(batch), score))


def test_queries_like_the_catalogue_raise_nothing_and_shifted_ones_are_detected(
    world: tuple[ReferenceProfile, np.ndarray, np.random.Generator], tmp_path: Path
) -> None:
    profile, centres, rng = world
    calm = LiveMonitor(profile, window=200, request_log=tmp_path / "requests.jsonl")
    assert calm.evaluate() is None  # nothing yet
    queries(calm, rng, catalogue(rng, 200, centres[:8]), brightness=180, score=0.9)
    health = calm.evaluate()
    assert health is not None
    assert health.window == 200 and not health.decision.drifted, health.decision.reasons
    assert 0.3 < health.coverage < 0.7 and 0 <= health.gini < 0.6 and health.low_score_share == 0.0
    assert calm.evaluate() is None  # nothing new since

    shifted = LiveMonitor(profile, window=200)
    queries(shifted, rng, catalogue(rng, 200, centres[8:]), brightness=90, score=0.2)  # unseen types, dark photos
    health = shifted.evaluate()
    assert health is not None and health.decision.drifted and health.low_score_share == 1.0
    drifted = {r.signal for r in health.decision.results if r.drifted}
    assert drifted == {"embedding", "brightness"}  # contrast did not move

    lines = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert len(lines) == 200
    assert set(lines[0]) == {"time", "model_version", "request_id", "embedding", "stats", "item_ids", "top1_score"}
    assert len(lines[0]["embedding"]) == DIM and lines[0]["model_version"] == "v1"


def test_the_window_is_bounded_and_small_windows_are_not_tested(
    world: tuple[ReferenceProfile, np.ndarray, np.random.Generator],
) -> None:
    profile, centres, rng = world
    monitor = LiveMonitor(profile, window=50)
    queries(monitor, rng, catalogue(rng, 20, centres[:8]), brightness=180, score=0.9)
    assert monitor.evaluate() is None  # 20 < the tests' minimum window
    queries(monitor, rng, catalogue(rng, 120, centres[:8]), brightness=180, score=0.9)
    health = monitor.evaluate()
    assert health is not None and health.window == 50


def test_the_gauges_carry_each_signal(world: tuple[ReferenceProfile, np.ndarray, np.random.Generator]) -> None:
    profile, centres, rng = world
    monitor = LiveMonitor(profile, window=100)
    queries(monitor, rng, catalogue(rng, 100, centres[8:]), brightness=90, score=0.2)
    health = monitor.evaluate()
    assert health is not None
    publish_health(health)
    assert REGISTRY.get_sample_value("fashionrec_drift_detected", {"signal": "embedding"}) == 1.0
    assert REGISTRY.get_sample_value("fashionrec_drift_p_value", {"signal": "brightness"}) == pytest.approx(
        next(r.p_value for r in health.decision.results if r.signal == "brightness")
    )
    assert REGISTRY.get_sample_value("fashionrec_drift_window_size") == 100
    assert REGISTRY.get_sample_value("fashionrec_low_score_share") == 1.0


def test_gini_is_zero_when_even_and_near_one_when_one_item_takes_everything() -> None:
    assert gini(np.ones(10)) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    assert gini(np.zeros(5)) == 0.0


def test_item_queries_are_logged_for_replay_and_left_out_of_the_drift_windows(
    world: tuple[ReferenceProfile, np.ndarray, np.random.Generator], tmp_path: Path
) -> None:
    from fashionrec.monitoring.report import RequestLog

    profile, centres, rng = world
    monitor = LiveMonitor(profile, window=50, request_log=tmp_path / "requests.jsonl")
    queries(monitor, rng, catalogue(rng, 40, centres[:8]), brightness=180, score=0.9)
    monitor.record_item("req-7", 42, np.asarray([5, 6, -1]))
    monitor.flush()
    lines = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert lines[-1] == {
        "time": lines[-1]["time"],
        "model_version": "v1",
        "request_id": "req-7",
        "query_item_id": 42,
        "item_ids": [5, 6],
    }
    assert len(RequestLog.read(tmp_path / "requests.jsonl").top1) == 40  # the drift analysis reads image queries only


def test_a_failing_request_log_write_never_stops_the_evaluation_and_every_lost_line_is_heard_of(
    world: tuple[ReferenceProfile, np.ndarray, np.random.Generator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile, centres, rng = world
    monkeypatch.setattr(live, "REQUEST_LOG_BUFFER", 150)  # lines held for the log at most
    blocker = tmp_path / "store"
    blocker.write_text("a file where the log's folder should be: every write fails")
    lost: list[int] = []
    monitor = LiveMonitor(profile, window=100, request_log=blocker / "requests.jsonl", on_dropped=lost.append)
    started = monitor.written_at
    queries(monitor, rng, catalogue(rng, 100, centres[:8]), brightness=180, score=0.9)
    health = monitor.evaluate()  # the write fails: the window is tested all the same
    assert health is not None and health.window == 100
    assert monitor.evaluated_at > started and monitor.written_at == started and monitor.buffered == 100
    queries(monitor, rng, catalogue(rng, 100, centres[:8]), brightness=180, score=0.9)  # 50 fit, 13 requests of 4 not
    assert monitor.buffered == 148 and sum(lost) == monitor.dropped == 52
    blocker.unlink()
    monitor.flush()  # the storage is back: what was kept is written
    assert len((blocker / "requests.jsonl").read_text().splitlines()) == 148
    assert monitor.written_at > started and monitor.buffered == 0
