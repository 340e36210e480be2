"""Nearest-neighbour search by index type and catalogue size, measured in one run (exact search is the baseline).

    python benchmarks/bench_index.py [--sizes 20000 200000] [--queries 500]

For each catalogue size, the same generated embeddings (L2-normalised, clustered like a product catalogue, 256-d)
go into the exact index and into the two approximate ones that `fashionrec.retrieval.index.choose_index_spec` picks above
100k items, with the parameters it would store. Reports build time, index size, single-query latency (the
transformer searches one request's batch at a time), throughput for batches of 8, and recall@10 against exact
search on held-out queries. Prints a table and writes benchmarks/results/index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from fashionrec.config import EMBEDDING_DIM
from fashionrec.retrieval.index import ItemIndex, choose_index_spec

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("flat", "hnsw", "ivf")
QUERY_BATCH = 8


def catalogue_embeddings(count: int, queries: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(items, held-out queries): points around one centre per ~100 items; ``noise`` is relative to the centres' spread."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 100), EMBEDDING_DIM))
    offsets = noise * rng.standard_normal((count + queries, EMBEDDING_DIM))
    points = centres[rng.integers(0, len(centres), count + queries)] + offsets
    points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    return points[:count], points[count:]


def search_settings(kind: str, default: dict[str, int]) -> list[dict[str, int]]:
    """The stored default and the settings around it, to show the recall/latency trade of each approximate index."""
    if kind == "hnsw":
        return [{"ef_search": ef} for ef in sorted({32, 64, 128, 256, default["ef_search"]})]
    if kind == "ivf":
        return [
            {"nprobe": probe}
            for probe in sorted({default["nprobe"] // 2 or 1, default["nprobe"], default["nprobe"] * 2, default["nprobe"] * 4})
        ]
    return [{}]


def measure(index: ItemIndex, queries: np.ndarray, truth: np.ndarray | None) -> dict[str, float]:
    single = []
    for query in queries:
        started = time.perf_counter()
        index.search(query[None, :], 10)
        single.append((time.perf_counter() - started) * 1000)
    batches = [queries[i : i + QUERY_BATCH] for i in range(0, len(queries) - QUERY_BATCH + 1, QUERY_BATCH)]
    started = time.perf_counter()
    for batch in batches:
        index.search(batch, 10)
    batched_qps = len(batches) * QUERY_BATCH / (time.perf_counter() - started)
    _, found = index.search(queries, 10)
    recall = 1.0 if truth is None else float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
    single.sort()
    return {
        "p50_ms": statistics.median(single),
        "p99_ms": single[min(len(single) - 1, int(len(single) * 0.99))],
        "queries_per_s_batch8": batched_qps,
        "recall_at_10": recall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--noise", type=float, default=2.0, help="cluster spread; higher is harder for approximate search")
    args = parser.parse_args()
    console = Console(width=150)  # the table is the point; do not let a narrow terminal fold it
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        for size in args.sizes:
            items, queries = catalogue_embeddings(size, args.queries, args.noise)
            item_ids = np.arange(size, dtype=np.int64) * 7 + 1
            truth = None
            for kind in track(KINDS, description=f"{size:,} items", console=console):
                started = time.perf_counter()
                index = ItemIndex.build(item_ids, items, "bench", "bench", kind=kind)
                build_s = time.perf_counter() - started
                index.save(Path(tmp) / f"{kind}-{size}")
                size_mb = sum(f.stat().st_size for f in (Path(tmp) / f"{kind}-{size}").iterdir()) / 2**20
                loaded = ItemIndex.load(Path(tmp) / f"{kind}-{size}")  # served the way it is loaded
                default = dict(loaded.meta.index_params)
                for setting in search_settings(kind, default):
                    loaded.tune(**setting)
                    result = measure(loaded, queries, truth)
                    rows.append(
                        {
                            "items": size,
                            "kind": kind,
                            "default": setting == {k: v for k, v in default.items() if k in setting},
                            "auto_picks": choose_index_spec(size).kind == kind,
                            "params": dict(loaded.meta.index_params),
                            "build_s": build_s,
                            "size_mb": size_mb,
                            **result,
                        }
                    )
                if kind == "flat":
                    truth = loaded.search(queries, 10)[1]
    report = Table(title=f"FAISS search, {EMBEDDING_DIM}-d, top 10, {os.cpu_count()} CPUs ({platform.node()})")
    columns = ("items", "index", "search", "build s", "MB", "p50 ms", "p99 ms", "q/s batch 8", "recall@10", "p50 / exact")
    for column in columns:
        report.add_column(column, no_wrap=True)
    for row in rows:
        exact = next(r for r in rows if r["items"] == row["items"] and r["kind"] == "flat")
        row["p50_ratio_to_exact"] = float(row["p50_ms"]) / float(exact["p50_ms"])  # type: ignore[arg-type]
        search = {k: v for k, v in row["params"].items() if k in ("ef_search", "nprobe")}  # type: ignore[attr-defined]
        report.add_row(
            f"{row['items']:,}",
            f"{row['kind']}{' (auto)' if row['auto_picks'] else ''}",
            " ".join(f"{k}={v}" for k, v in search.items()) + (" (default)" if row["default"] and search else ""),
            f"{row['build_s']:.1f}",
            f"{row['size_mb']:.0f}",
            f"{row['p50_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            f"{row['queries_per_s_batch8']:.0f}",
            f"{row['recall_at_10']:.3f}",
            f"{row['p50_ratio_to_exact']:.2f}x",
        )
    console.print(report)
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "dimension": EMBEDDING_DIM,
        "queries": args.queries,
        "noise": args.noise,
        "rows": rows,
    }
    (RESULTS / "index.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
