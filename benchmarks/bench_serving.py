"""Serving latency and throughput on this machine, every path measured in the same run so that ratios are meaningful.

    python benchmarks/bench_serving.py --catalog work/fashion-15k --copies 2   # 45,000 products from 15,000 real photos
    python benchmarks/bench_serving.py                                         # 520 generated products

(``../shared/data/merge.sh work/fashion-15k`` joins the two shared samples into work/fashion-15k.)

The catalogue: with ``--catalog`` a real one (Kaggle layout), grown to a real catalogue's size by ``--copies``
photographed-again variants of every product (``fashionrec.data.synth.augmented_catalog``: new ids, same labels),
then the whole training path (validate, train ``--epochs``, embed every photo, Feast, calibrated index) as the
pipeline runs it. Queries are the catalogue's own real photos. Without it, a small generated catalogue.

Side by side: the exported encoder in-process (baseline; also batched, the raw torch throughput), each predictor
runtime direct (TorchServe v2 REST, KServe-hosted encoder v2 REST), and the transformer end to end on each (REST,
and gRPC v2 to the KServe encoder), plus item_id queries. Sequential (one image per request) and at concurrency 8.
The transformer hop is the median of paired differences (transformer request, then predictor-direct request,
interleaved), so drift on a noisy machine cancels out. Where the time goes inside the transformer comes from its
own Prometheus histograms (mean per request over each sequential phase, read from /metrics before and after).
The sequential REST paths are then measured once more with the transformer and the client on one core and the
predictor on the other (CPU affinity of every thread), as separate pods would run: on this 2-core VM the encoder's
forward pass otherwise takes the core the transformer needs right after it. The client is Python's http.client on keep-alive connections with pre-encoded bodies: httpx costs ~1 ms of
client CPU per request, which would be counted as serving time. Prints tables and writes
benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import platform
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import torch
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from fashionrec.config import MODEL_NAME, predictor_model_name
from fashionrec.data.synth import augmented_catalog, synth_catalog
from fashionrec.imaging import load_batch
from fashionrec.local.stages import run_stages
from fashionrec.params import TrainConfig
from fashionrec.serving.client import image_request, item_request
from fashionrec.serving.encoder_service import EncoderService
from fashionrec.serving.processes import serve_locally

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = 8
QUERY_PHOTOS = 50
SETUPS = (("torchserve", "v2"), ("kserve", "v2"), ("kserve", "grpc-v2"))
# The transformer's histograms (fashionrec.serving.metrics, and KServe's own preprocess one), by stage of a request.
STAGES = {
    "parse + validate": "request_preprocess_seconds",
    "predictor": "fashionrec_predictor_seconds",
    "FAISS": "fashionrec_faiss_seconds",
    "Feast": "fashionrec_feast_seconds",
    "encode answer": "fashionrec_response_encode_seconds",
}
WHOLE_REQUEST = "fashionrec_request_seconds"


class Poster:
    """POSTs pre-encoded JSON bodies on one keep-alive connection (http.client: little client CPU per request)."""

    def __init__(self, url: str, bodies: list[bytes], headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        self.path, self.bodies = parts.path, bodies
        self.headers = {"Content-Type": "application/json", **(headers or {})}  # TorchServe's key, when local

    def __call__(self, i: int) -> None:
        self.connection.request("POST", self.path, self.bodies[i % len(self.bodies)], self.headers)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.path} answered {response.status}: {body[:300]!r}")

    def close(self) -> None:
        self.connection.close()


def encoded(bodies: list[dict[str, object]]) -> list[bytes]:
    return [json.dumps(body).encode() for body in bodies]


def summarise(timings_ms: list[float], wall_s: float | None = None) -> dict[str, float]:
    timings_ms = sorted(timings_ms)
    return {
        "p50_ms": statistics.median(timings_ms),
        "p99_ms": timings_ms[min(len(timings_ms) - 1, int(len(timings_ms) * 0.99))],
        "requests_per_s": len(timings_ms) / wall_s if wall_s else 1000 / statistics.fmean(timings_ms),
    }


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def sequential(call: Callable[[int], object], requests: int, warmup: int = 10) -> dict[str, float]:
    for i in range(warmup):
        call(i)
    return summarise([timed(lambda i=i: call(i)) for i in range(requests)])  # type: ignore[misc]


def at_concurrency(url: str, bodies: list[bytes], requests: int, headers: dict[str, str] | None = None) -> dict[str, float]:
    """CONCURRENCY clients, each on its own keep-alive connection, `requests` in all."""
    posters = [Poster(url, bodies, headers) for _ in range(CONCURRENCY)]

    def worker(n: int) -> list[float]:
        return [timed(lambda i=i: posters[n](i)) for i in range(n, requests, CONCURRENCY)]  # type: ignore[misc]

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda n: posters[n](n), range(CONCURRENCY)))  # warm every connection
        started = time.perf_counter()
        timings = [t for chunk in pool.map(worker, range(CONCURRENCY)) for t in chunk]
        wall = time.perf_counter() - started
    for poster in posters:
        poster.close()
    return summarise(timings, wall)


def paired_hop(through: Poster, alone: Poster, requests: int) -> float:
    differences = [timed(lambda i=i: through(i)) - timed(lambda i=i: alone(i)) for i in range(requests)]  # type: ignore[misc]
    return statistics.median(differences)


def histogram_totals(metrics_url: str) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) of every histogram on the transformer's /metrics, labels summed over."""
    parts = urlsplit(metrics_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    connection.request("GET", parts.path)
    text = connection.getresponse().read().decode()
    connection.close()
    totals: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        seconds = sum(s.value for s in family.samples if s.name.endswith("_sum"))
        count = sum(s.value for s in family.samples if s.name.endswith("_count"))
        totals[family.name] = (seconds, count)
    return totals


def breakdown(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], requests: int) -> dict[str, float]:
    """Mean milliseconds per request of each stage between two scrapes (a stage a request skips counts 0)."""

    def per_request(name: str) -> float:
        seconds = after.get(name, (0.0, 0.0))[0] - before.get(name, (0.0, 0.0))[0]
        return seconds * 1000 / requests

    stages = {stage: per_request(name) for stage, name in STAGES.items()}
    whole = per_request(WHOLE_REQUEST)
    stages["HTTP, JSON, hand-offs"] = whole - sum(stages.values())
    stages["whole request (server)"] = whole
    return stages


def pin(group: int, cpus: set[int]) -> None:
    """Every thread of every process in process group ``group`` (a server and its workers) onto ``cpus``."""
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) != group:
                continue
            for thread in process.threads():
                os.sched_setaffinity(thread.id, cpus)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue  # a worker that exited meanwhile


@contextlib.contextmanager
def separate_cores(predictor_group: int, transformer_group: int) -> Iterator[None]:
    """The transformer and this client on CPU 0, the predictor on CPU 1, as if each had its own pod: on a shared
    2-core VM the encoder's forward pass otherwise competes with the transformer's work for a core."""
    everything = set(range(os.cpu_count() or 1))
    pin(predictor_group, {1})
    pin(transformer_group, {0})
    os.sched_setaffinity(0, {0})
    try:
        yield
    finally:
        pin(predictor_group, everything)
        pin(transformer_group, everything)
        os.sched_setaffinity(0, everything)


def build_catalogue(args: argparse.Namespace, root: Path) -> list[int]:
    """Write the catalogue under root/catalog; returns the ids of the products whose photos are the queries."""
    if args.catalog is None:
        table = synth_catalog(root / "catalog", items_per_type=args.items_per_type)
    else:
        table = augmented_catalog(args.catalog, root / "catalog", args.copies)
    return [int(i) for i in table["id"][:QUERY_PHOTOS]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, help="a real catalogue (styles.csv + images/); default: generated")
    parser.add_argument("--copies", type=int, default=0, help="photographed-again variants per product of --catalog")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (quality does not matter here)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrent-requests", type=int, default=400)
    parser.add_argument("--items-per-type", type=int, default=40, help="size of the generated catalogue")
    args = parser.parse_args()
    torch.set_num_threads(2)  # the raw ceiling uses the predictor's two CPUs (config.PREDICTOR_CPUS)
    console = Console(width=150)
    results: dict[str, dict[str, float]] = {}
    hops: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        ids = build_catalogue(args, root)
        outputs = run_stages(root / "catalog", root / "stages", TrainConfig(epochs=args.epochs))
        index_meta = json.loads((outputs.index_dir / "index.json").read_text())
        console.print(
            f"catalogue of {index_meta['count']:,} items ready in {time.perf_counter() - started:.0f} s: "
            f"index {index_meta['index_type']} {index_meta['index_params']}"
        )
        images = [(root / "catalog" / "images" / f"{i}.jpg").read_bytes() for i in ids]
        bodies = encoded([image_request([image]) for image in images])
        direct_bodies = encoded([{"inputs": image_request([image])["inputs"]} for image in images])
        item_bodies = encoded([item_request([i]) for i in ids])
        with zipfile.ZipFile(outputs.model_store / "model-store" / f"{MODEL_NAME}.mar") as mar:
            mar.extractall(root / "mar")
        service = EncoderService.load(root / "mar")
        results["encoder in-process, 1 image"] = sequential(
            lambda i: service.embed(load_batch([images[i % len(images)]], service.image_size)), args.requests
        )
        batch = [images[i % len(images)] for i in range(CONCURRENCY)]
        batched = sequential(
            lambda i: service.embed(load_batch(batch, service.image_size)), max(20, args.requests // CONCURRENCY)
        )
        batched["requests_per_s"] *= CONCURRENCY  # images/s of raw batched torch: the throughput ceiling
        results[f"encoder in-process, batch {CONCURRENCY} (raw torch)"] = batched
        torch.set_num_threads(1)  # for comparison: what one single-threaded TorchServe worker has
        single = sequential(lambda i: service.embed(load_batch(batch, service.image_size)), max(20, args.requests // CONCURRENCY))
        single["requests_per_s"] *= CONCURRENCY
        results[f"encoder in-process, batch {CONCURRENCY}, 1 torch thread"] = single
        torch.set_num_threads(2)
        for runtime, protocol in SETUPS:
            with serve_locally(outputs.deployment, root / f"serve-{runtime}-{protocol}", runtime=runtime, protocol=protocol) as (
                predictor,
                transformer,
            ):
                direct = f"{predictor.inference_url}/v2/models/{predictor_model_name(outputs.deployment.model_version)}/infer"
                end_to_end = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"
                metrics = f"{transformer.url}/metrics"
                name = "TorchServe" if runtime == "torchserve" else "KServe encoder"
                # local TorchServe takes only calls with its inference key; the KServe-hosted encoder needs none
                keys = predictor.inference_headers() if hasattr(predictor, "inference_headers") else {}
                alone, through = Poster(direct, direct_bodies, keys), Poster(end_to_end, bodies)
                if protocol == "v2":
                    results[f"{name} direct"] = sequential(alone, args.requests)
                    results[f"{name} direct, concurrency {CONCURRENCY}"] = at_concurrency(
                        direct, direct_bodies, args.concurrent_requests, keys
                    )
                label = f"transformer -> {name} ({protocol})"
                before = histogram_totals(metrics)
                results[label] = sequential(through, args.requests, warmup=0)
                stages[label] = breakdown(before, histogram_totals(metrics), args.requests)
                results[f"{label}, concurrency {CONCURRENCY}"] = at_concurrency(end_to_end, bodies, args.concurrent_requests)
                hops[label] = paired_hop(through, alone, args.requests)
                items = Poster(end_to_end, item_bodies)
                if runtime == "torchserve":
                    sequential(items, 20)
                    before = histogram_totals(metrics)
                    results["transformer, item_id query"] = sequential(items, args.requests, warmup=0)
                    stages["transformer, item_id query"] = breakdown(before, histogram_totals(metrics), args.requests)
                if protocol == "v2" and (os.cpu_count() or 1) >= 2:
                    groups = (predictor.process.process.pid, transformer.process.process.pid)  # type: ignore[union-attr]
                    with separate_cores(*groups):
                        own = f"{label}, own cores"
                        results[f"{name} direct, own core"] = sequential(alone, args.requests)
                        before = histogram_totals(metrics)
                        results[own] = sequential(through, args.requests, warmup=0)
                        stages[own] = breakdown(before, histogram_totals(metrics), args.requests)
                        hops[own] = paired_hop(through, alone, args.requests)
                        if runtime == "torchserve":
                            before = histogram_totals(metrics)
                            results["transformer, item_id query, own core"] = sequential(items, args.requests, warmup=0)
                            stages["transformer, item_id query, own core"] = breakdown(
                                before, histogram_totals(metrics), args.requests
                            )
                items.close()
                alone.close()
                through.close()
    report(console, args, index_meta, results, hops, stages)


def report(console: Console, args: argparse.Namespace, index_meta: dict[str, object], results: dict[str, dict[str, float]],
           hops: dict[str, float], stages: dict[str, dict[str, float]]) -> None:  # fmt: skip
    baseline = results["encoder in-process, 1 image"]["p50_ms"]
    ceiling = results[f"encoder in-process, batch {CONCURRENCY} (raw torch)"]["requests_per_s"]
    catalogue = f"{index_meta['count']:,} items" + (
        f" ({args.catalog.name} x{args.copies + 1})" if args.catalog else " (generated)"
    )
    table = Table(title=f"serving, 1 image/request, {catalogue}, {os.cpu_count()} CPUs ({platform.node()})")
    for column in ("path", "p50 ms", "p99 ms", "req/s", "p50 / in-process", "req/s / raw batched"):
        table.add_column(column, no_wrap=True)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['requests_per_s']:.0f}",
            f"{r['p50_ms'] / baseline:.2f}x",
            f"{r['requests_per_s'] / ceiling:.2f}" if "concurrency" in name else "",
        )
    console.print(table)
    hop_table = Table(title="inside the transformer: mean ms per request from its Prometheus histograms; paired hop p50")
    columns = [*STAGES, "HTTP, JSON, hand-offs", "whole request (server)"]
    for column in ("path", *columns, "hop p50 (paired)"):
        hop_table.add_column(column)
    for label, split in stages.items():
        hop = hops.get(label)
        hop_table.add_row(label, *(f"{split[c]:.2f}" for c in columns), f"{hop:.2f}" if hop is not None else "")
    console.print(hop_table)
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "catalogue": catalogue,
        "catalogue_items": index_meta["count"],
        "index": {"type": index_meta["index_type"], "params": index_meta["index_params"]},
        "requests": args.requests,
        "concurrency": CONCURRENCY,
        "results": results,
        "transformer_hop_p50_ms": hops,
        "transformer_stages_mean_ms": stages,
        "ratio_to_in_process_p50": {k: v["p50_ms"] / baseline for k, v in results.items()},
        "concurrent_throughput_vs_raw_batched": {
            k: v["requests_per_s"] / ceiling for k, v in results.items() if "concurrency" in k
        },
    }
    (RESULTS / "serving.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
