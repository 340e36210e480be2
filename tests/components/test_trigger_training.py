"""The trigger: no decision to retrain, no request; a decision starts a training run through the KFP API (a
recording stand-in of the v2beta1 REST API on loopback, as in tests/kubeflow: no KFP server runs here)."""

import sys
from pathlib import Path

from kfp.dsl import Markdown
from kfp_artifacts import artifact

from components.trigger_training import trigger_training
from fashionrec.kubeflow.submit import default_package_path

sys.path.insert(0, str(Path(__file__).parents[1] / "kubeflow"))  # the recorder lives with the KFP client's tests
from kfp_api_recorder import API, KfpApiRecorder


def test_no_decision_sends_nothing_and_a_decision_starts_a_training_run(tmp_path: Path) -> None:
    with KfpApiRecorder() as kfp_api:
        quiet = artifact(Markdown, tmp_path, "quiet.md")
        trigger_training.python_func(
            retrain=False, catalog_uri="gs://b/catalog", run=quiet, kfp_host=kfp_api.url, cooldown_hours=24.0
        )
        assert kfp_api.requests == [] and "No training run" in Path(quiet.path).read_text()

        started = artifact(Markdown, tmp_path, "run.md")
        trigger_training.python_func(
            retrain=True, catalog_uri="gs://b/catalog", run=started, kfp_host=kfp_api.url,
            training_parameters={"epochs": 3}, package_path=str(default_package_path()), cooldown_hours=24.0,
        )  # fmt: skip
        (run,) = kfp_api.calls_to("POST", f"{API}/runs")
        parameters = run.json()["runtime_config"]["parameters"]
        assert parameters["catalog_uri"] == "gs://b/catalog" and parameters["epochs"] == 3
        assert (
            started.metadata["run_id"] == kfp_api.runs[0]["run_id"] and started.metadata["url"] in Path(started.path).read_text()
        )


def test_a_run_in_flight_or_a_recent_one_holds_the_trigger_and_an_old_finished_one_does_not(tmp_path: Path) -> None:
    """The monitor may decide to retrain at every tick: one retraining run, not one per tick."""
    with KfpApiRecorder() as kfp_api:

        def trigger(name: str, cooldown_hours: float = 24.0) -> str:
            run = artifact(Markdown, tmp_path, f"{name}.md")
            trigger_training.python_func(
                retrain=True, catalog_uri="gs://b/catalog", run=run, kfp_host=kfp_api.url,
                package_path=str(default_package_path()), cooldown_hours=cooldown_hours,
            )  # fmt: skip
            return Path(run.path).read_text()

        assert "Training run started" in trigger("first")
        held = trigger("second")  # the first is PENDING
        assert "held" in held and kfp_api.runs[0]["run_id"] in held and "PENDING" in held
        assert len(kfp_api.calls_to("POST", f"{API}/runs")) == 1
        kfp_api.runs[0]["state"] = "SUCCEEDED"
        assert "within the cooldown of 24 h" in trigger("third")  # finished, but started a moment ago
        kfp_api.runs[0]["created_at"] = "2020-01-01T00:00:00Z"
        assert "Training run started" in trigger("fourth")  # long ago: retrain
        assert len(kfp_api.calls_to("POST", f"{API}/runs")) == 2
