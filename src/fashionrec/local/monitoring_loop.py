"""The whole monitoring loop on local servers, in one call (`fashionrec demo --monitoring`): queries like the
catalogue's, then a shifted stream (the same products photographed darker, on a grey-scale camera), the drift
gauges rising, `fashionrec monitor`'s decision and report, and a training run whose gate and canary decide whether
the new model is served."""

from __future__ import annotations

import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from fashionrec.config import RETRAINING_COOLDOWN_HOURS
from fashionrec.console import console
from fashionrec.deploy.local_target import LocalServing, stable_version
from fashionrec.drift.live import WINDOW
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.local.deployment import production_deployment
from fashionrec.local.pipeline_runner import run_local
from fashionrec.local.retraining import RetrainingHeld, retraining_slot
from fashionrec.monitoring.report import Decision, RequestLog, analyse, decide_retraining, write_report
from fashionrec.params import TrainConfig
from fashionrec.serving.client import image_request, infer
from fashionrec.workdir import WorkDir

SETTLE_SECONDS = 60.0  # how long to wait for the transformer's monitor to test a window
EMBEDDING = 'signal="embedding"'  # the gauges' label of the embedding test


def darkened(data: bytes, brightness: float = 0.35) -> bytes:
    """The same product, photographed in poor light on a grey-scale camera (a shift the model never saw)."""
    image = ImageEnhance.Brightness(ImageOps.grayscale(Image.open(BytesIO(data)))).enhance(brightness).convert("RGB")
    out = BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def gauge(metrics: str, name: str, labels: str = "") -> float | None:
    """A sample's value in a Prometheus text page."""
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    return next((float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix)), None)


@dataclass(frozen=True)
class LoopOutcome:
    calm_detected: bool
    shifted_detected: bool
    decision: Decision
    report: Path
    retrained_version: str | None  # the model the training run produced (None: no run)
    served_version: str  # what answers after the run


def send(url: str, images: list[bytes], batch: int = 8) -> None:

    for start in range(0, len(images), batch):
        infer(url, image_request(images[start : start + batch], top_k=5))


def wait_for_window(url: str, size: float, timeout: float = SETTLE_SECONDS) -> str:
    """The transformer's metrics once its monitor has tested a window of at least ``size`` queries."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        if (gauge(metrics, "fashionrec_drift_window_size") or 0) >= size or time.monotonic() > deadline:
            return metrics
        time.sleep(0.5)


def run_loop(serving: LocalServing, catalog: Path, workdir: Path, request_log: Path, config: TrainConfig) -> LoopOutcome:
    """Calm stream, shifted stream, decision, retraining (the servers of ``serving`` take the rollout)."""
    import httpx

    photos = [path.read_bytes() for path in sorted((catalog / "images").glob("*.jpg"))][:WINDOW]
    send(serving.transformer_url, photos)
    calm = wait_for_window(serving.transformer_url, len(photos))
    calm_detected = gauge(calm, "fashionrec_drift_detected", EMBEDDING) == 1.0
    p_value = gauge(calm, "fashionrec_drift_p_value", EMBEDDING)
    console.print(f"{len(photos)} queries like the catalogue: embedding drift p-value {p_value}, detected: {calm_detected}")
    shifted_photos = [darkened(photo) for photo in photos]
    while len(shifted_photos) < WINDOW:  # a whole window of them
        shifted_photos += shifted_photos[: WINDOW - len(shifted_photos)]
    send(serving.transformer_url, shifted_photos)
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        shifted = httpx.get(f"{serving.transformer_url}/metrics", timeout=10).text
        drifted = sorted(
            line.split('"')[1]
            for line in shifted.splitlines()
            if line.startswith("fashionrec_drift_detected{") and line.endswith(" 1.0")
        )
        # Any signal: an encoder trained with greyscale and brightness jitter may shrug off this very shift in its
        # embeddings, while the image statistics still see it.
        shifted_detected = bool(drifted)
        if shifted_detected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    console.print(f"{len(shifted_photos)} darkened grey photos: drift detected on {', '.join(drifted) or 'nothing'}")

    production = production_deployment(workdir)
    profile = ReferenceProfile.of_index(production.index_dir)
    assert profile is not None, "the production index has no reference profile"
    time.sleep(1.5)  # the monitor flushes the request log on its next evaluation
    log = RequestLog.read(request_log, profile.model_version)
    healths = analyse(profile, log, window=len(photos))
    decision = decide_retraining(healths, new_items=0, catalogue_size=profile.catalogue_size)
    report = write_report(profile, log, healths, decision, WorkDir(workdir).monitoring)
    console.print(f"`fashionrec monitor`: {'retrain' if decision.retrain else 'no retraining needed'}; report: {report}")
    for reason in decision.reasons:
        console.print(f"  - {reason}", markup=False)
    retrained = None
    if decision.retrain:
        retrained = retrain_on(serving, catalog, workdir, config)
    return LoopOutcome(calm_detected, shifted_detected, decision, report, retrained, stable_version(serving.live_dir) or "")


def retrain_on(serving: LocalServing, catalog: Path, workdir: Path, config: TrainConfig) -> str | None:
    """A triggered retraining run whose deploy step rolls out onto ``serving``'s servers; None when the trigger's
    guard holds it (one in flight, or the last within the cooldown)."""
    try:
        with retraining_slot(workdir, RETRAINING_COOLDOWN_HOURS * 3600):
            serving.save(workdir)  # the training run's deploy step rolls out onto these servers, with a canary
            try:
                run = run_local(catalog, workdir, config, log_file=WorkDir(workdir).retraining_log)
            finally:
                (WorkDir(workdir).serving_state).unlink(missing_ok=True)
    except RetrainingHeld as held:
        console.print(f"no retraining run: {held}")
        return None
    retrained = run.deployment.model_version
    outcome = "promoted: it answers now" if run.promoted else "gated out or rolled back: production untouched"
    console.print(f"retrained model {retrained}: {outcome}")
    return retrained
