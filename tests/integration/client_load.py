"""Clients that keep querying a transformer while something changes under it (a rollout, a materialize, a
catalogue change): what they saw is what the tests assert on; and waiting for a server to get somewhere."""

import threading
import time
from collections.abc import Callable

import httpx

from fashionrec.config import MODEL_NAME


def under_load(url: str, bodies: list[dict[str, object]], action: Callable[[], object]) -> list[tuple[int, str]]:
    """Run ``action`` while two clients send ``bodies`` in turn; every (status, model_version or error) they saw."""
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def query() -> None:
        with httpx.Client(timeout=60) as client:
            sent = 0
            while not stop.is_set():
                response = client.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=bodies[sent % len(bodies)])
                answers.append((response.status_code, response.json().get("model_version", response.text)))
                sent += 1

    workers = [threading.Thread(target=query) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        action()
        stop.wait(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    return answers


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether ``check`` came true within ``timeout`` seconds (polled every 0.3 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return check()
