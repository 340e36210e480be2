"""How many feedback events the transformer's collector takes on this machine, against item queries on the same
server in the same run (the ratio is what carries over to other machines), and what its bounded buffer costs.

    python benchmarks/bench_feedback.py

A small generated catalogue is trained for one epoch and served as `fashionrec serve` serves it (TorchServe + the
transformer with an event log). Clients post one answer's events per request (10 impressions and a click, as the
gallery and the simulated shoppers do) on keep-alive connections (http.client, pre-encoded bodies) from
CONCURRENCY threads for SECONDS each; item queries (top 10, no predictor hop) are measured the same way right
after. The memory of a full buffer is measured in-process with tracemalloc (EVENT_BUFFER records). Prints a table
and writes benchmarks/results/feedback.json.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from fashionrec.config import MODEL_NAME, feedback_path
from fashionrec.data.synth import synth_catalog
from fashionrec.engagement.events import FeedbackEvent, cloud_event, parse_feedback
from fashionrec.local.stages import run_stages
from fashionrec.params import TrainConfig
from fashionrec.serving.client import item_request
from fashionrec.serving.feedback import EVENT_BUFFER
from fashionrec.serving.processes import serve_locally

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = 4
SECONDS = 15.0
EVENTS_PER_POST = 11  # one answer: 10 impressions and a click


def page_of_events(n: int) -> bytes:
    request = f"bench-{n}"
    events = [cloud_event("impression", f"{request}-i{r}", request, "v", 10000 + r, r, "session1234") for r in range(1, 11)]
    events.append(cloud_event("click", f"{request}-c", request, "v", 10002, 2, "session1234"))
    return json.dumps(events).encode()


def hammer(url: str, bodies: list[bytes], expected: int) -> int:
    """POST the bodies round-robin for SECONDS from CONCURRENCY connections; requests answered ``expected``."""
    parts = urlsplit(url)

    def worker(offset: int) -> int:
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        done, deadline = 0, time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            body = bodies[(offset + done) % len(bodies)]
            connection.request("POST", parts.path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            assert response.status == expected, response.status
            done += 1
        connection.close()
        return done

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        return sum(pool.map(worker, range(CONCURRENCY)))


def buffer_bytes() -> float:
    """Bytes per buffered event (what EVENT_BUFFER of them hold), measured with tracemalloc."""
    post = page_of_events(0)
    tracemalloc.start()
    held = [parse_feedback(post.replace(b"bench-0", f"b{n:07d}".encode()), time.time()) for n in range(2000)]
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert all(isinstance(e, FeedbackEvent) for page in held for e in page)
    return size / (2000 * EVENTS_PER_POST)


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="fashionrec-bench-feedback-") as tmp:
        root = Path(tmp)
        synth_catalog(root / "catalog", items_per_type=20, n_types=6, seed=3)
        stages = run_stages(root / "catalog", root / "stages", TrainConfig(epochs=1, batch_size=32))
        with serve_locally(stages.deployment, root / "serve", event_log=root / "events") as (_, transformer):
            feedback_url = f"{transformer.url}{feedback_path()}"
            infer_url = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"
            posts = hammer(feedback_url, [page_of_events(n) for n in range(500)], 202)
            items = sorted(int(p.stem) for p in (root / "catalog" / "images").glob("*.jpg"))[:50]
            queries = hammer(infer_url, [json.dumps(item_request([i], 10)).encode() for i in items], 200)
    per_event = buffer_bytes()
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "concurrency": CONCURRENCY,
        "seconds": SECONDS,
        "feedback_posts_per_s": posts / SECONDS,
        "feedback_events_per_s": posts * EVENTS_PER_POST / SECONDS,
        "item_queries_per_s": queries / SECONDS,
        "posts_per_item_query": posts / queries,
        "buffer_bytes_per_event": per_event,
        "buffer_capacity_events": EVENT_BUFFER,
        "buffer_bound_mib": per_event * EVENT_BUFFER / 2**20,
    }
    table = Table(title=f"feedback collector vs item queries, one transformer, {CONCURRENCY} clients, {os.cpu_count()} cores")
    for column in ("path", "requests/s", "events/s", "ratio"):
        table.add_column(column, justify="right")
    table.add_row("item query (baseline)", f"{queries / SECONDS:.0f}", "", "1.00")
    table.add_row(
        "feedback post (11 events)",
        f"{posts / SECONDS:.0f}",
        f"{posts * EVENTS_PER_POST / SECONDS:.0f}",
        f"{posts / queries:.2f}",
    )
    console.print(table)
    console.print(f"buffer: {per_event:.0f} B per event, {EVENT_BUFFER} events at most: {result['buffer_bound_mib']:.0f} MiB")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feedback.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
