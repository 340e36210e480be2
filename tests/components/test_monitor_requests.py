"""The monitor component: the request log (part files, as the transformers write them to object storage) against
the production release's reference profile; a drifted log asks for retraining, a calm one does not."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from kfp.dsl import HTML, Dataset, Markdown, Metrics
from kfp_artifacts import artifact

from components.monitor_requests import monitor_requests
from fashionrec.drift.live import LiveMonitor
from fashionrec.drift.profile import PROFILE_DIR, ReferenceProfile
from fashionrec.serving.release import RELEASE_FILE, Release

DIM = 16


def release_with_profile(root: Path, rng: np.random.Generator, centres: np.ndarray) -> ReferenceProfile:
    vectors = centres[rng.integers(0, 6, 300)] + 0.3 * rng.standard_normal((300, DIM))
    profile = ReferenceProfile("v-prod", (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32),
                               {"brightness": rng.normal(180, 20, 300)}, {"Tshirts": 1.0}, rng.uniform(0.7, 0.99, 100),
                               500)  # fmt: skip
    profile.save(root / "v-prod" / "serving" / "index" / PROFILE_DIR)
    (root / "v-prod" / RELEASE_FILE).write_text(json.dumps(asdict(Release(str(root), "v-prod", None, "2026-11-24"))))
    return profile


def run(tmp_path: Path, log_dir: Path, root: Path) -> tuple[bool, Metrics, Path]:
    metrics = artifact(Metrics, tmp_path, "metrics")
    report, decision = artifact(HTML, tmp_path, "report.html"), artifact(Markdown, tmp_path, "decision.md")
    outputs = monitor_requests.python_func(
        request_log=artifact(Dataset, log_dir.parent, log_dir.name), report=report, decision=decision, metrics=metrics,
        releases_uri=str(root), model_version="v-prod",
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
