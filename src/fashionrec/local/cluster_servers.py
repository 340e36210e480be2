"""Servers a cluster has and one machine does not, on free loopback ports: a real MLflow tracking server (the model
registry as a team runs it) and an S3-compatible object store (moto's server: releases, the change log and the
request log through the same s3:// and minio:// code as on a cluster). `make test-tools` installs both into .tools/."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import httpx

from fashionrec.checkout import tools_program
from fashionrec.config import LOOPBACK
from fashionrec.local.loopback import LoopbackServer, running
from fashionrec.serving.processes import wait_until


@dataclass
class LocalMlflowServer(LoopbackServer):
    @property
    def url(self) -> str:
        """The tracking and registry URI a team sets (``registry_uri``)."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        args = [
            str(tools_program("mlflow")),
            "server",
            f"--backend-store-uri=sqlite:///{self.work_dir.resolve() / 'mlflow.db'}",
            f"--artifacts-destination={self.work_dir.resolve() / 'artifacts'}",  # clients upload through the server
            f"--host={LOOPBACK}",
            f"--port={self.port}",
            "--workers=1",
        ]
        process = self.launch("mlflow", args)
        ready = f"{self.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
        wait_until(lambda: httpx.get(ready, timeout=5).status_code == 200, process, timeout, "mlflow server")


@dataclass
class LocalS3Server(LoopbackServer):
    @property
    def endpoint(self) -> str:
        """What AWS_ENDPOINT_URL names (the S3 API's address)."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        args = [str(tools_program("moto_server")), "-H", LOOPBACK, "-p", str(self.port)]
        process = self.launch("s3", args)
        wait_until(lambda: httpx.get(f"{self.endpoint}/", timeout=5).status_code == 200, process, timeout, "S3 server")


def running_mlflow(work_dir: Path) -> contextlib.AbstractContextManager[LocalMlflowServer]:
    return running(LocalMlflowServer(work_dir))


def running_s3(work_dir: Path) -> contextlib.AbstractContextManager[LocalS3Server]:
    return running(LocalS3Server(work_dir))
