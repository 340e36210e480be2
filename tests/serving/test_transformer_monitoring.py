"""The transformer's monitor thread (one round at a time, no thread here): a request log that cannot be written
never stops the drift evaluation, its losses and each step's last success are metrics, and a hot swap writes the
old snapshots' pending request-log lines instead of dropping them with the snapshots."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from prometheus_client import REGISTRY

from fashionrec.drift import live
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.retrieval.index import ItemIndex
from fashionrec.serving.transformer import FashionrecTransformer, Routing, ServingSnapshot

DIM = 16


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def snapshot(version: str, rng: np.random.Generator) -> ServingSnapshot:
    """A snapshot with an index and a reference profile; no online store (nothing here answers a request)."""
    vectors = unit(rng.standard_normal((64, DIM)))
    index = ItemIndex.build(np.arange(64), vectors, version, "digest", kind="flat")
    profile = ReferenceProfile(version, vectors, {"brightness": rng.normal(180, 20, 64)}, {"Tshirts": 1.0},
                               rng.uniform(0.7, 0.99, 64), 64)  # fmt: skip
    return ServingSnapshot(index, cast(Any, None), profile=profile)


def transformer(request_log: Path, rng: np.random.Generator, version: str = "v1") -> FashionrecTransformer:
    model = FashionrecTransformer("fashionrec", Path("unused"), Path("unused"), monitor_window=60,
                                  request_log=str(request_log))  # fmt: skip
    model._install(Routing(model._monitored(snapshot(version, rng))))
    return model


def record(model: FashionrecTransformer, rng: np.random.Generator, count: int) -> None:
    assert model.routing is not None and model.routing.stable.monitor is not None
    vectors = unit(rng.standard_normal((count, DIM)))
    stats = [{"brightness": float(rng.normal(180, 20))} for _ in range(count)]
    model.routing.stable.monitor.record(vectors, stats, rng.integers(0, 64, (count, 5)), np.full(count, 0.9))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failing_request_log_leaves_the_evaluation_running_and_the_write_stale_and_losses_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    monkeypatch.setattr(live, "REQUEST_LOG_BUFFER", 100)
    blocker = tmp_path / "store"
    blocker.write_text("a file where the log's folder should be: every write fails")
    model = transformer(blocker / "requests", rng)
    dropped = sample("fashionrec_request_log_dropped_lines_total")
    window = sample("fashionrec_drift_window_size")
    record(model, rng, 60)
    before = time.time()
    model.monitor_once()  # the write fails: the window is tested and published all the same
    assert sample("fashionrec_drift_window_size") == 60 != window
    last = "fashionrec_monitor_last_success_timestamp_seconds"
    assert sample(last, step="evaluation") >= before > sample(last, step="request_log") > 0
    assert sample("fashionrec_request_log_buffered_lines") == 60
    record(model, rng, 60)  # a request's lines are queued whole or not at all: 120 > 100, these are lost (counted)
    record(model, rng, 1)
    assert sample("fashionrec_request_log_dropped_lines_total") == dropped + 60
    blocker.unlink()
    model.monitor_once()
    assert sample(last, step="request_log") >= before
    assert sample("fashionrec_request_log_buffered_lines") == 0
    assert len(logged_versions(blocker / "requests")) == 61


def logged_versions(log: Path) -> list[str]:
    return [json.loads(line)["model_version"] for part in sorted(log.glob("*.jsonl")) for line in part.read_text().splitlines()]


def test_a_hot_swap_writes_the_old_snapshots_pending_lines_and_those_recorded_after_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    log = tmp_path / "requests"
    model = transformer(log, rng)
    old = model.routing
    assert old is not None and old.stable.monitor is not None
    record(model, rng, 30)  # not yet written: the monitor thread writes every monitor_seconds
    swapped_in = Routing(model._monitored(snapshot("v2", rng)))
    model._load_routing = lambda: swapped_in  # type: ignore[method-assign]
    asyncio.run(model.reload())
    assert model.routing is swapped_in
    assert logged_versions(log) == ["v1"] * 30  # written at the swap
    # A request that began before the swap still records into the old snapshot: the next round writes it.
    old.stable.monitor.record(unit(rng.standard_normal((2, DIM))), [{"brightness": 1.0}] * 2, np.zeros((2, 5)), np.ones(2))
    model.monitor_once()
    assert logged_versions(log) == ["v1"] * 32
    assert model._retired == []  # written: let go


def test_a_swap_while_the_storage_is_down_keeps_the_old_lines_until_it_is_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    blocker = tmp_path / "store"
    blocker.write_text("every write fails")
    model = transformer(blocker / "requests", rng)
    record(model, rng, 10)
    swapped_in = Routing(model._monitored(snapshot("v2", rng)))
    model._load_routing = lambda: swapped_in  # type: ignore[method-assign]
    asyncio.run(model.reload())  # the write fails (logged): the swap goes on
    assert model.routing is swapped_in and len(model._retired) == 1
    model.monitor_once()
    assert len(model._retired) == 1  # still failing: still held
    blocker.unlink()
    model.monitor_once()
    assert logged_versions(blocker / "requests") == ["v1"] * 10 and model._retired == []
