"""A real redis-server on a free loopback port: the shared online store of the tests, the benchmark and local trials
of the production setup (Debian's redis-server; `make test-tools` installs it)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fashionrec.config import LOOPBACK
from fashionrec.serving.processes import ManagedProcess, ServerStartError, free_port

REDIS_SERVER = "redis-server"


@dataclass
class LocalRedis:
    work_dir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """The online store setting (fashionrec.retrieval.feast_store.StoreSettings) that points at this server."""
        return f"redis://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            raise ServerStartError(f"{REDIS_SERVER} not found: run `make test-tools` (installs Debian's redis-server)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # In memory only, loopback only, no background saves: a store the tests throw away.
        args = [binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
        self.process = ManagedProcess("redis", [*args, "--dir", str(self.work_dir)], self.work_dir / "redis.log")
        self.process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.process.check_alive()
            with contextlib.suppress(OSError):
                if self.ping():
                    return
            time.sleep(0.1)
        raise ServerStartError(f"redis-server not ready after {timeout:.0f}s:\n{self.process.log_tail()}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=2).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@contextlib.contextmanager
def running_redis(work_dir: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(work_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
