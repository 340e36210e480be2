"""fashionrec.serving.batching: concurrent requests share forward passes, each caller gets its own rows, errors reach every
caller of the failed batch and the batcher goes on."""

import asyncio
import threading

import numpy as np
import pytest

from fashionrec.serving.batching import MicroBatcher


class RecordingModel:
    """Doubles its input; remembers each batch size; can be told to fail once."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.fail_next = False
        self.release = threading.Event()
        self.release.set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.release.wait(5)
        self.batch_sizes.append(len(batch))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("forward pass failed")
        return batch * 2


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch=8, max_delay_s=0.05)

    async def main() -> list[np.ndarray]:
        requests = [np.full((1 + i % 2, 3), i, dtype=np.float32) for i in range(12)]  # 18 rows in 12 requests
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    results = asyncio.run(main())
    for i, rows in enumerate(results):
        assert rows.shape == (1 + i % 2, 3) and (rows == 2 * i).all()
    assert sum(model.batch_sizes) == 18
    assert len(model.batch_sizes) < 12 and max(model.batch_sizes) <= 8 + 1  # batched; a request is never split


def test_requests_arriving_while_a_batch_runs_form_the_next_batch() -> None:
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch=8, max_delay_s=0.0)  # no waiting: only what queued meanwhile joins

    async def main() -> None:
        model.release.clear()
        first = asyncio.ensure_future(batcher.submit(np.ones((1, 2), dtype=np.float32)))
        await asyncio.sleep(0.05)  # the first batch is running (blocked in the model)
        rest = [asyncio.ensure_future(batcher.submit(np.ones((1, 2), dtype=np.float32))) for _ in range(5)]
        await asyncio.sleep(0.05)
        model.release.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert model.batch_sizes == [1, 5]


def test_a_failed_batch_fails_its_callers_and_the_next_one_works() -> None:
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch=4, max_delay_s=0.01)

    async def main() -> None:
        model.fail_next = True
        outcomes = await asyncio.gather(
            *(batcher.submit(np.ones((1, 2), dtype=np.float32)) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, RuntimeError) and "forward pass failed" in str(o) for o in outcomes)
        again = await batcher.submit(np.full((2, 2), 3, dtype=np.float32))
        assert (again == 6).all()

    asyncio.run(main())


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(RecordingModel(), max_batch=0, max_delay_s=0.01)
