"""What every server the launcher runs beside the project's own shares (Redis, Prometheus, an MLflow tracking server,
an S3 API): a work dir for its data and log, a free loopback port, one managed process, and a `with` block that
stops it whatever happens."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from fashionrec.serving.processes import ManagedProcess, free_port


@dataclass
class LoopbackServer:
    work_dir: Path
    port: int = field(default_factory=free_port, kw_only=True)
    process: ManagedProcess | None = field(default=None, kw_only=True)

    def start(self) -> None:
        raise NotImplementedError

    def launch(self, name: str, args: list[str]) -> ManagedProcess:
        """Start ``args`` as this server's process, its output in ``<work_dir>/<name>.log``."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(name, args, self.work_dir / f"{name}.log")
        self.process.start()
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


Server = TypeVar("Server", bound=LoopbackServer)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """``server`` started for the block, stopped after it."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
