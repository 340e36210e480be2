"""Materialize speed: stock `feast materialize` against fashionrec's writer, into sqlite and into Redis, in one run.

    python benchmarks/bench_materialize.py [--items 44000] [--repeats 3] [--catalog ../shared/data/fashion-sample-12k]

The offline source is an embeddings table of ``--items`` rows x 256-d float32 vectors, written by the embed stage's
writer; its attributes are the real catalogue's (styles.csv of ``--catalog``, cycled) when given, generated ones
otherwise. For each online store (a sqlite file; a real redis-server on a free loopback port) and each engine, a
fresh repo is staged and applied (`feast apply`, not timed), then the materialization of every row of both feature
views is timed: ``FeatureStore.materialize`` over the whole window (what the `feast materialize` CLI calls, without
its ~5 s of start-up) against ``fashionrec.retrieval.feast_store.materialize`` (engine "fashionrec"). The stock run
is once per store (it takes ~25 s); fashionrec's runs ``--repeats`` times (median). Every run is checked by reading
items back through Feast. Prints a table and writes benchmarks/results/materialize.json.
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
import pandas as pd
from rich.console import Console
from rich.table import Table

from fashionrec.config import ATTRIBUTE_COLUMNS, EMBEDDING_DIM
from fashionrec.local.redis import running_redis
from fashionrec.retrieval.embeddings import random_embeddings, read_embeddings, write_embeddings
from fashionrec.retrieval.feast_store import OnlineFeatures, StoreSettings, apply_repo, materialize, stage_repo

RESULTS = Path(__file__).resolve().parent / "results"
MODEL_VERSION = "bench-v1"


def embeddings_table(items: int, catalog: Path | None, out: Path) -> Path:
    attributes = None
    if catalog is not None:
        styles = pd.read_csv(catalog / "styles.csv", on_bad_lines="skip", dtype=str).fillna("")
        attributes = {column: np.resize(styles[column].to_numpy(), items) for column in ATTRIBUTE_COLUMNS}
    table, vectors = random_embeddings(np.arange(1, items + 1), MODEL_VERSION, attributes)
    write_embeddings(table, vectors, out)
    return out


def timed_materialize(embeddings: Path, repo: Path, settings: StoreSettings, engine: str) -> float:
    store = apply_repo(stage_repo(embeddings, repo, settings=settings))
    started = time.perf_counter()
    materialize(store, engine)
    seconds = time.perf_counter() - started
    check(embeddings, repo)
    return seconds


def check(embeddings: Path, repo: Path) -> None:
    table, vectors = read_embeddings(embeddings)
    rows = [0, len(table) // 2, len(table) - 1]
    online = OnlineFeatures(repo)
    found = online.embeddings([int(table["item_id"][r]) for r in rows], MODEL_VERSION)
    for row, vector in zip(rows, found, strict=True):
        if vector is None or not np.array_equal(vector, vectors[row]):
            raise AssertionError(f"{repo}: item {table['item_id'][row]} was not materialized")


def flush_redis(url: str) -> None:
    import redis

    host, port = url.removeprefix("redis://").split(":")
    redis.Redis(host=host, port=int(port)).flushall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=44_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--catalog", type=Path, default=None, help="a catalogue whose styles.csv gives the attributes")
    args = parser.parse_args()
    console = Console()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-materialize-") as tmp:
        root = Path(tmp)
        embeddings = embeddings_table(args.items, args.catalog, root / "item_embeddings.parquet")
        read_embeddings(embeddings)  # pyarrow's one-time start-up, out of every timed run
        with running_redis(root / "redis") as redis_server:
            for store_name, settings in (("sqlite", StoreSettings()), ("redis", StoreSettings(online_store=redis_server.url))):
                runs: dict[str, list[float]] = {"feast": [], "fashionrec": []}
                for engine, repeats in (("feast", 1), ("fashionrec", args.repeats)):
                    for n in range(repeats):
                        if store_name == "redis":
                            flush_redis(redis_server.url)
                        console.print(f"[dim]{store_name}: {engine} materialize, run {n + 1}/{repeats}...[/dim]")
                        runs[engine].append(timed_materialize(embeddings, root / f"{store_name}-{engine}-{n}", settings, engine))
                stock = statistics.median(runs["feast"])
                for engine, seconds in runs.items():
                    median = statistics.median(seconds)
                    results.append(
                        {
                            "store": store_name,
                            "engine": engine,
                            "items": args.items,
                            "seconds": round(median, 3),
                            "runs": [round(s, 3) for s in seconds],
                            "items_per_second": round(args.items / median),
                            "speedup_vs_feast": round(stock / median, 2),
                        }
                    )
    table = Table(title=f"materialize {args.items:,} items x {EMBEDDING_DIM}-d (+ 7 attributes), both feature views")
    for column in ("online store", "engine", "seconds (median)", "items/s", "x stock Feast"):
        table.add_column(column, justify="right" if column[0] in "sixe" and column != "engine" else "left")
    for row in results:
        table.add_row(
            str(row["store"]),
            str(row["engine"]),
            f"{row['seconds']:.2f}",
            f"{row['items_per_second']:,}",
            f"{row['speedup_vs_feast']:.1f}",
        )
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "materialize.json"
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    out.write_text(
        json.dumps({"machine": machine, "catalog": str(args.catalog or "generated"), "results": results}, indent=2) + "\n"
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
