"""Serving latency and throughput on this machine, every path measured in the same run so that ratios are meaningful.

    python benchmarks/bench_serving.py [--requests 200] [--concurrent-requests 400]

Side by side: the exported encoder in-process (baseline; also batched, the raw torch throughput), each predictor
runtime direct (TorchServe v2 REST, KServe-hosted encoder v2 REST), and the transformer end to end on each (REST,
and gRPC v2 to the KServe encoder). Sequential (one image per request) and at concurrency 8. The transformer hop is
the median of paired differences (transformer request, then predictor-direct request, interleaved), so drift on a
noisy machine cancels out. Prints a table and writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import platform
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import torch
from rich.console import Console
from rich.table import Table

from fashionrec.config import MODEL_NAME, predictor_model_name
from fashionrec.data.synth import synth_catalog
from fashionrec.imaging import load_batch
from fashionrec.local.processes import serve_locally
from fashionrec.local.stages import run_stages
from fashionrec.params import TrainConfig
from fashionrec.serving.client import image_request, item_request
from fashionrec.serving.encoder_service import EncoderService

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = 8
SETUPS = (("torchserve", "v2"), ("kserve", "v2"), ("kserve", "grpc-v2"))


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
    return summarise([timed(functools.partial(call, i)) for i in range(requests)])


def poster(client: httpx.Client, url: str, bodies: list[dict[str, object]]) -> Callable[[int], object]:
    return lambda i: client.post(url, json=bodies[i % len(bodies)]).raise_for_status()


def at_concurrency(url: str, bodies: list[dict[str, object]], requests: int) -> dict[str, float]:
    """CONCURRENCY clients, each on its own keep-alive connection, `requests` in all."""
    clients = [httpx.Client(timeout=60) for _ in range(CONCURRENCY)]

    def worker(n: int) -> list[float]:
        post = poster(clients[n], url, bodies)
        return [timed(functools.partial(post, i)) for i in range(n, requests, CONCURRENCY)]

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda n: clients[n].post(url, json=bodies[0]), range(CONCURRENCY)))  # warm every connection
        started = time.perf_counter()
        timings = [t for chunk in pool.map(worker, range(CONCURRENCY)) for t in chunk]
        wall = time.perf_counter() - started
    for client in clients:
        client.close()
    return summarise(timings, wall)


def paired_hop(client: httpx.Client, transformer: str, direct: str, end_to_end_body: dict[str, object],
               direct_body: dict[str, object], requests: int) -> float:  # fmt: skip
    differences = []
    for _ in range(requests):
        through = timed(lambda: client.post(transformer, json=end_to_end_body).raise_for_status())
        alone = timed(lambda: client.post(direct, json=direct_body).raise_for_status())
        differences.append(through - alone)
    return statistics.median(differences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrent-requests", type=int, default=400)
    parser.add_argument("--items-per-type", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same one thread that each serving process gets (OMP_NUM_THREADS=1)
    console = Console()
    results: dict[str, dict[str, float]] = {}
    hops: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        table = synth_catalog(root / "catalog", items_per_type=args.items_per_type)
        outputs = run_stages(root / "catalog", root / "stages", TrainConfig(epochs=1))
        images = [(root / "catalog" / "images" / f"{i}.jpg").read_bytes() for i in table["id"][:50]]
        bodies = [image_request([image]) for image in images]
        direct_bodies = [{"inputs": b["inputs"]} for b in bodies]
        ids = [int(i) for i in table["id"][:50]]
        with zipfile.ZipFile(outputs.model_store / "model-store" / f"{MODEL_NAME}.mar") as mar:
            mar.extractall(root / "mar")
        service = EncoderService.load(root / "mar")
        results["encoder in-process, 1 image"] = sequential(
            lambda i: service.embed(load_batch([images[i % 50]], service.image_size)), args.requests
        )
        batch = [images[i % 50] for i in range(CONCURRENCY)]
        batched = sequential(
            lambda i: service.embed(load_batch(batch, service.image_size)), max(20, args.requests // CONCURRENCY)
        )
        batched["requests_per_s"] *= CONCURRENCY  # images/s of raw batched torch: the throughput ceiling
        results[f"encoder in-process, batch {CONCURRENCY} (raw torch)"] = batched
        for runtime, protocol in SETUPS:
            with (
                serve_locally(outputs.deployment, root / f"serve-{runtime}-{protocol}", runtime=runtime, protocol=protocol) as (
                    predictor,
                    transformer,
                ),
                httpx.Client(timeout=60) as client,
            ):
                direct = f"{predictor.inference_url}/v2/models/{predictor_model_name(outputs.deployment.model_version)}/infer"
                end_to_end = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"
                name = "TorchServe" if runtime == "torchserve" else "KServe encoder"
                if protocol == "v2":
                    results[f"{name} direct"] = sequential(poster(client, direct, direct_bodies), args.requests)
                    results[f"{name} direct, concurrency {CONCURRENCY}"] = at_concurrency(
                        direct, direct_bodies, args.concurrent_requests
                    )
                label = f"transformer -> {name} ({protocol})"
                results[label] = sequential(poster(client, end_to_end, bodies), args.requests)
                results[f"{label}, concurrency {CONCURRENCY}"] = at_concurrency(end_to_end, bodies, args.concurrent_requests)
                hops[label] = paired_hop(client, end_to_end, direct, bodies[0], direct_bodies[0], args.requests)
                if runtime == "torchserve":
                    results["transformer, item_id query (Feast + FAISS)"] = sequential(
                        poster(client, end_to_end, [item_request([i]) for i in ids]),
                        args.requests,
                    )
    baseline = results["encoder in-process, 1 image"]["p50_ms"]
    ceiling = results[f"encoder in-process, batch {CONCURRENCY} (raw torch)"]["requests_per_s"]
    report = Table(title=f"serving, 1 image/request, {os.cpu_count()} CPUs, 1 torch thread per process ({platform.node()})")
    for column in ("path", "p50 ms", "p99 ms", "req/s", "p50 / in-process", "req/s / raw batched"):
        report.add_column(column)
    for name, r in results.items():
        report.add_row(
            name,
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['requests_per_s']:.0f}",
            f"{r['p50_ms'] / baseline:.2f}x",
            f"{r['requests_per_s'] / ceiling:.2f}" if "concurrency" in name else "",
        )
    console.print(report)
    for label, hop in hops.items():
        console.print(f"hop of {label}: {hop:.2f} ms p50 (paired; FAISS + Feast included; target < 2 ms)")
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "requests": args.requests,
        "concurrency": CONCURRENCY,
        "catalogue_items": len(table),
        "results": results,
        "transformer_hop_p50_ms": hops,
        "ratio_to_in_process_p50": {k: v["p50_ms"] / baseline for k, v in results.items()},
        "concurrent_throughput_vs_raw_batched": {
            k: v["requests_per_s"] / ceiling for k, v in results.items() if "concurrency" in k
        },
    }
    (RESULTS / "serving.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
