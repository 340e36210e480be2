"""`fashionrec pipeline submit|schedule` against a recorded KFP API contract: the requests kfp.Client sends on our
behalf, checked at the HTTP layer against the KFP v2beta1 API models (no KFP server runs here)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kfp_api_recorder import API, HEALTHZ, KfpApiRecorder, assert_fits_model
from typer.testing import CliRunner

from fashionrec.cli import app
from fashionrec.kubeflow.submit import (
    ENDPOINT_ENV,
    TOKEN_PATH_ENV,
    KfpSubmitError,
    default_package_path,
    kfp_cron,
    load_pipeline_package,
    runtime_parameters,
    schedule_run,
    submit_run,
)

COMPILED = default_package_path()
PACKAGE = load_pipeline_package(COMPILED)
# Parameter names come from the committed YAML, so that renaming a pipeline input does not break these tests.
SAMPLE_TEXT = {"STRING": "/mnt/catalog", "NUMBER_INTEGER": "1", "NUMBER_DOUBLE": "0.5", "BOOLEAN": "false", "STRUCT": "{}"}
REQUIRED_VALUES = {name: SAMPLE_TEXT[p.parameter_type] for name, p in sorted(PACKAGE.parameters.items()) if p.required}
REQUIRED = [f"{name}={text}" for name, text in REQUIRED_VALUES.items()]
REQUIRED_SENT = {
    name: json.loads(text) if PACKAGE.parameters[name].parameter_type != "STRING" else text
    for name, text in REQUIRED_VALUES.items()
}


def optional_parameters(kind: str) -> list[str]:
    return [name for name, p in sorted(PACKAGE.parameters.items()) if p.parameter_type == kind and not p.required]


INTEGER, DOUBLE, BOOLEAN, STRUCT = (
    optional_parameters(kind)[0] for kind in ("NUMBER_INTEGER", "NUMBER_DOUBLE", "BOOLEAN", "STRUCT")
)
TEXTS = optional_parameters("STRING")
runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_kfp_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KFP settings of the machine running the tests: env vars, in-cluster markers, kfp's context file."""
    import kfp.client.client

    for name in (ENDPOINT_ENV, TOKEN_PATH_ENV, "KF_PIPELINES_UI_ENDPOINT", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp.client.client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture
def kfp_api() -> Iterator[KfpApiRecorder]:
    with KfpApiRecorder() as recorder:
        yield recorder


def version_name_of(content: bytes) -> str:
    return f"fashionrec-training-{hashlib.sha256(content).hexdigest()[:12]}"


def test_first_submit_creates_the_pipeline_uploads_the_yaml_and_starts_a_run(kfp_api: KfpApiRecorder) -> None:
    params = [
        *REQUIRED,
        f"{INTEGER}=3",
        f"{DOUBLE}=1",
        f"{BOOLEAN}=true",
        f'{STRUCT}={{"threshold": [1, 2]}}',
        f"{TEXTS[0]}=007",
    ]
    submitted = submit_run(kfp_api.url, params=params, experiment="nightly", run_name="try 1")

    assert kfp_api.api_calls() == [
        ("GET", HEALTHZ),  # our quick check
        ("GET", HEALTHZ),  # kfp.Client's constructor
        ("GET", f"{API}/pipelines"),
        ("POST", f"{API}/pipelines"),
        ("POST", f"{API}/pipelines/upload_version"),
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/experiments"),
        ("POST", f"{API}/runs"),
    ]
    assert not kfp_api.unrouted
    assert all("authorization" not in r.headers for r in kfp_api.requests)

    lookup = kfp_api.calls_to("GET", f"{API}/pipelines")[0]
    assert_fits_model(json.loads(lookup.query_value("filter") or ""), "V2beta1Filter")

    created = kfp_api.calls_to("POST", f"{API}/pipelines")[0].json()
    assert_fits_model(created, "V2beta1Pipeline")
    assert created["name"] == created["display_name"] == "fashionrec-training"

    upload = kfp_api.calls_to("POST", f"{API}/pipelines/upload_version")[0]
    content = COMPILED.read_bytes()
    assert upload.query_value("name") == version_name_of(content)
    assert upload.query_value("pipelineid") == kfp_api.pipelines[0]["pipeline_id"]
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert upload.multipart()["uploadfile"] == ("training_pipeline.yaml", content)

    experiment = kfp_api.calls_to("POST", f"{API}/experiments")[0].json()
    assert_fits_model(experiment, "V2beta1Experiment")
    assert experiment["display_name"] == "nightly"

    run = kfp_api.calls_to("POST", f"{API}/runs")[0].json()
    assert_fits_model(run, "V2beta1Run")
    assert run["display_name"] == "try 1"
    assert run["experiment_id"] == kfp_api.experiments[0]["experiment_id"] == submitted.experiment_id
    assert run["pipeline_version_reference"] == {
        "pipeline_id": kfp_api.pipelines[0]["pipeline_id"],
        "pipeline_version_id": kfp_api.versions[0]["pipeline_version_id"],
    }
    sent = run["runtime_config"]["parameters"]
    assert sent == {
        **REQUIRED_SENT,
        INTEGER: 3,
        DOUBLE: 1.0,
        BOOLEAN: True,
        STRUCT: {"threshold": [1, 2]},
        TEXTS[0]: "007",
    }
    # JSON types as the YAML declares them (== alone would take 1 for 1.0 and 1 for True): "1" for a double is 1.0
    assert [type(sent[name]) for name in (INTEGER, DOUBLE, BOOLEAN, TEXTS[0])] == [int, float, bool, str]

    assert submitted.run_id == kfp_api.runs[0]["run_id"]
    assert submitted.url == f"{kfp_api.url}/#/runs/details/{submitted.run_id}"
    assert submitted.pipeline.pipeline_created and submitted.pipeline.version_uploaded


def test_a_submission_from_inside_a_kfp_step_where_import_kfp_leaves_the_client_out(kfp_api: KfpApiRecorder) -> None:
    """KFP's launcher runs a step (the monitoring pipeline's retraining trigger) with _KFP_RUNTIME=true, under which
    `import kfp` does not import kfp.Client: the submission must not need it there."""
    program = (
        "import sys; from fashionrec.kubeflow.submit import submit_run; submit_run(sys.argv[1], params=['catalog_uri=gs://b/c'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, kfp_api.url], env={**os.environ, "_KFP_RUNTIME": "true"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = kfp_api.calls_to("POST", f"{API}/runs")
    assert run.json()["runtime_config"]["parameters"]["catalog_uri"] == "gs://b/c"


def test_the_contract_check_catches_a_misspelt_or_mistyped_field() -> None:
    recurring = "V2beta1RecurringRun"
    with pytest.raises(AssertionError, match=re.escape("V2beta1RecurringRun: ['maxconcurrency'] are not fields")):
        assert_fits_model({"maxconcurrency": 1}, recurring)
    with pytest.raises(AssertionError, match=re.escape("trigger.cron_schedule: ['crons'] are not fields")):
        assert_fits_model({"trigger": {"cron_schedule": {"crons": "0 0 3 * * *"}}}, recurring)
    with pytest.raises(AssertionError, match="no_catchup: expected bool"):
        assert_fits_model({"no_catchup": "true"}, recurring)
    with pytest.raises(AssertionError, match="mode: 'ENABLED' is not one of"):
        assert_fits_model({"mode": "ENABLED"}, recurring)


def test_submitting_the_same_yaml_again_uploads_nothing(kfp_api: KfpApiRecorder) -> None:
    first = submit_run(kfp_api.url, params=REQUIRED)
    uploads_before = len(kfp_api.uploads())
    second = submit_run(kfp_api.url, params=REQUIRED)

    assert len(kfp_api.uploads()) == uploads_before == 2  # the pipeline, its first version
    assert len(kfp_api.calls_to("POST", f"{API}/experiments")) == 1  # the experiment is found, not made again
    versions_lookup = kfp_api.calls_to("GET", f"{API}/pipelines/{first.pipeline.pipeline_id}/versions")
    assert len(versions_lookup) == 1  # only the second submission looks (the first made the pipeline)
    assert not second.pipeline.version_uploaded and not second.pipeline.pipeline_created
    assert second.pipeline.pipeline_version_id == first.pipeline.pipeline_version_id
    runs = kfp_api.calls_to("POST", f"{API}/runs")
    assert [r.json()["pipeline_version_reference"] for r in runs] == [
        {"pipeline_id": first.pipeline.pipeline_id, "pipeline_version_id": first.pipeline.pipeline_version_id}
    ] * 2
    assert second.run_id != first.run_id


def test_a_changed_yaml_uploads_a_new_version_of_the_existing_pipeline(kfp_api: KfpApiRecorder, tmp_path: Path) -> None:
    first = submit_run(kfp_api.url, params=REQUIRED)
    changed = tmp_path / "training_pipeline.yaml"
    shutil.copyfile(COMPILED, changed)
    with changed.open("a") as handle:
        handle.write("# recompiled\n")

    second = submit_run(kfp_api.url, package_path=changed, params=REQUIRED)

    assert len(kfp_api.calls_to("POST", f"{API}/pipelines")) == 1  # no second pipeline
    uploads = kfp_api.calls_to("POST", f"{API}/pipelines/upload_version")
    assert len(uploads) == 2
    assert uploads[1].query_value("pipelineid") == first.pipeline.pipeline_id
    assert uploads[1].query_value("name") == version_name_of(changed.read_bytes()) != uploads[0].query_value("name")
    assert uploads[1].multipart()["uploadfile"][1] == changed.read_bytes()
    assert second.pipeline.pipeline_id == first.pipeline.pipeline_id
    assert second.pipeline.pipeline_version_id != first.pipeline.pipeline_version_id
    run = kfp_api.calls_to("POST", f"{API}/runs")[1].json()
    assert run["pipeline_version_reference"]["pipeline_version_id"] == second.pipeline.pipeline_version_id


def test_schedule_creates_an_enabled_recurring_run_with_a_seconds_field(
    kfp_api: KfpApiRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, kfp_api.url)  # no --host: kfp.Client's endpoint variable
    scheduled = schedule_run(None, "0 3 * * *", params=[*REQUIRED, f"{INTEGER}=20"], name="nightly", max_concurrency=2)

    body = kfp_api.calls_to("POST", f"{API}/recurringruns")[0].json()
    assert_fits_model(body, "V2beta1RecurringRun")
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert int(body["max_concurrency"]) == 2
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "nightly"
    assert body["experiment_id"] == kfp_api.experiments[0]["experiment_id"]
    assert body["pipeline_version_reference"] == {
        "pipeline_id": scheduled.pipeline.pipeline_id,
        "pipeline_version_id": scheduled.pipeline.pipeline_version_id,
    }
    assert body["runtime_config"]["parameters"] == {**REQUIRED_SENT, INTEGER: 20}
    assert scheduled.cron == "0 0 3 * * *"
    assert scheduled.url == f"{kfp_api.url}/#/recurringrun/details/{scheduled.recurring_run_id}"
    assert not kfp_api.unrouted


@pytest.mark.parametrize("how", ["--token", TOKEN_PATH_ENV])
def test_the_token_goes_as_a_bearer_header_on_every_request(how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = None
    if how == TOKEN_PATH_ENV:
        token_file = tmp_path / "token"
        token_file.write_text("s3cret\n")
        monkeypatch.setenv(TOKEN_PATH_ENV, str(token_file))
    else:
        token = "s3cret"
    with KfpApiRecorder(required_token="s3cret", guard_healthz=True) as kfp_api:
        submit_run(kfp_api.url, params=REQUIRED, token=token)
    assert len(kfp_api.requests) == 8
    assert {r.headers.get("authorization") for r in kfp_api.requests} == {"Bearer s3cret"}


def test_an_unknown_parameter_is_refused_before_any_request(kfp_api: KfpApiRecorder) -> None:
    with pytest.raises(KfpSubmitError) as refused:
        submit_run(kfp_api.url, params=[*REQUIRED, "no_such_input=3"])
    message = str(refused.value)
    assert "\n" not in message
    assert (
        message == f"unknown pipeline parameter no_such_input; fashionrec-training takes: {', '.join(sorted(PACKAGE.parameters))}"
    )
    assert kfp_api.requests == []


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("NUMBER_INTEGER", "three", "an integer (NUMBER_INTEGER)"),
        ("NUMBER_INTEGER", "2.5", "an integer (NUMBER_INTEGER)"),
        ("NUMBER_INTEGER", "true", "an integer (NUMBER_INTEGER)"),
        ("NUMBER_DOUBLE", "fast", "a number (NUMBER_DOUBLE)"),
        ("NUMBER_DOUBLE", "NaN", "a number (NUMBER_DOUBLE)"),
        ("BOOLEAN", "yes", "true or false (BOOLEAN)"),
        ("STRUCT", "[20]", "a JSON object (STRUCT)"),
    ],
)
def test_a_parameter_of_the_wrong_type_is_refused_before_any_request(
    kfp_api: KfpApiRecorder, kind: str, text: str, expected: str
) -> None:
    name = optional_parameters(kind)[0]
    with pytest.raises(KfpSubmitError, match=re.escape(f"--param {name}={text}: {name} takes {expected}")):
        submit_run(kfp_api.url, params=[*REQUIRED, f"{name}={text}"])
    assert kfp_api.requests == []


def test_string_parameters_take_the_text_and_required_ones_must_be_given() -> None:
    texts = [f"{TEXTS[0]}=123", f"{TEXTS[1]}=none", f'{TEXTS[2]}="quoted"', f"{TEXTS[3]}="]
    assert runtime_parameters(PACKAGE, [*REQUIRED, *texts]) == {
        **REQUIRED_SENT,
        TEXTS[0]: "123",
        TEXTS[1]: "none",
        TEXTS[2]: "quoted",
        TEXTS[3]: "",
    }
    first_required = next(iter(REQUIRED_VALUES))
    with pytest.raises(KfpSubmitError, match=f"fashionrec-training needs .*pass --param {first_required}=VALUE"):
        runtime_parameters(PACKAGE, [f"{INTEGER}=1"])
    with pytest.raises(KfpSubmitError, match="write NAME=VALUE"):
        runtime_parameters(PACKAGE, [INTEGER])


def test_a_literal_password_in_a_parameter_is_refused_before_any_request(kfp_api: KfpApiRecorder) -> None:
    """KFP stores a run's parameters for anyone who can list runs: a password goes as ${VAR} (Feast expands it)."""
    with pytest.raises(KfpSubmitError) as refused:
        submit_run(kfp_api.url, params=[*REQUIRED, "online_store=redis://:hunter2@redis.feast:6379/0"])
    assert "online_store" in str(refused.value) and "hunter2" not in str(refused.value) and "${VAR}" in str(refused.value)
    assert kfp_api.requests == []
    reference = "redis://:${FEAST_REDIS_PASSWORD}@redis.feast:6379/0"
    assert runtime_parameters(PACKAGE, [*REQUIRED, f"online_store={reference}"])["online_store"] == reference


def test_submission_errors_hide_the_password_of_the_host() -> None:
    host = f"http://admin:hunter2@127.0.0.1:{free_closed_port()}"
    with pytest.raises(KfpSubmitError) as refused:
        submit_run(host, params=REQUIRED, timeout=0.5)
    assert "hunter2" not in str(refused.value) and "admin:***@127.0.0.1" in str(refused.value)


@pytest.mark.parametrize("cron", ["0 3 * *", "0 0 3 * * *", "@daily", "0 3 * * %"])
def test_a_bad_cron_is_refused_before_any_request(kfp_api: KfpApiRecorder, cron: str) -> None:
    with pytest.raises(KfpSubmitError, match="--cron"):
        schedule_run(kfp_api.url, cron, params=REQUIRED)
    assert kfp_api.requests == []
    assert kfp_cron("*/15 8-18 * * MON-FRI") == "0 */15 8-18 * * MON-FRI"


def free_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_host_is_one_line_without_kfp_retrying() -> None:
    host = f"http://127.0.0.1:{free_closed_port()}"
    # kfp.Client alone would poll healthz 5 times 5 s apart; the quick check fails within its timeout.
    with pytest.raises(KfpSubmitError) as refused:
        submit_run(host, params=REQUIRED, timeout=0.5)
    assert str(refused.value).startswith(f"cannot reach the KFP API at {host} (")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "server",
    [
        pytest.param({"required_token": "right"}, id="401 from the API"),
        pytest.param({"required_token": "right", "guard_healthz": True}, id="401 from healthz"),
        pytest.param({"login_redirect": True}, id="redirect to a login page"),
    ],
)
def test_an_auth_failure_says_how_to_authenticate(server: dict[str, Any]) -> None:
    with KfpApiRecorder(**server) as kfp_api, pytest.raises(KfpSubmitError) as refused:
        submit_run(kfp_api.url, params=REQUIRED, token="wrong")
    message = str(refused.value)
    assert message.startswith(f"authentication failed at {kfp_api.url} (HTTP ")
    assert message.endswith("pass --token or set KF_PIPELINES_SA_TOKEN_PATH")
    assert "\n" not in message
    assert not kfp_api.uploads()


def test_no_host_anywhere_says_how_to_give_one() -> None:
    with pytest.raises(KfpSubmitError, match="no KFP host: pass --host"):
        submit_run(None, params=REQUIRED)


def test_cli_submit_prints_the_run_id_and_url(kfp_api: KfpApiRecorder) -> None:
    result = runner.invoke(
        app, ["pipeline", "submit", "--host", kfp_api.url, *(f"--param={p}" for p in REQUIRED), "--param", f"{INTEGER}=2"]
    )
    assert result.exit_code == 0, result.output
    run_id = kfp_api.runs[0]["run_id"]
    assert f"run {run_id} started in experiment fashionrec" in result.output
    assert f"{kfp_api.url}/#/runs/details/{run_id}" in result.output
    assert kfp_api.runs[0]["runtime_config"]["parameters"] == {**REQUIRED_SENT, INTEGER: 2}


def test_cli_schedule_prints_the_recurring_run(kfp_api: KfpApiRecorder) -> None:
    result = runner.invoke(
        app, ["pipeline", "schedule", "--host", kfp_api.url, "--cron", "30 2 * * 1", *(f"--param={p}" for p in REQUIRED)]
    )
    assert result.exit_code == 0, result.output
    recurring_id = kfp_api.recurring_runs[0]["recurring_run_id"]
    assert f"recurring run {recurring_id}" in result.output and "'0 30 2 * * 1'" in result.output
    assert f"{kfp_api.url}/#/recurringrun/details/{recurring_id}" in result.output


def test_cli_refuses_an_unknown_parameter_in_one_line(kfp_api: KfpApiRecorder) -> None:
    result = runner.invoke(app, ["pipeline", "submit", "--host", kfp_api.url, "--param", "no_such_input=3"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("unknown pipeline parameter no_such_input;")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert kfp_api.requests == []
