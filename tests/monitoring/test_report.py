"""`fashionrec monitor`'s analysis: windows of the request log against the reference, the decision and its reasons,
and the HTML report with its plots."""

import json
import time
from pathlib import Path

import numpy as np

from fashionrec.drift.live import LiveMonitor
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.monitoring.report import DECISION_FILE, RequestLog, analyse, decide_retraining, write_report

DIM = 32


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def logged(tmp_path: Path, shifted: bool) -> tuple[ReferenceProfile, RequestLog]:
    """A profile, and a request log written by the live monitor: 400 queries like the catalogue, then (``shifted``)
    200 of article types it never had, photographed darker."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((12, DIM))

    def sample(count: int, types: slice) -> np.ndarray:
        chosen = centres[types]
        return unit(chosen[rng.integers(0, len(chosen), count)] + 0.3 * rng.standard_normal((count, DIM)))

    profile = ReferenceProfile("v1", sample(400, slice(0, 8)), {"brightness": rng.normal(180, 20, 400)}, {"Tshirts": 1.0},
                               rng.uniform(0.7, 0.99, 200), 1000)  # fmt: skip
    monitor = LiveMonitor(profile, window=100, request_log=tmp_path / "requests.jsonl")
    batches = [(sample(400, slice(0, 8)), 180.0)] + ([(sample(200, slice(8, 12)), 90.0)] if shifted else [])
    for vectors, brightness in batches:
        stats = [{"brightness": float(rng.normal(brightness, 20))} for _ in vectors]
        monitor.record(vectors, stats, rng.integers(0, 1000, (len(vectors), 5)), np.full(len(vectors), 0.9))
    monitor.evaluate()  # writes the log
    return profile, RequestLog.read(tmp_path / "requests.jsonl", "v1")


def test_a_shift_in_the_latest_window_asks_for_retraining_with_its_reasons(tmp_path: Path) -> None:
    profile, log = logged(tmp_path, shifted=True)
    healths = analyse(profile, log)
    assert len(healths) == 3 and not healths[0].decision.drifted and healths[-1].decision.drifted
    decision = decide_retraining(healths, new_items=0, catalogue_size=profile.catalogue_size)
    assert decision.retrain and any(r.startswith("the latest window drifted: embedding") for r in decision.reasons)
    report = write_report(profile, log, healths, decision, tmp_path / "out")
    page = report.read_text()
    assert "Retrain" in page and page.count("<svg") >= 3 and "brightness" in page
    assert json.loads((tmp_path / "out" / DECISION_FILE).read_text())["retrain"] is True


def test_a_calm_log_keeps_the_model_and_many_new_products_retrain_it(tmp_path: Path) -> None:
    profile, log = logged(tmp_path, shifted=False)
    healths = analyse(profile, log)
    assert len(healths) == 2 and not any(h.decision.drifted for h in healths)
    assert not decide_retraining(healths, new_items=10, catalogue_size=1000).retrain
    grown = decide_retraining(healths, new_items=250, catalogue_size=1000)
    assert grown.retrain and grown.reasons[0] == "250 products added since training (25% of 1000)"
    assert grown.signals == ["catalogue growth"] and grown.reasons[1].startswith("no engagement test")
    assert (
        "No retraining needed" in write_report(profile, log, healths, decide_retraining(healths, 0, 1000), tmp_path).read_text()
    )


def test_too_few_queries_decide_nothing(tmp_path: Path) -> None:
    profile, _ = logged(tmp_path, shifted=False)
    decision = decide_retraining(analyse(profile, RequestLog.read_none()), new_items=0, catalogue_size=1000)
    assert not decision.retrain and decision.reasons[0].startswith("no drift test")


def test_a_log_folder_of_part_files_reads_as_one_log_in_order(tmp_path: Path) -> None:
    """Object storage cannot append: each flush of each replica is a part file; the reader joins them by time."""
    profile, _ = logged(tmp_path, shifted=False)
    monitor = LiveMonitor(profile, window=50, request_log=str(tmp_path / "parts"))
    for score in (0.1, 0.2):
        vectors = profile.embeddings[:40]
        monitor.record(vectors, [{"brightness": 1.0}] * 40, np.zeros((40, 5), dtype=np.int64), np.full(40, score))
        monitor.evaluate()
    parts = sorted((tmp_path / "parts").glob("*.jsonl"))
    assert len(parts) == 2
    log = RequestLog.read(tmp_path / "parts")
    assert len(log.top1) == 80 and log.top1[0] == 0.1 and log.top1[-1] == 0.2 and log.embeddings.shape == (80, DIM)


def test_the_log_is_read_for_its_retained_days_and_latest_windows_only_and_bad_lines_are_counted(tmp_path: Path) -> None:
    """A month of parts: those before the retention are not opened (nor their queries kept), a truncated line or a
    foreign one is skipped and counted, and at most the latest queries asked for are held."""
    profile, _ = logged(tmp_path, shifted=False)
    parts = tmp_path / "parts"
    now = time.time()
    parts.mkdir()
    for age_days, score in ((30, 0.1), (2, 0.5), (1, 0.6)):
        batch = tmp_path / f"{age_days}.jsonl"  # the live monitor's lines, then dated and stored as a part of then
        monitor = LiveMonitor(profile, window=50, request_log=batch)
        monitor.record(profile.embeddings[:40], [{"brightness": 1.0}] * 40, np.zeros((40, 5), dtype=np.int64),
                       np.full(40, score))  # fmt: skip
        monitor.flush()
        when = now - age_days * 86400
        rows = [json.dumps({**json.loads(line), "time": when}) for line in batch.read_text().splitlines()]
        (parts / f"{int(when * 1e9):020d}-1-aaaaaa.jsonl").write_text("\n".join(rows) + '\n{"time": 1, "embedd\n[]\n')
    log = RequestLog.read(parts, "v1", since=now - 14 * 86400)
    assert len(log.top1) == 80 and set(log.top1) == {0.5, 0.6}  # the month-old part is not read
    assert log.skipped.count == 4 and "aaaaaa.jsonl:41" in log.skipped.examples[0]
    latest = RequestLog.read(parts, "v1", latest=50)
    assert len(latest.top1) == 50 and latest.top1[-1] == 0.6 and latest.top1[0] == 0.5
    decision = decide_retraining(analyse(profile, log), 0, 1000, skipped={"request_log": log.skipped})
    assert decision.skipped_lines == {"request_log": 4}
    assert any(r.startswith("skipped 4 unreadable line(s) of the request log") for r in decision.reasons)
