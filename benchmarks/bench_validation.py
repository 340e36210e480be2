"""Validation speed at Kaggle scale (44,000 rows of 60x80 JPEGs), measured in one run.

    python benchmarks/bench_validation.py [--rows 44000]

Reports image-facts throughput with one process (the baseline) and with one process per core, the Great
Expectations validation time for all rows, and the whole validate_catalog call. Writes
benchmarks/results/validation.json. Targets (issue 4): >= 1,500 images/s on 2 cores; GX run < 2 s for 44,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from fashionrec.data.catalog import STYLES_FILE, image_path, write_styles
from fashionrec.data.imagefacts import compute_facts
from fashionrec.data.synth import ARTICLE_TYPES, synth_catalog
from fashionrec.data.validation.checks import ValidationSettings, build_checks, run_expectations
from fashionrec.data.validation.quarantine import validate_catalog

RESULTS = Path(__file__).resolve().parent / "results"


def replicate(table: pd.DataFrame, catalog: Path, rows: int) -> pd.DataFrame:
    """Grow the catalogue to ``rows`` items by copying generated products (same label) under new ids."""
    copies = []
    next_id = int(table["id"].astype(int).max()) + 1
    for n in range(rows - len(table)):
        source = table.iloc[n % len(table)]
        shutil.copyfile(image_path(catalog, source["id"]), image_path(catalog, next_id))
        copies.append({**source.to_dict(), "id": str(next_id)})
        next_id += 1
    grown = pd.concat([table, pd.DataFrame(copies)], ignore_index=True)
    write_styles(grown, catalog / STYLES_FILE)
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=44_000)
    parser.add_argument("--baseline-rows", type=int, default=4_000, help="rows timed with a single process")
    parser.add_argument(
        "--unique", type=int, default=4_000, help="distinct generated images; the rest are copies (generation is slow)"
    )
    args = parser.parse_args()
    console = Console()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        catalog = Path(tmp) / "catalog"
        started = time.perf_counter()
        table = replicate(
            synth_catalog(catalog, items_per_type=-(-args.unique // len(ARTICLE_TYPES)), seed=0), catalog, args.rows
        )
        console.print(f"generated {len(table)} items in {time.perf_counter() - started:.0f}s")
        paths = [image_path(catalog, i) for i in table["id"]]

        started = time.perf_counter()
        compute_facts(paths[: args.baseline_rows], workers=1)
        serial = args.baseline_rows / (time.perf_counter() - started)

        started = time.perf_counter()
        facts = compute_facts(paths, workers=cores)
        parallel = len(paths) / (time.perf_counter() - started)

        frame = table.assign(**{c: facts[c].to_numpy() for c in facts.columns})
        frame["format_matches_name"] = True
        frame["duplicate_conflict"] = False
        frame["class_count"] = 100
        frame["line_number"] = range(2, len(frame) + 2)
        run_expectations(frame.head(100), build_checks(ValidationSettings()))  # GX import and first-run costs
        started = time.perf_counter()
        run_expectations(frame, build_checks(ValidationSettings()))
        gx_seconds = time.perf_counter() - started

        started = time.perf_counter()
        result = validate_catalog(catalog)
        whole = time.perf_counter() - started

    report = Table(title=f"validation, {len(table)} rows of 60x80 JPEG ({cores} cores)")
    for column in ("measure", "value", "target"):
        report.add_column(column)
    report.add_row("image facts, 1 process", f"{serial:,.0f} images/s", "baseline")
    report.add_row(f"image facts, {cores} processes", f"{parallel:,.0f} images/s ({parallel / serial:.2f}x)", ">= 1,500 images/s")
    report.add_row("Great Expectations suite", f"{gx_seconds:.2f} s", "< 2 s")
    report.add_row("validate_catalog end to end", f"{whole:.1f} s ({len(table) / whole:,.0f} rows/s)", "")
    console.print(report)
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "machine": {"cpus": cores, "platform": platform.platform(), "python": platform.python_version()},
        "rows": len(table),
        "facts_images_per_second_serial": serial,
        "facts_images_per_second_parallel": parallel,
        "parallel_speedup": parallel / serial,
        "gx_seconds": gx_seconds,
        "validate_catalog_seconds": whole,
        "rows_valid": len(result.valid),
    }
    (RESULTS / "validation.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
