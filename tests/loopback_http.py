"""An http.server stand-in on a free loopback port, served from a thread for the duration of a ``with`` block (the
stand-ins of APIs no server of which runs here: KFP's REST API, the Kubernetes API)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from fashionrec.config import LOOPBACK


class ServedInThread:
    """Call ``serve(handler)`` first (a subclass's constructor does); ``url`` is then where it answers."""

    url: str

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        self._server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        return self._server

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
