"""The monitor component: the request log (part files, as the transformers write them to object storage) against
the production release's reference profile; a drifted log asks for retraining, a calm one does not."""

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from kfp.dsl import HTML, Dataset, Markdown, Metrics
from kfp_artifacts import artifact

from components.monitor_requests import monitor_requests
from fashionrec.config import LOG_RETENTION_DAYS
from fashionrec.data.changes import ChangeLog
from fashionrec.drift.live import LiveMonitor
from fashionrec.drift.profile import PROFILE_DIR, ReferenceProfile
from fashionrec.engagement.events import FeedbackEvent
from fashionrec.serving.release import RELEASE_FILE, Release
from fashionrec.storage import write_log_lines

DIM = 16


def release_with_profile(root: Path, rng: np.random.Generator, centres: np.ndarray) -> ReferenceProfile:
    vectors = centres[rng.integers(0, 6, 300)] + 0.3 * rng.standard_normal((300, DIM))
    profile = ReferenceProfile("v-prod", (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32),
                               {"brightness": rng.normal(180, 20, 300)}, {"Tshirts": 1.0}, rng.uniform(0.7, 0.99, 100),
                               500)  # fmt: skip
    profile.save(root / "v-prod" / "serving" / "index" / PROFILE_DIR)
    (root / "v-prod" / RELEASE_FILE).write_text(json.dumps(asdict(Release(str(root), "v-prod", None, "2026-11-24"))))
    return profile


def run(
    tmp_path: Path, log_dir: Path, root: Path, log_retention_days: float = LOG_RETENTION_DAYS, **sources: str | float
) -> tuple[bool, Metrics, Path]:
    metrics = artifact(Metrics, tmp_path, "metrics")
    report, decision = artifact(HTML, tmp_path, "report.html"), artifact(Markdown, tmp_path, "decision.md")
    outputs = monitor_requests.python_func(
        request_log=artifact(Dataset, log_dir.parent, log_dir.name), report=report, decision=decision, metrics=metrics,
        releases_uri=str(root), log_retention_days=log_retention_days, model_version="v-prod", **sources,
    )  # fmt: skip
    assert "<svg" in Path(report.path).read_text()
    return outputs.retrain, metrics, Path(decision.path)


def test_a_drifted_log_asks_for_retraining_and_a_calm_one_does_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((10, DIM))
    profile = release_with_profile(tmp_path / "releases", rng, centres)
    for name, types, brightness in (("calm", slice(0, 6), 180.0), ("drifted", slice(6, 10), 80.0)):
        monitor = LiveMonitor(profile, request_log=str(tmp_path / name))
        chosen = centres[types]
        vectors = chosen[rng.integers(0, len(chosen), 200)] + 0.3 * rng.standard_normal((200, DIM))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        stats = [{"brightness": float(rng.normal(brightness, 20))} for _ in vectors]
        monitor.record(vectors, stats, rng.integers(0, 500, (200, 5)), np.full(200, 0.9))
        monitor.evaluate()
    retrain, metrics, decision = run(tmp_path, tmp_path / "calm", tmp_path / "releases")
    assert not retrain and metrics.metadata["retrain"] == 0.0 and decision.read_text().startswith("# No retraining")
    retrain, metrics, decision = run(tmp_path, tmp_path / "drifted", tmp_path / "releases")
    assert retrain and metrics.metadata["p_value_embedding"] <= 0.01 and "embedding" in decision.read_text()


def calm_log(tmp_path: Path, profile: ReferenceProfile, centres: np.ndarray, rng: np.random.Generator) -> Path:
    monitor = LiveMonitor(profile, request_log=str(tmp_path / "calm"))
    vectors = centres[rng.integers(0, 6, 200)] + 0.3 * rng.standard_normal((200, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    monitor.record(vectors, [{"brightness": float(rng.normal(180, 20))} for _ in vectors], rng.integers(0, 500, (200, 5)),
                   np.full(200, 0.9))  # fmt: skip
    monitor.evaluate()
    return tmp_path / "calm"


def shown(version: str, answers: int, ctr: float, when: float, rng: np.random.Generator) -> list[str]:
    """The event-log lines of ``answers`` answers shown at ``when``, a share ``ctr`` of them clicked at rank 2."""
    lines = []
    for n in range(answers):
        request = f"{version}-{when:.0f}-{n}"
        kinds = ["impression", "click"] if rng.random() < ctr else ["impression"]
        lines += [FeedbackEvent(k, f"{request}-{k}", request, version, 7, 2 if k == "click" else 1, "session1234", when).log_line()
                  for k in kinds]  # fmt: skip
    return lines


def test_an_engagement_drop_or_catalogue_growth_in_the_change_log_asks_for_retraining_naming_the_signal(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    centres = rng.standard_normal((10, DIM))
    profile = release_with_profile(tmp_path / "releases", rng, centres)
    log = calm_log(tmp_path, profile, centres, rng)
    now = time.time()
    steady = tmp_path / "steady-events"
    write_log_lines(str(steady), shown("v-prod", 1500, 0.3, now - 5 * 86400, rng) + shown("v-prod", 800, 0.3, now - 3600, rng))
    retrain, metrics, decision = run(tmp_path, log, tmp_path / "releases", event_log_uri=str(steady))
    assert not retrain and metrics.metadata["signal_engagement"] == 0.0 and "engagement held" in decision.read_text()

    dropped = tmp_path / "dropped-events"
    write_log_lines(str(dropped), shown("v-prod", 1500, 0.3, now - 5 * 86400, rng) + shown("v-prod", 800, 0.15, now - 3600, rng))
    write_log_lines(str(dropped), shown("v-other", 500, 0.0, now - 3600, rng))  # another version's events do not count
    retrain, metrics, decision = run(tmp_path, log, tmp_path / "releases", event_log_uri=str(dropped))
    assert retrain and metrics.metadata["signal_engagement"] == 1.0 and metrics.metadata["signal_drift"] == 0.0
    assert decision.read_text().startswith("# Retrain (signals: engagement)") and "engagement dropped" in decision.read_text()

    changes = ChangeLog(str(tmp_path / "changes"))
    changes.append("add", list(range(1000, 1200)), ["v-prod"])  # after the release of 2026-11-24: 200 of 500
    changes.append("remove", [1000])
    retrain, metrics, decision = run(tmp_path, log, tmp_path / "releases", catalog_changes_uri=str(tmp_path / "changes"))
    assert retrain and "199 products added" in decision.read_text() and metrics.metadata["signal_catalogue_growth"] == 1.0


def test_bad_lines_are_skipped_and_counted_and_days_past_the_retention_are_not_read(tmp_path: Path) -> None:
    """A truncated line in either log no longer fails every run; drifted month-old parts past the retention are
    not read; the stored log's finished days are compacted in place, losing nothing."""
    rng = np.random.default_rng(9)
    centres = rng.standard_normal((10, DIM))
    profile = release_with_profile(tmp_path / "releases", rng, centres)
    log = calm_log(tmp_path, profile, centres, rng)
    (log / f"{time.time_ns():020d}-1-aaaaaa.jsonl").write_text('{"request_id": "r", "embedding": [0.1, \n')
    drifted = tmp_path / "drifted-batch.jsonl"  # a month ago the queries drifted: past the 14 days read
    monitor = LiveMonitor(profile, request_log=drifted)
    vectors = centres[rng.integers(6, 10, 200)] + 0.3 * rng.standard_normal((200, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    monitor.record(vectors, [{"brightness": 80.0}] * 200, rng.integers(0, 500, (200, 5)), np.full(200, 0.9))
    monitor.flush()
    month_ago = time.time() - 30 * 86400
    lines = [json.dumps({**json.loads(line), "time": month_ago}) for line in drifted.read_text().splitlines()]
    for hour in range(2):
        (log / f"{int((month_ago + hour) * 1e9):020d}-1-bbbbb{hour}.jsonl").write_text("\n".join(lines) + "\n")
    events = tmp_path / "events"
    write_log_lines(str(events), [*shown("v-prod", 20, 0.3, time.time() - 3600, rng), '{"kind": "click", "event_'])
    retrain, metrics, decision = run(tmp_path, log, tmp_path / "releases", event_log_uri=str(events), log_retention_days=14)
    assert not retrain and metrics.metadata["signal_drift"] == 0.0 and metrics.metadata["windows"] == 1.0
    assert metrics.metadata["skipped_lines_request_log"] == 1.0 and metrics.metadata["skipped_lines_event_log"] == 1.0
    assert "skipped 1 unreadable line(s) of the request log" in decision.read_text()
    assert len(list(log.glob("*-day-*.jsonl"))) == 1 and not list(log.glob("*-bbbbb*.jsonl"))  # compacted
    _, metrics, _ = run(tmp_path, log, tmp_path / "releases", log_retention_days=60)
    assert metrics.metadata["windows"] == 3.0  # within 60 days the month's 400 queries are read: compaction lost none
