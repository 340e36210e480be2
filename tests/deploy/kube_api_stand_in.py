"""A stand-in of the Kubernetes API server on loopback holding one InferenceService (no API server runs here): GET
answers it, a PUT must carry its current resourceVersion (409 otherwise), as the API server's. Requests go through
the real kubernetes client (the tests' CustomObjectsApi, or KServeClient from a kubeconfig inside an image)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import yaml

from tests.loopback_http import ServedInThread


def isvc_path(namespace: str, name: str) -> str:
    return f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/{name}"


class ApiServer(BaseHTTPRequestHandler):
    path_served: str
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
        if self.path != self.path_served:
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


class KubeApiStandIn(ServedInThread):
    """``with KubeApiStandIn(isvc) as api:`` serves ``isvc`` (its metadata's namespace and name) on ``api.url``;
    ``api.handler.seen`` records the requests and ``api.handler.stored`` is what a GET answers."""

    def __init__(self, isvc: dict[str, Any]) -> None:
        path = isvc_path(isvc["metadata"]["namespace"], isvc["metadata"]["name"])
        self.handler: type[ApiServer] = type("Handler", (ApiServer,), {"path_served": path, "stored": isvc, "seen": []})
        self.serve(self.handler)

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig naming this server, as a pod outside the cluster would get one (no credentials: the
        stand-in asks for none)."""
        cluster, user = {"server": self.url}, dict[str, str]()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": cluster}],
            "users": [{"name": "stand-in", "user": user}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}],
            "current-context": "stand-in",
        }
        path.write_text(yaml.safe_dump(config))
        return path
