"""Upload the compiled training pipeline to a Kubeflow Pipelines (KFP) API server, start a run of it or schedule
recurring runs, through kfp.Client (kfp 2.17, KFP v2beta1 REST API).

What a user can get wrong locally (the package, parameter names and types, the cron expression, the host URL) is
refused before the first request. The server's answers (unreachable, 401/403, any other refusal) become a one-line
KfpSubmitError.

Every upload is a pipeline *version* named ``<pipeline name>-<first 12 hex of the YAML's sha256>``: submitting the same
YAML again finds that version and uploads nothing; a changed YAML becomes a new version of the same pipeline."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx

from fashionrec.checkout import PIPELINE_MODULES, compiled_pipeline
from fashionrec.storage import redact_urls, refuse_literal_passwords

DEFAULT_EXPERIMENT = "fashionrec"
DEFAULT_PREFLIGHT_TIMEOUT_S = 5.0

# What kfp.Client's constructor polls (kfp_server_api HealthzServiceApi), 5 tries 5 s apart when it gets no answer.
HEALTHZ_PATH = "/apis/v2beta1/healthz"
# Environment variables kfp.Client reads itself (kfp/client/client.py and kfp/client/__init__.py).
ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"
UI_ENDPOINT_ENV = "KF_PIPELINES_UI_ENDPOINT"
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
# kfp.Client's in-cluster defaults: the ml-pipeline service of the kubeflow namespace and the projected
# service-account token (Client._IN_CLUSTER_DNS_NAME, kfp.client.KF_PIPELINES_SA_TOKEN_PATH).
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
IN_CLUSTER_TOKEN_PATH = Path("/var/run/secrets/kubeflow/pipelines/token")
AUTH_HINT = "pass --token or set KF_PIPELINES_SA_TOKEN_PATH"
# The KFP API accepts max_concurrency 1-10 (recurring run validation in the API server).
MAX_CONCURRENCY_RANGE = range(1, 11)

PARAMETER_TYPE_NAMES = {
    "NUMBER_INTEGER": "an integer",
    "NUMBER_DOUBLE": "a number",
    "STRING": "a string",
    "BOOLEAN": "true or false",
    "STRUCT": "a JSON object",
    "LIST": "a JSON list",
}
# One cron field: numbers, names (JAN, MON), and the operators robfig/cron (KFP's scheduler) understands.
CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,\-]+$")


class KfpSubmitError(RuntimeError):
    """Why a submission could not be made, in one line a person can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_urls(message))  # it quotes hosts, URLs and server messages: never their passwords


@dataclass(frozen=True)
class PipelineParameter:
    name: str
    parameter_type: str  # KFP's parameterType: NUMBER_INTEGER, NUMBER_DOUBLE, STRING, BOOLEAN, STRUCT, LIST
    required: bool


@dataclass(frozen=True)
class PipelinePackage:
    """A compiled pipeline YAML: its bytes (what is uploaded and hashed), name and runtime parameters."""

    path: Path
    content: bytes
    name: str
    description: str
    parameters: Mapping[str, PipelineParameter]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def version_name(self) -> str:
        return f"{self.name}-{self.sha256[:12]}"


@dataclass(frozen=True)
class PipelineVersionRef:
    pipeline_name: str
    pipeline_id: str
    pipeline_version_id: str
    version_name: str
    pipeline_created: bool
    version_uploaded: bool  # False: a version with this content hash was already there and is reused


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    url: str
    experiment_id: str
    pipeline: PipelineVersionRef


@dataclass(frozen=True)
class ScheduledRun:
    recurring_run_id: str
    url: str
    cron: str  # as sent to KFP: 6 fields, seconds first
    experiment_id: str
    pipeline: PipelineVersionRef


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise KfpSubmitError(f"{module} is not installed: pip install 'fashionrec[pipeline]'") from exc


# --- the package and its parameters (no network) ---


def default_package_path() -> Path:
    """The committed, reviewed YAML: pipelines/compiled/training_pipeline.yaml of the checkout."""
    try:
        return compiled_pipeline(PIPELINE_MODULES[0])
    except FileNotFoundError as exc:
        raise KfpSubmitError(f"{exc}; or pass --package PATH") from exc


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def load_pipeline_package(path: Path | None = None) -> PipelinePackage:
    path = path or default_package_path()
    if path.suffix not in (".yaml", ".yml"):
        raise KfpSubmitError(f"{path}: give a compiled pipeline YAML (.yaml), as `fashionrec pipeline compile` writes")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise KfpSubmitError(f"cannot read the pipeline package {path}: {exc.strerror or exc}") from exc
    yaml = _require("yaml")
    try:
        # A compiled pipeline is one YAML document, or two when it carries a Kubernetes platform spec.
        spec = _mapping(next(iter(yaml.safe_load_all(content)), None))
    except yaml.YAMLError as exc:
        raise KfpSubmitError(f"{path} is not valid YAML: {one_line(str(exc))}") from exc
    info = _mapping(spec.get("pipelineInfo"))
    name = info.get("name")
    if not isinstance(name, str) or not name.strip():
        raise KfpSubmitError(f"{path} is not a compiled KFP pipeline (it has no pipelineInfo.name)")
    declared = _mapping(_mapping(_mapping(spec.get("root")).get("inputDefinitions")).get("parameters"))
    parameters = {
        key: PipelineParameter(
            name=key,
            parameter_type=str(_mapping(value).get("parameterType", "")),
            required=not _mapping(value).get("isOptional", False) and "defaultValue" not in _mapping(value),
        )
        for key, value in declared.items()
    }
    return PipelinePackage(path, content, name, str(info.get("description") or ""), parameters)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def typed_parameter_value(parameter: PipelineParameter, text: str) -> Any:
    """The value of ``--param NAME=TEXT``: TEXT as JSON where it parses, else the text, checked against the YAML's
    parameterType."""
    value = _json_or_text(text)
    kind = parameter.parameter_type
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "STRING":
        # The text as given ("007", "true", "none" stay strings); only a JSON-quoted string loses its quotes.
        return value if isinstance(value, str) else text
    if kind == "NUMBER_INTEGER" and is_number and isinstance(value, int):
        return value
    if kind == "NUMBER_DOUBLE" and is_number and math.isfinite(value):
        return float(value)
    if (kind == "BOOLEAN" and isinstance(value, bool)) or (kind == "STRUCT" and isinstance(value, dict)):
        return value
    if kind == "LIST" and isinstance(value, list):
        return value
    if kind not in PARAMETER_TYPE_NAMES:
        return value  # a type this code does not know: the server judges
    raise KfpSubmitError(f"--param {parameter.name}={text}: {parameter.name} takes {PARAMETER_TYPE_NAMES[kind]} ({kind})")


def runtime_parameters(package: PipelinePackage, assignments: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` assignments as the run's parameters, refused unless the pipeline declares NAME with VALUE's type
    and every required parameter has a value."""
    texts: dict[str, str] = {}
    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        name = name.strip()
        if not equals or not name:
            raise KfpSubmitError(f"--param {assignment!r}: write NAME=VALUE")
        if name in texts:
            raise KfpSubmitError(f"--param {name} is given twice")
        texts[name] = text
    unknown = sorted(set(texts) - set(package.parameters))
    if unknown:
        raise KfpSubmitError(
            f"unknown pipeline parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"{package.name} takes: {', '.join(sorted(package.parameters))}"
        )
    values = {name: typed_parameter_value(package.parameters[name], text) for name, text in texts.items()}
    try:
        refuse_literal_passwords(values)  # KFP keeps every parameter with the run, for anyone who can list runs
    except ValueError as exc:
        raise KfpSubmitError(str(exc)) from None
    missing = sorted(name for name, parameter in package.parameters.items() if parameter.required and name not in values)
    if missing:
        raise KfpSubmitError(f"{package.name} needs {', '.join(missing)}: pass --param {missing[0]}=VALUE")
    return values


def kfp_cron(expression: str) -> str:
    """The usual 5-field cron as KFP wants it: KFP's scheduler (robfig/cron) reads 6 fields, seconds first, and would
    read '0 3 * * *' as 'second 0, minute 3 of every hour'."""
    fields = expression.split()
    if len(fields) != 5:
        raise KfpSubmitError(
            f"--cron {expression!r} has {len(fields)} fields; give the usual 5 (minute hour day-of-month month day-of-week), "
            "e.g. '0 3 * * *' for 03:00 daily (the seconds field KFP's 6-field cron starts with is added here)"
        )
    bad = [field for field in fields if not CRON_FIELD.match(field)]
    if bad:
        raise KfpSubmitError(f"--cron {expression!r}: {' '.join(bad)} is not a cron field (digits, names, * , - / ?)")
    return " ".join(["0", *fields])


# --- where the API is and who we are ---


def running_in_cluster() -> bool:
    # What kubernetes.config.load_incluster_config (kfp.Client's fallback when it has no host) checks first.
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def resolve_host(host: str | None) -> str:
    """--host, else $KF_PIPELINES_ENDPOINT (as kfp.Client), else inside a pod the in-cluster ml-pipeline service."""
    chosen = host or os.environ.get(ENDPOINT_ENV) or (IN_CLUSTER_HOST if running_in_cluster() else None)
    if not chosen:
        raise KfpSubmitError(
            f"no KFP host: pass --host (e.g. http://localhost:8080 after "
            f"`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`) or set {ENDPOINT_ENV}"
        )
    parts = urlsplit(chosen)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise KfpSubmitError(f"--host {chosen!r}: give the KFP API URL with http:// or https://, e.g. http://localhost:8080")
    return chosen.rstrip("/")


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()  # as kfp's read_token_from_file
    except OSError as exc:
        raise KfpSubmitError(f"cannot read the token file {path} ({TOKEN_PATH_ENV}): {exc.strerror or exc}") from exc
    if not token:
        raise KfpSubmitError(f"the token file {path} ({TOKEN_PATH_ENV}) is empty")
    return token


@dataclass(frozen=True)
class KfpAuth:
    """A bearer token given as is (kfp's existing_token), or a token file read again for every request (kfp's
    ServiceAccountTokenVolumeCredentials: the kubelet rotates projected tokens), or nothing."""

    token: str | None = None
    token_path: Path | None = None

    def bearer_token(self) -> str | None:
        if self.token:
            return self.token
        return read_token(self.token_path) if self.token_path else None

    def client_arguments(self) -> dict[str, Any]:
        if self.token:
            return {"existing_token": self.token}
        if self.token_path:
            credentials = _require("kfp.client").ServiceAccountTokenVolumeCredentials(path=str(self.token_path))
            return {"credentials": credentials}
        return {}


def resolve_auth(token: str | None) -> KfpAuth:
    """--token, else the file $KF_PIPELINES_SA_TOKEN_PATH names, else inside a pod the projected token when mounted."""
    if token:
        return KfpAuth(token=token)
    if env_path := os.environ.get(TOKEN_PATH_ENV):
        path = Path(env_path)
        read_token(path)  # refuse a missing or empty file now, not on the first API call
        return KfpAuth(token_path=path)
    if running_in_cluster() and IN_CLUSTER_TOKEN_PATH.is_file():
        return KfpAuth(token_path=IN_CLUSTER_TOKEN_PATH)
    return KfpAuth()


def _describe(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__


def auth_failure(host: str, status: int, detail: str = "") -> KfpSubmitError:
    said = f": {detail}" if detail else ""
    return KfpSubmitError(f"authentication failed at {host} (HTTP {status}{said}); {AUTH_HINT}")


def check_kfp_reachable(host: str, auth: KfpAuth, timeout: float = DEFAULT_PREFLIGHT_TIMEOUT_S) -> None:
    """One quick GET of the healthz endpoint kfp.Client's constructor polls, which would otherwise retry for ~25 s."""
    url = host + HEALTHZ_PATH
    bearer = auth.bearer_token()
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    try:
        # trust_env=False: kfp's own HTTP client (urllib3) does not use HTTP(S)_PROXY either.
        response = httpx.get(url, headers=headers, timeout=timeout, trust_env=False)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise KfpSubmitError(f"cannot reach the KFP API at {host} ({_describe(exc)}); check --host") from exc
    if response.status_code in (401, 403):
        raise auth_failure(host, response.status_code, one_line(response.text, 120))
    if response.is_redirect:  # Kubeflow's oauth2-proxy / Dex send a browser to a login page
        raise auth_failure(host, response.status_code, f"redirected to the login page {response.headers.get('location', '')}")
    if response.status_code != 200:
        raise KfpSubmitError(f"{url} answered HTTP {response.status_code}: is {host} the KFP API (the URL kfp.Client takes)?")


def _server_message(body: Any) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    with contextlib.suppress(ValueError):
        decoded = json.loads(text)
        if isinstance(decoded, dict):
            # grpc-gateway errors carry "message"; the upload endpoints "error_message".
            text = next((str(decoded[key]) for key in ("message", "error_message", "error") if decoded.get(key)), text)
    return one_line(text)


def api_error(host: str, exc: Any) -> KfpSubmitError:
    """A kfp_server_api.ApiException as one line."""
    status = int(exc.status or 0)
    message = _server_message(exc.body) or one_line(str(exc.reason or ""))
    # The upload endpoints answer an authentication failure with 400 "Pipeline upload authentication failed ...".
    if status in (401, 403) or (status == 400 and "authentication failed" in message.lower()):
        return auth_failure(host, status, message)
    if status == 0:
        return KfpSubmitError(f"cannot reach the KFP API at {host} ({message})")
    return KfpSubmitError(f"the KFP API at {host} refused the request (HTTP {status}): {message}")


@contextlib.contextmanager
def kfp_errors(host: str) -> Iterator[None]:
    """kfp's exceptions as KfpSubmitError."""
    kfp_server_api = _require("kfp_server_api")
    urllib3 = _require("urllib3")
    try:
        yield
    except kfp_server_api.ApiException as exc:
        raise api_error(host, exc) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise KfpSubmitError(f"lost the connection to the KFP API at {host} ({_describe(exc)})") from exc
    except (ValueError, TimeoutError) as exc:  # kfp: e.g. several experiments of one name; healthz never answered
        raise KfpSubmitError(f"kfp: {_describe(exc)}") from exc


@contextlib.contextmanager
def quiet_kfp() -> Iterator[None]:
    """kfp.Client prints 'Experiment details: <link>' lines and warns (FutureWarning) that it needs KFP >= 2.0.0-beta.2;
    the command prints its own summary instead."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        yield


@dataclass(frozen=True)
class KfpConnection:
    client: Any  # kfp.Client (kfp has no type hints)
    host: str
    namespace: str | None

    @property
    def ui_base(self) -> str:
        # kfp.Client links to $KF_PIPELINES_UI_ENDPOINT when set, else to the host.
        return (os.environ.get(UI_ENDPOINT_ENV) or self.host).rstrip("/")

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_base}/#/runs/details/{run_id}"

    def recurring_run_url(self, recurring_run_id: str) -> str:
        return f"{self.ui_base}/#/recurringrun/details/{recurring_run_id}"


def open_connection(
    host: str | None, token: str | None, namespace: str | None, timeout: float = DEFAULT_PREFLIGHT_TIMEOUT_S
) -> KfpConnection:
    resolved_host = resolve_host(host)
    auth = resolve_auth(token)
    check_kfp_reachable(resolved_host, auth, timeout)
    # kfp.client, not kfp.Client: inside a KFP step (_KFP_RUNTIME=true, as the launcher sets it) `import kfp` skips
    # the client ("module 'kfp' has no attribute 'Client'"), and importing kfp.client there is circular unless
    # kfp.dsl.component_factory comes first (the order kfp.dsl's own __init__ has outside a step).
    _require("kfp.dsl.component_factory")
    kfp_client = _require("kfp.client")
    with kfp_errors(resolved_host), quiet_kfp():
        # kfp.Client's namespace is the user namespace of a multi-user install; "kubeflow" is its "none given".
        client = kfp_client.Client(host=resolved_host, namespace=namespace or "kubeflow", **auth.client_arguments())
    return KfpConnection(client, resolved_host, namespace)


# --- upload, experiment, run (inside kfp_errors) ---


def display_name_filter(name: str) -> str:
    """A v2beta1 list filter (V2beta1Filter as JSON) for one display name."""
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": name}]})


def find_pipeline_id(connection: KfpConnection, name: str) -> str | None:
    response = connection.client.list_pipelines(filter=display_name_filter(name), namespace=connection.namespace, page_size=100)
    matches = [str(p.pipeline_id) for p in response.pipelines or [] if name in (p.display_name, p.name)]
    if len(matches) > 1:
        raise KfpSubmitError(f"{len(matches)} pipelines are named {name}: delete or rename all but one")
    return matches[0] if matches else None


def find_version_id(connection: KfpConnection, pipeline_id: str, version_name: str) -> str | None:
    response = connection.client.list_pipeline_versions(
        pipeline_id=pipeline_id, filter=display_name_filter(version_name), page_size=100
    )
    return next(
        (str(v.pipeline_version_id) for v in response.pipeline_versions or [] if version_name in (v.display_name, v.name)),
        None,
    )


def create_pipeline(connection: KfpConnection, package: PipelinePackage) -> str:
    """An empty pipeline: uploading the YAML with kfp.Client.upload_pipeline would make a first version named after the
    pipeline, not after the content hash, and the next submission would upload the same YAML again."""
    kfp_server_api = _require("kfp_server_api")
    pipeline = kfp_server_api.V2beta1Pipeline(
        name=package.name, display_name=package.name, description=package.description or None, namespace=connection.namespace
    )
    return str(connection.client.pipelines.pipeline_service_create_pipeline(pipeline=pipeline).pipeline_id)


def upload_version(connection: KfpConnection, pipeline_id: str, package: PipelinePackage) -> str:
    kfp_server_api = _require("kfp_server_api")
    try:
        version = connection.client.upload_pipeline_version(
            pipeline_package_path=str(package.path),
            pipeline_version_name=package.version_name,
            pipeline_id=pipeline_id,
            description=f"sha256:{package.sha256} of {package.path.name}",
        )
    except kfp_server_api.ApiException as exc:
        # Version names are unique per pipeline: another submission of this YAML got there first.
        if exc.status == 409 and (existing := find_version_id(connection, pipeline_id, package.version_name)):
            return existing
        raise
    return str(version.pipeline_version_id)


def ensure_pipeline_version(connection: KfpConnection, package: PipelinePackage) -> PipelineVersionRef:
    """The pipeline version holding exactly this YAML: found by its content-hash name, else uploaded."""
    pipeline_id = find_pipeline_id(connection, package.name)
    pipeline_created = pipeline_id is None
    if pipeline_id is None:
        pipeline_id = create_pipeline(connection, package)
    version_id = None if pipeline_created else find_version_id(connection, pipeline_id, package.version_name)
    version_uploaded = version_id is None
    if version_id is None:
        version_id = upload_version(connection, pipeline_id, package)
    return PipelineVersionRef(package.name, pipeline_id, version_id, package.version_name, pipeline_created, version_uploaded)


def ensure_experiment(connection: KfpConnection, name: str) -> str:
    # kfp's create_experiment is a get-or-create: it looks the name up first.
    return str(connection.client.create_experiment(name=name, namespace=connection.namespace).experiment_id)


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class PreparedRun:
    """What a run and a recurring run both start from: the API connection, the pipeline version holding this YAML,
    the experiment and the checked parameters."""

    connection: KfpConnection
    package: PipelinePackage
    version: PipelineVersionRef
    experiment_id: str
    parameters: dict[str, Any]


@contextlib.contextmanager
def prepared_run(
    host: str | None,
    package_path: Path | None,
    params: Sequence[str],
    experiment: str,
    namespace: str | None,
    token: str | None,
    timeout: float,
) -> Iterator[PreparedRun]:
    """Check the package and parameters (no network), connect, find or upload the version, get or create the
    experiment; the caller's kfp calls inside the block get the same error handling."""
    package = load_pipeline_package(package_path)
    parameters = runtime_parameters(package, params)
    connection = open_connection(host, token, namespace, timeout)
    with kfp_errors(connection.host), quiet_kfp():
        version = ensure_pipeline_version(connection, package)
        yield PreparedRun(connection, package, version, ensure_experiment(connection, experiment), parameters)


# Runs in these states still hold (or wait for) the cluster: a new run of the same pipeline would race them.
IN_FLIGHT_STATES = ("PENDING", "RUNNING", "PAUSED", "CANCELING", "RUNTIME_STATE_UNSPECIFIED")
RECENT_RUNS = 50  # runs of the experiment looked at, newest first


class RunHeld(RuntimeError):
    """A guarded submission started nothing: a run of the pipeline is in flight, or the last one is too recent."""


def parse_api_time(value: Any) -> datetime:
    """A KFP API timestamp (a datetime from kfp_server_api, or RFC 3339 text) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def hold_reason(prepared: PreparedRun, cooldown_s: float, now: datetime) -> str | None:
    """Why a new run of the prepared pipeline must wait: one in flight, or one started within ``cooldown_s``."""
    listed = prepared.connection.client.list_runs(
        page_size=RECENT_RUNS,
        sort_by="created_at desc",
        experiment_id=prepared.experiment_id,
        namespace=prepared.connection.namespace,
    )
    runs = [
        run
        for run in listed.runs or []
        if run.pipeline_version_reference is not None
        and run.pipeline_version_reference.pipeline_id == prepared.version.pipeline_id
    ]
    for run in runs:
        if str(run.state or "RUNTIME_STATE_UNSPECIFIED") in IN_FLIGHT_STATES:
            return f"run {run.run_id} ({run.display_name}) of {prepared.package.name} is still {run.state}"
    if runs:
        latest = max(runs, key=lambda run: parse_api_time(run.created_at))
        age = (now - parse_api_time(latest.created_at)).total_seconds()
        if age < cooldown_s:
            return (
                f"run {latest.run_id} of {prepared.package.name} started {age / 3600:.1f} h ago, within the cooldown of "
                f"{cooldown_s / 3600:g} h"
            )
    return None


def submit_run(
    host: str | None,
    package_path: Path | None = None,
    params: Sequence[str] = (),
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    namespace: str | None = None,
    token: str | None = None,
    timeout: float = DEFAULT_PREFLIGHT_TIMEOUT_S,
    cooldown_s: float | None = None,
) -> SubmittedRun:
    """Upload the pipeline (unless this YAML already is a version of it), get or create the experiment, start a run.

    ``params`` are ``NAME=VALUE`` texts; ``timeout`` bounds the reachability check before kfp.Client is made. With
    ``cooldown_s`` (a triggered retraining), RunHeld instead of a run while one of this pipeline in the experiment
    is in flight or started less than ``cooldown_s`` ago."""
    with prepared_run(host, package_path, params, experiment, namespace, token, timeout) as prepared:
        if cooldown_s is not None and (reason := hold_reason(prepared, cooldown_s, datetime.now(UTC))):
            raise RunHeld(reason)
        run = prepared.connection.client.run_pipeline(
            experiment_id=prepared.experiment_id,
            job_name=run_name or f"{prepared.package.name} {_timestamp()}",
            params=prepared.parameters,
            pipeline_id=prepared.version.pipeline_id,
            version_id=prepared.version.pipeline_version_id,
        )
    run_id = str(run.run_id)
    return SubmittedRun(run_id, prepared.connection.run_url(run_id), prepared.experiment_id, prepared.version)


def schedule_run(
    host: str | None,
    cron: str,
    package_path: Path | None = None,
    params: Sequence[str] = (),
    experiment: str = DEFAULT_EXPERIMENT,
    name: str | None = None,
    max_concurrency: int = 1,
    namespace: str | None = None,
    token: str | None = None,
    timeout: float = DEFAULT_PREFLIGHT_TIMEOUT_S,
) -> ScheduledRun:
    """As submit_run, but a recurring run on a 5-field ``cron`` (sent to KFP with a seconds field), enabled, with no
    catch-up of runs missed while it was paused."""
    cron_expression = kfp_cron(cron)
    if max_concurrency not in MAX_CONCURRENCY_RANGE:
        raise KfpSubmitError(f"--max-concurrency {max_concurrency}: KFP accepts 1 to 10")
    with prepared_run(host, package_path, params, experiment, namespace, token, timeout) as prepared:
        recurring_run = prepared.connection.client.create_recurring_run(
            experiment_id=prepared.experiment_id,
            job_name=name or f"{prepared.package.name} at '{cron}'",
            cron_expression=cron_expression,
            max_concurrency=max_concurrency,
            no_catchup=True,
            params=prepared.parameters,
            pipeline_id=prepared.version.pipeline_id,
            version_id=prepared.version.pipeline_version_id,
            enabled=True,
        )
    recurring_run_id = str(recurring_run.recurring_run_id)
    url = prepared.connection.recurring_run_url(recurring_run_id)
    return ScheduledRun(recurring_run_id, url, cron_expression, prepared.experiment_id, prepared.version)
