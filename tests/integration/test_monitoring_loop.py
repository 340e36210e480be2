"""The whole loop on one machine (`fashionrec demo --monitoring` runs the same code): a pipeline run in production,
its servers, a calm then a shifted query stream, the decision, and a training run that ends served or gated out,
rolled out onto the very servers that saw the drift."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fashionrec.cli import app
from fashionrec.deploy.local_target import LocalServing
from fashionrec.local.deployment import production_deployment
from fashionrec.local.monitoring_loop import run_loop
from fashionrec.local.pipeline_runner import run_local
from fashionrec.params import Augmentation, PipelineSettings, TrainConfig
from fashionrec.serving.processes import LIVE_DIR, LocalTorchServe, serve_locally
from fashionrec.workdir import WorkDir

pytestmark = pytest.mark.integration


def test_drift_on_a_shifted_stream_starts_a_training_run_that_ends_served_or_gated_out(
    tiny_catalog: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    # Light augmentation (the default): strong augmentation's greyscale and brightness jitter teach the encoder to
    # shrug off exactly the shift this stream makes (darkened grey photos), and the embedding test is asserted below.
    light = Augmentation.LIGHT
    # one epoch scores near chance, below the gate's floor: lowered for the first run, kept for the retraining
    first = run_local(
        tiny_catalog, work, TrainConfig(epochs=1, batch_size=16, augmentation=light), PipelineSettings(min_precision_at_5=0.0)
    )
    assert first.promoted
    requests = WorkDir(work).request_log
    with serve_locally(
        production_deployment(work), WorkDir(work).serve, catalog_changes=WorkDir(work).catalog_changes, request_log=requests,
        monitor_seconds=0.5,
    ) as (predictor, transformer):  # fmt: skip
        assert isinstance(predictor, LocalTorchServe)
        serving = LocalServing.of(predictor, transformer, WorkDir(work).serve / LIVE_DIR)
        outcome = run_loop(
            serving, tiny_catalog, work, requests, TrainConfig(epochs=2, batch_size=16, seed=1, augmentation=light)
        )
    assert not outcome.calm_detected and outcome.shifted_detected
    assert outcome.decision.retrain and any("embedding" in reason for reason in outcome.decision.reasons)
    assert outcome.report.is_file() and "Retrain" in outcome.report.read_text()
    assert outcome.retrained_version is not None and outcome.retrained_version != first.deployment.model_version
    # served or gated out: what answers is what the registry names production, either the old model or the new one
    assert outcome.served_version == production_deployment(work).model_version
    assert outcome.served_version in {first.deployment.model_version, outcome.retrained_version}
    assert not (work / "serving.json").exists()  # the servers were handed back to the test
    # `fashionrec monitor` on the same work dir: the report and the decision for the model in production now
    result = CliRunner().invoke(app, ["monitor", "--workdir", str(work), "--out", str(tmp_path / "monitor")])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and (tmp_path / "monitor" / "decision.json").is_file()
