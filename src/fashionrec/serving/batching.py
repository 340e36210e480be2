"""Dynamic batching for an asyncio model server (the KServe-hosted encoder), as TorchServe does it for its workers.

Requests that arrive within ``max_delay_s`` of the first one, or while the previous batch is running, share one
forward pass of up to ``max_batch`` images (a request is never split); each caller gets its own rows back. One batch
runs at a time, off the event loop, so the loop keeps parsing and validating the next requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import numpy as np


class MicroBatcher:
    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int, max_delay_s: float) -> None:
        if max_batch < 1 or max_delay_s < 0:
            raise ValueError("max_batch must be >= 1 and max_delay_s >= 0")
        self.run = run
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, batch: np.ndarray) -> np.ndarray:
        """The result rows of ``batch``, computed together with whatever else is waiting."""
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work(self._queue))
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((batch, future))
        return await future

    async def _work(self, queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await queue.get()]
            size, deadline = len(waiting[0][0]), loop.time() + self.max_delay_s
            while size < self.max_batch:
                try:
                    item = queue.get_nowait() if queue.qsize() else await asyncio.wait_for(queue.get(), deadline - loop.time())
                except TimeoutError:
                    break
                waiting.append(item)
                size += len(item[0])
            waiting = [(batch, future) for batch, future in waiting if not future.done()]  # callers that gave up
            if not waiting:
                continue
            try:
                rows = await asyncio.to_thread(self.run, np.concatenate([batch for batch, _ in waiting]))
            except Exception as exc:  # every caller of this batch gets the error; the worker goes on
                for _, future in waiting:
                    with contextlib.suppress(asyncio.InvalidStateError):
                        future.set_exception(exc)
                continue
            start = 0
            for batch, future in waiting:
                with contextlib.suppress(asyncio.InvalidStateError):
                    future.set_result(rows[start : start + len(batch)])
                start += len(batch)
