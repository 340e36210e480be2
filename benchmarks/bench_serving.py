"""Serving latency on this machine, every path measured in the same run so that ratios are meaningful.

    python benchmarks/bench_serving.py [--requests 200]

Paths: the exported encoder called in-process (baseline), TorchServe's v2 endpoint directly, and the transformer
end to end (image query: predictor hop + FAISS + Feast; item query: Feast + FAISS, no predictor). One image per
request, sequential. Prints a table and writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import base64
import json
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

from fashionrec.client import image_request, item_request
from fashionrec.config import MODEL_NAME
from fashionrec.encoder_service import EncoderService
from fashionrec.imaging import load_batch
from fashionrec.serving import serve_locally
from fashionrec.stages import run_stages
from fashionrec.synth import synth_catalog
from fashionrec.train import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"


def measure(call: Callable[[int], object], requests: int, warmup: int = 10) -> dict[str, float]:
    for i in range(warmup):
        call(i)
    timings = []
    for i in range(requests):
        started = time.perf_counter()
        call(i)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))],
        "mean_ms": statistics.fmean(timings),
        "requests_per_s": 1000 / statistics.fmean(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--items-per-type", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same one thread that a TorchServe worker gets
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        table = synth_catalog(root / "catalog", items_per_type=args.items_per_type)
        outputs = run_stages(root / "catalog", root / "stages", TrainConfig(epochs=1))
        images = [(root / "catalog" / "images" / f"{i}.jpg").read_bytes() for i in table["id"][:50]]
        ids = [int(i) for i in table["id"][:50]]
        with zipfile.ZipFile(outputs.model_store / "model-store" / f"{MODEL_NAME}.mar") as mar:
            mar.extractall(root / "mar")
        service = EncoderService.load(root / "mar")
        results: dict[str, dict[str, float]] = {}
        results["encoder in-process (decode + forward)"] = measure(
            lambda i: service.embed(load_batch([images[i % 50]], service.image_size)), args.requests
        )
        with serve_locally(outputs.deployment, root / "serve") as (predictor, transformer), httpx.Client() as client:
            direct = f"{predictor.inference_url}/v2/models/{MODEL_NAME}/infer"
            end_to_end = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"

            def torchserve(i: int) -> None:
                data = [base64.b64encode(images[i % 50]).decode()]
                body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": data}]}
                client.post(direct, json=body).raise_for_status()

            results["TorchServe direct (v2)"] = measure(torchserve, args.requests)
            results["transformer: image query"] = measure(
                lambda i: client.post(end_to_end, json=image_request([images[i % 50]])).raise_for_status(), args.requests
            )
            results["transformer: item_id query"] = measure(
                lambda i: client.post(end_to_end, json=item_request([ids[i % 50]])).raise_for_status(), args.requests
            )
    baseline = results["encoder in-process (decode + forward)"]["p50_ms"]
    report = Table(
        title=f"serving latency, 1 image/request, sequential, {args.requests} requests ({platform.node()}, {torch.get_num_threads()} torch thread)"
    )
    for column in ("path", "p50 ms", "p99 ms", "req/s", "p50 / in-process"):
        report.add_column(column)
    for name, r in results.items():
        report.add_row(
            name, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['requests_per_s']:.0f}", f"{r['p50_ms'] / baseline:.1f}x"
        )
    console.print(report)
    hop = results["transformer: image query"]["p50_ms"] - results["TorchServe direct (v2)"]["p50_ms"]
    console.print(f"transformer hop (end to end minus predictor direct, FAISS + Feast included): {hop:.2f} ms p50")
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "requests": args.requests,
        "catalogue_items": len(table),
        "results": results,
        "transformer_hop_p50_ms": hop,
        "ratio_to_in_process_p50": {k: v["p50_ms"] / baseline for k, v in results.items()},
    }
    (RESULTS / "serving.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
