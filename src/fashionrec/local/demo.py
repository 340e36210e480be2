"""`make demo`: generate a catalogue, run the pipeline, serve it, query it, stop."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fashionrec.config import PIPELINE_LOG_FILE
from fashionrec.console import console, print_hits
from fashionrec.data.catalog import IMAGES_DIR
from fashionrec.params import TrainConfig


class DemoFailure(RuntimeError):
    pass


def run_demo(workdir: Path, items_per_type: int = 40, epochs: int = 8, queries: int = 5) -> None:
    from fashionrec.data.synth import synth_catalog
    from fashionrec.local.deployment import catalog_changes_dir, production_deployment
    from fashionrec.local.pipeline_runner import run_local
    from fashionrec.local.processes import serve_locally
    from fashionrec.serving.client import image_request, infer, item_request, parse_hits
    from fashionrec.training.registry import MlflowRegistry, default_registry_uri

    started = time.perf_counter()
    if workdir.exists():
        shutil.rmtree(workdir)
    catalog = workdir / "catalog"
    console.rule("1/4 generate a catalogue")
    table = synth_catalog(catalog, items_per_type=items_per_type)
    console.print(f"{len(table)} items, {table['articleType'].nunique()} article types in {catalog}")
    console.rule("2/4 training pipeline (kfp.local)")
    log = workdir / PIPELINE_LOG_FILE
    console.print(f"every step's full log: {log}")
    run = run_local(catalog, workdir, TrainConfig(epochs=epochs), log_file=log)
    if not run.promoted:
        raise DemoFailure(f"the pipeline did not promote its model (gate passed: {run.gate_passed}); see {log}")
    production = MlflowRegistry(default_registry_uri(workdir.resolve())).production()
    if production is not None:
        metrics = production.metrics
        console.print(
            f"model [bold]{production.model_version}[/bold]: precision@5 {metrics.get('precision_at_5', float('nan')):.3f}, "
            f"nDCG@10 {metrics.get('ndcg_at_10', float('nan')):.3f} on held-out items; production in the registry "
            f"(MLflow version {production.version}; `fashionrec model list --workdir {workdir}`)"
        )
    console.rule("3/4 serve: TorchServe + FAISS transformer on loopback")
    console.print(f"released under {workdir / 'releases'}; a second `fashionrec pipeline run` rolls out with a canary")
    with serve_locally(production_deployment(workdir), workdir / "serve", catalog_changes=catalog_changes_dir(workdir)) as (
        _,
        transformer,
    ):
        console.rule("4/4 query")
        picks = table.groupby("articleType").head(1).head(queries)
        images = [(catalog / IMAGES_DIR / f"{i}.jpg").read_bytes() for i in picks["id"]]
        response = infer(transformer.url, image_request(images, top_k=5))
        failures = []
        for (_, row), hits in zip(picks.iterrows(), parse_hits(response), strict=True):
            print_hits(f"more like item {row['id']} ({row['articleType']}, {row['baseColour']})", hits)
            if not hits or hits[0].item_id != int(row["id"]):
                failures.append(row["id"])
        by_item = parse_hits(infer(transformer.url, item_request([int(picks["id"].iloc[0])], top_k=5)))[0]
        print_hits(f"more like item {picks['id'].iloc[0]} (by id, from Feast)", by_item)
    if failures:
        raise DemoFailure(f"items {failures} did not come back first for their own image")
    console.print(f"[green]demo finished in {time.perf_counter() - started:.0f}s[/green]; servers stopped.")
