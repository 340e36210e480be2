"""A real Prometheus server on a free loopback port, scraping local servers: the canary check reads it through the
same federation endpoint as on a cluster (Debian's `prometheus`; `make test-tools` installs it)."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fashionrec.config import LOOPBACK, SCRAPE_INTERVAL_S
from fashionrec.local.loopback import LoopbackServer, running
from fashionrec.serving.processes import ServerStartError, wait_until

PROMETHEUS = "prometheus"
JOB = "fashionrec"


@dataclass
class LocalPrometheus(LoopbackServer):
    targets: list[str] = field(default_factory=list)  # host:port of each server whose /metrics it scrapes
    scrape_interval_s: float = SCRAPE_INTERVAL_S

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def config(self) -> dict[str, object]:
        interval = f"{self.scrape_interval_s:g}s"
        return {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": self.targets}]}],
        }

    def start(self, timeout: float = 60.0) -> None:
        binary = shutil.which(PROMETHEUS)
        if binary is None:
            raise ServerStartError(f"{PROMETHEUS} not found: run `make test-tools` (installs Debian's prometheus)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "prometheus.yml"
        config.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")  # JSON is YAML
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.work_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
        ]
        process = self.launch("prometheus", args)
        wait_until(lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200, process, timeout, "prometheus")


def running_prometheus(
    work_dir: Path, targets: list[str], scrape_interval_s: float = SCRAPE_INTERVAL_S
) -> contextlib.AbstractContextManager[LocalPrometheus]:
    return running(LocalPrometheus(work_dir, targets, scrape_interval_s))
