"""A stand-in for the KFP v2beta1 REST API on loopback that records every request, for tests of what kfp.Client sends.

It answers the few endpoints a submission uses (paths, methods and shapes from kfp_server_api/api/*.py, response fields
from the kfp_server_api models) and keeps what was created, so that a second submission sees the first. No KFP server
can run here; ``assert_fits_model`` checks request bodies against the models the real server deserializes them to."""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kfp_server_api

from tests.loopback_http import ServedInThread

API = "/apis/v2beta1"
HEALTHZ = f"{API}/healthz"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def multipart(self) -> dict[str, tuple[str | None, bytes]]:
        """The form fields of a multipart/form-data body: name -> (file name, content)."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = BytesParser(policy=policy.HTTP).parsebytes(head + self.body)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes), f"form field {name}: {content!r}"
            fields[str(name)] = (part.get_filename(), content)
        return fields


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _display_name_wanted(query: dict[str, list[str]]) -> str | None:
    """The display name an EQUALS filter asks for (protojson accepts string_value and stringValue, enum names and
    numbers: kfp's own lookups send {"operation": 1, "stringValue": ...})."""
    text = (query.get("filter") or [""])[0]
    if not text:
        return None
    for predicate in json.loads(text).get("predicates", []):
        if predicate.get("key") == "display_name" and predicate.get("operation") in ("EQUALS", 1):
            return str(predicate.get("string_value", predicate.get("stringValue")))
    raise AssertionError(f"a filter this stand-in does not understand: {text}")


@dataclass
class KfpApiRecorder(ServedInThread):
    """``with KfpApiRecorder() as kfp_api:`` serves on ``kfp_api.url`` until the block ends.

    required_token: API calls without ``Authorization: Bearer <it>`` get 401 (healthz too when guard_healthz);
    login_redirect: healthz answers 302 to a login page, as Kubeflow's oauth2-proxy does for a browser."""

    required_token: str | None = None
    guard_healthz: bool = False
    login_redirect: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    unrouted: list[RecordedRequest] = field(default_factory=list)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    recurring_runs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.serve(_Handler).recorder = self

    # --- what tests read ---

    def api_calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    def calls_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def uploads(self) -> list[RecordedRequest]:
        """Requests that create a pipeline or upload pipeline YAML."""
        return [r for r in self.requests if r.method == "POST" and r.path.startswith(f"{API}/pipelines")]

    # --- the API ---

    def answer(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.requests.append(request)
            if request.path == HEALTHZ and self.login_redirect:
                return 302, {"Location": "/dex/auth?client_id=kubeflow-oidc-authservice"}, None
            guarded = self.required_token and (request.path != HEALTHZ or self.guard_healthz)
            if guarded and request.headers.get("authorization") != f"Bearer {self.required_token}":
                return 401, {}, {"error": "Unauthenticated", "code": 16, "message": "Request is not authenticated"}
            status, body = self._route(request)
            if status == 404:
                self.unrouted.append(request)
            return status, {}, body

    def _route(self, request: RecordedRequest) -> tuple[int, Any]:
        method, path = request.method, request.path
        if (method, path) == ("GET", HEALTHZ):
            return 200, {"multi_user": False, "pipeline_store": "database"}
        if (method, path) == ("GET", f"{API}/pipelines"):
            wanted = _display_name_wanted(request.query)
            found = [p for p in self.pipelines if wanted is None or p["display_name"] == wanted]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/pipelines"):
            body = request.json()
            pipeline = {
                "pipeline_id": str(uuid.uuid4()),
                "name": body["name"],
                "display_name": body.get("display_name") or body["name"],
                "description": body.get("description", ""),
                "created_at": _now(),
            }
            self.pipelines.append(pipeline)
            return 200, pipeline
        if method == "GET" and (match := re.fullmatch(f"{API}/pipelines/([^/]+)/versions", path)):
            wanted = _display_name_wanted(request.query)
            found = [v for v in self.versions if v["pipeline_id"] == match[1] and wanted in (None, v["display_name"])]
            return 200, {"pipeline_versions": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/pipelines/upload_version"):
            return self._upload_version(request)
        if (method, path) == ("GET", f"{API}/experiments"):
            wanted = _display_name_wanted(request.query)
            found = [e for e in self.experiments if wanted is None or e["display_name"] == wanted]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/experiments"):
            experiment = {
                "experiment_id": str(uuid.uuid4()),
                "display_name": request.json()["display_name"],
                "created_at": _now(),
                "storage_state": "AVAILABLE",
            }
            self.experiments.append(experiment)
            return 200, experiment
        if (method, path) == ("GET", f"{API}/runs"):
            experiment_id = request.query_value("experiment_id")
            assert request.query_value("sort_by") == "created_at desc", request.query
            found = sorted(
                (r for r in self.runs if experiment_id in (None, r.get("experiment_id"))),
                key=lambda r: r["created_at"],
                reverse=True,
            )[: int(request.query_value("page_size") or 10)]
            return 200, {"runs": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/runs"):
            run = {**request.json(), "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": _now()}
            self.runs.append(run)
            return 200, run
        if (method, path) == ("POST", f"{API}/recurringruns"):
            recurring = {**request.json(), "recurring_run_id": str(uuid.uuid4()), "status": "ENABLED", "created_at": _now()}
            self.recurring_runs.append(recurring)
            return 200, recurring
        return 404, {"error": f"no route {method} {path}", "code": 5, "message": "Not Found"}

    def _upload_version(self, request: RecordedRequest) -> tuple[int, Any]:
        pipeline_id, name = request.query_value("pipelineid"), request.query_value("name")
        if not any(p["pipeline_id"] == pipeline_id for p in self.pipelines):
            return 400, {"error_message": "Failed to create a pipeline version", "error_details": "no such pipeline"}
        if any(v["pipeline_id"] == pipeline_id and v["name"] == name for v in self.versions):
            # The real server keeps (pipeline id, version name) unique.
            return 409, {"error_message": "Failed to create a pipeline version", "error_details": "already exists"}
        assert "uploadfile" in request.multipart(), "the YAML goes in the form field uploadfile"
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "name": name,
            "display_name": request.query_value("display_name") or name,
            "description": request.query_value("description") or "",
            "created_at": _now(),
            "code_source_url": "",
        }
        self.versions.append(version)
        return 200, version


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        recorder: KfpApiRecorder = self.server.recorder  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = RecordedRequest(
            self.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, body
        )
        status, headers, payload = recorder.answer(request)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
        pass


# --- request bodies against the kfp_server_api models ---

PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str, int),  # int64 fields are "str" in the models; protojson takes a JSON number for them too
    "int": (int,),
    "bool": (bool,),
    "float": (float, int),
    "datetime": (str,),
}


def assert_fits_model(value: Any, model: str, where: str = "") -> None:
    """Every key of a JSON body is an attribute of the kfp_server_api model it must deserialize to (recursively,
    through nested models, lists and maps), enum values are allowed ones and primitives have their types."""
    where = where or model
    cls = getattr(kfp_server_api.models, model)
    if not cls.attribute_map:  # an enum
        assert value in cls.allowable_values, f"{where}: {value!r} is not one of {cls.allowable_values}"
        return
    assert isinstance(value, dict), f"{where}: expected a {model} object, got {value!r}"
    attribute_of = {json_key: attribute for attribute, json_key in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(attribute_of))
    assert not unknown, f"{where}: {unknown} are not fields of {model} ({sorted(attribute_of)})"
    for key, item in value.items():
        _assert_fits_type(item, cls.openapi_types[attribute_of[key]], f"{where}.{key}")


def _assert_fits_type(value: Any, type_name: str, where: str) -> None:
    if value is None or type_name == "object":
        return
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        for index, item in enumerate(value):
            _assert_fits_type(item, match[1], f"{where}[{index}]")
    elif match := re.fullmatch(r"dict\((\w+), (.+)\)", type_name):
        assert isinstance(value, dict), f"{where}: expected a map, got {value!r}"
        for key, item in value.items():
            _assert_fits_type(item, match[2], f"{where}[{key!r}]")
    elif type_name in PRIMITIVES:
        allowed = PRIMITIVES[type_name]
        ok = isinstance(value, allowed) and (type_name == "bool" or not isinstance(value, bool))
        assert ok, f"{where}: expected {type_name}, got {value!r}"
    else:
        assert_fits_model(value, type_name, where)
