"""The kserve target's writes through the real kubernetes client against a stand-in of the API server on loopback (no
API server runs here): the InferenceService goes as the manifests' plain dict to the documented endpoint, carries
its resourceVersion, and a stale one comes back as a conflict. KServeClient's own replace reads attributes of
KServe's generated classes (``inferenceservice.api_version``) and cannot send a dict at all."""

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from fashionrec.config import LOOPBACK
from fashionrec.deploy.kserve_target import InferenceServices, is_conflict

TEMPLATE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "inferenceservice.yaml"
PATH = "/apis/serving.kserve.io/v1beta1/namespaces/team-a/inferenceservices/fashionrec"


class ApiServer(BaseHTTPRequestHandler):
    """One InferenceService; a PUT must carry its current resourceVersion (409 otherwise), as the API server's."""

    stored: dict[str, Any]
    seen: list[tuple[str, str, dict[str, Any] | None]]

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, None))
        if self.path != PATH:
            self._answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        else:
            self._answer(200, self.stored)

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("PUT", self.path, body))
        if body["metadata"].get("resourceVersion") != self.stored["metadata"]["resourceVersion"]:
            self._answer(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
            return
        type(self).stored = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": str(int(body["metadata"]["resourceVersion"]) + 1)},
        }
        self._answer(200, self.stored)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def api() -> Iterator[tuple[InferenceServices, type[ApiServer]]]:
    isvc = yaml.safe_load(TEMPLATE.read_text())
    isvc["metadata"].update(namespace="team-a", resourceVersion="7")
    handler = type("Handler", (ApiServer,), {"stored": isvc, "seen": []})
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = Configuration(host=f"http://{LOOPBACK}:{server.server_address[1]}")
    try:
        yield InferenceServices(CustomObjectsApi(ApiClient(configuration))), handler
    finally:
        server.shutdown()


def test_a_dict_goes_to_the_documented_endpoint_with_its_resource_version(api: tuple[InferenceServices, type[ApiServer]]) -> None:
    services, server = api
    isvc = services.get("fashionrec", "team-a")
    changed = copy.deepcopy(isvc)
    changed["spec"]["transformer"]["canaryTrafficPercent"] = 10
    stored = services.replace("fashionrec", changed, "team-a")
    method, path, body = server.seen[-1]
    assert (method, path) == ("PUT", PATH) and body == changed and changed["metadata"]["resourceVersion"] == "7"
    assert stored["metadata"]["resourceVersion"] == "8"


def test_a_stale_resource_version_is_a_conflict(api: tuple[InferenceServices, type[ApiServer]]) -> None:
    services, _ = api
    isvc = services.get("fashionrec", "team-a")
    services.replace("fashionrec", isvc, "team-a")  # moves it on
    with pytest.raises(ApiException) as refused:
        services.replace("fashionrec", isvc, "team-a")
    assert refused.value.status == 409 and is_conflict(refused.value)
    with pytest.raises(ApiException) as missing:
        services.get("another", "team-a")
    assert missing.value.status == 404 and not is_conflict(missing.value)


def test_kserve_clients_replace_cannot_send_the_manifests_dict() -> None:
    """Why the target does not use it: KServeClient.replace reads ``inferenceservice.api_version`` first."""
    from kserve import KServeClient

    isvc = yaml.safe_load(TEMPLATE.read_text())
    with pytest.raises(AttributeError, match="api_version"):
        KServeClient.replace(object.__new__(KServeClient), "fashionrec", isvc, namespace="team-a")
