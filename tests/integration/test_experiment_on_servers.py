"""An experiment on the real servers: the candidate (another model version) answers its share beside production,
simulated shoppers click through the real feedback API, the loop judges what the transformer counted, and the
canary is taken down after (or promoted, when it won and that was asked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashionrec.deploy.experiment import ExperimentSettings
from fashionrec.deploy.local_target import LocalServing, LocalTarget
from fashionrec.engagement.sequential import SequentialPolicy
from fashionrec.local.shopping import experiment_with_shoppers
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.client import infer, item_request
from fashionrec.serving.processes import LIVE_CANARY, LIVE_DIR, LocalTorchServe, serve_locally

pytestmark = pytest.mark.integration


def test_an_experiment_splits_the_traffic_judges_the_clicks_and_leaves_production_serving(
    stages: StageOutputs, second_version: StageOutputs, tiny_catalog: Path, tmp_path: Path
) -> None:
    production, candidate = stages.deployment.model_version, second_version.deployment.model_version
    settings = ExperimentSettings(share=0.5, max_answers=120, poll_s=0.0, policy=SequentialPolicy(min_answers=100))
    with serve_locally(stages.deployment, tmp_path / "serve") as (predictor, transformer):
        assert isinstance(predictor, LocalTorchServe)
        target = LocalTarget(LocalServing.of(predictor, transformer, tmp_path / "serve" / LIVE_DIR), drain_s=0.0)
        result = experiment_with_shoppers(target, second_version.deployment, tiny_catalog, settings, answers_per_look=60)
        final = result.final
        assert final is not None and (result.baseline_version, result.candidate_version) == (production, candidate)
        shown = final.baseline.answers + final.candidate.answers
        assert shown == 60 * len(result.looks)  # every answer the shoppers saw was counted, under its version
        assert 0.3 < final.candidate.answers / shown < 0.7  # the fixed split
        assert result.promoted is False and not (tmp_path / "serve" / LIVE_DIR / LIVE_CANARY).exists()
        assert {infer(transformer.url, item_request([10010]))["model_version"] for _ in range(10)} == {production}
        page = result.html()
        assert candidate in page and production in page and "always-valid" in page
