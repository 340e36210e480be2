"""Network faults on loopback, for the fault-injection tests and the soak benchmark: a TCP proxy in front of a
server that can cut the network (open connections reset, new ones refused) and restore it."""

from __future__ import annotations

import contextlib
import socket
import threading

from fashionrec.config import LOOPBACK


class CuttableProxy:
    """A TCP proxy on loopback in front of ``upstream_port`` that can cut the network: open connections are reset and
    new ones refused until it is restored. ``cut_after_puts`` severs it in the middle of an upload (after that many
    HTTP PUTs), as a network that fails part-way through."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.puts = 0
        self.cut_after_puts: int | None = None
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection((LOOPBACK, self.upstream_port))
            self.connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if requests and data.startswith(b"PUT "):
                    self.puts += 1
                    if self.cut_after_puts is not None and self.puts > self.cut_after_puts:
                        self.sever()
                        return
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def sever(self) -> None:
        self.cut.set()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                connection.close()
        self.connections.clear()

    def restore(self) -> None:
        self.cut.clear()
        self.cut_after_puts = None

    def close(self) -> None:
        self.sever()
        self.listener.close()
