"""A real redis-server on a free loopback port: the shared online store of the tests, the benchmark and local trials
of the production setup (Debian's redis-server; `make test-tools` installs it)."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from fashionrec.config import LOOPBACK
from fashionrec.local.loopback import LoopbackServer, running
from fashionrec.serving.processes import ServerStartError

REDIS_SERVER = "redis-server"


@dataclass
class LocalRedis(LoopbackServer):
    # False: in memory only, a store the tests throw away. True: an append-only file in work_dir, fsynced every
    # second and on shutdown, as a production Redis keeps its data across a restart (the soak benchmark restarts it).
    persistent: bool = False

    @property
    def url(self) -> str:
        """The online store setting (fashionrec.retrieval.feast_store.StoreSettings) that points at this server."""
        return f"redis://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            raise ServerStartError(f"{REDIS_SERVER} not found: run `make test-tools` (installs Debian's redis-server)")
        durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persistent else ["--appendonly", "no"]
        args = [binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", *durability]
        process = self.launch("redis", [*args, "--dir", str(self.work_dir)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process.check_alive()
            with contextlib.suppress(OSError):
                if self.ping():
                    return
            time.sleep(0.1)
        raise ServerStartError(f"redis-server not ready after {timeout:.0f}s:\n{process.log_tail()}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=2).ping())
        except redis.ConnectionError:
            return False


def running_redis(work_dir: Path) -> contextlib.AbstractContextManager[LocalRedis]:
    return running(LocalRedis(work_dir))
