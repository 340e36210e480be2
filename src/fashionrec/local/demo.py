"""`make demo`: generate a catalogue, run the pipeline, serve it, query it, stop."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fashionrec.catalog.update import add_items, remove_items, stage_additions
from fashionrec.console import console
from fashionrec.data.catalog import IMAGES_DIR, STYLES_FILE, read_styles, write_styles
from fashionrec.data.changes import ChangeLog
from fashionrec.data.synth import synth_catalog
from fashionrec.deploy.local_target import LocalServing
from fashionrec.local.deployment import production_deployment
from fashionrec.local.monitoring_loop import run_loop
from fashionrec.local.pipeline_runner import run_local
from fashionrec.local.shopping import run_shoppers
from fashionrec.local.tables import print_hits
from fashionrec.params import TrainConfig
from fashionrec.serving.client import image_request, infer, item_request, parse_hits
from fashionrec.serving.processes import LIVE_DIR, LocalTorchServe, serve_locally
from fashionrec.training.registry import MlflowRegistry, default_registry_uri
from fashionrec.workdir import WorkDir


class DemoFailure(RuntimeError):
    pass


def run_demo(
    workdir: Path, items_per_type: int = 40, epochs: int = 8, queries: int = 5, monitoring: bool = False, shoppers: bool = False
) -> None:
    """Steps 1-5; with ``monitoring`` another: drift rises on a shifted query stream, then a retraining run; with
    ``shoppers`` another: simulated shoppers' engagement, an experiment against a weak model, an engagement drop."""

    started = time.perf_counter()
    steps = 5 + monitoring + shoppers
    if workdir.exists():
        shutil.rmtree(workdir)
    catalog = WorkDir(workdir).catalog
    console.rule(f"1/{steps} generate a catalogue")
    table = synth_catalog(catalog, items_per_type=items_per_type)
    console.print(f"{len(table)} items, {table['articleType'].nunique()} article types in {catalog}")
    console.rule(f"2/{steps} training pipeline (kfp.local)")
    log = WorkDir(workdir).pipeline_log
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
    console.rule(f"3/{steps} serve: TorchServe + FAISS transformer on loopback")
    console.print(f"released under {WorkDir(workdir).releases}; a second `fashionrec pipeline run` rolls out with a canary")
    requests = WorkDir(workdir).request_log
    with serve_locally(
        production_deployment(workdir),
        WorkDir(workdir).serve,
        catalog_changes=WorkDir(workdir).catalog_changes,
        request_log=requests,
        event_log=WorkDir(workdir).event_log,
        monitor_seconds=1.0 if monitoring else None,  # a demo's windows fill in seconds
    ) as (predictor, transformer):
        console.rule(f"4/{steps} query")
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
        console.rule(f"5/{steps} a new product, live: no retraining, no restart")
        assert isinstance(predictor, LocalTorchServe)
        serving = LocalServing.of(predictor, transformer, WorkDir(workdir).serve / LIVE_DIR)
        if not add_and_remove_live(serving, catalog, workdir, int(picks["id"].iloc[0]), int(table["id"].astype(int).max()) + 1):
            failures.append("the added product")
        if monitoring:
            console.rule(f"6/{steps} monitoring: drift on a shifted query stream, then retraining")
            outcome = run_loop(serving, catalog, workdir, requests, TrainConfig(epochs=epochs + 4, seed=1))
            if outcome.calm_detected or not outcome.shifted_detected or not outcome.decision.retrain:
                failures.append("the drift check (calm stream flagged, or shifted stream missed)")
        if shoppers:
            console.rule(f"{steps}/{steps} shoppers: engagement per model version, an experiment, an engagement drop")
            shopped = run_shoppers(serving, catalog, workdir, TrainConfig(epochs=epochs, seed=2))
            if shopped.experiment.winner != shopped.experiment.baseline_version:
                failures.append("the experiment (the weak model was not found worse)")
            if "engagement" not in shopped.drop.signals or not shopped.second_tick_held:
                failures.append("the engagement drop (not detected, or a second retraining not held)")
    if failures:
        raise DemoFailure(f"these did not behave: {failures}")
    console.print(f"[green]demo finished in {time.perf_counter() - started:.0f}s[/green]; servers stopped.")
    console.print(f"see the recommendations in a browser: fashionrec serve --workdir {workdir}   (it prints the gallery's URL)")


def add_and_remove_live(serving: LocalServing, catalog: Path, workdir: Path, source_id: int, new_id: int) -> bool:
    """Add a product (a mirrored photo of ``source_id`` under ``new_id``) through `fashionrec catalog add`'s code,
    show it recommended within seconds, remove it again; whether it came back first for its own photo."""
    from PIL import Image, ImageOps

    new = WorkDir(workdir).new_product
    (new / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    ImageOps.mirror(Image.open(catalog / IMAGES_DIR / f"{source_id}.jpg")).save(new / IMAGES_DIR / f"{new_id}.jpg", quality=95)
    rows = read_styles(catalog / STYLES_FILE).rows
    row = rows[rows["id"] == str(source_id)].assign(id=str(new_id))
    write_styles(row, new / STYLES_FILE)
    changes = ChangeLog(str(WorkDir(workdir).catalog_changes))
    predictor = serving.predictor()
    additions = stage_additions(new / IMAGES_DIR, new / STYLES_FILE, new / "staged")
    added = add_items(additions, serving.served(), predictor, changes, catalog, new / "report")
    versions = ", ".join(added.model_versions)
    console.print(f"`fashionrec catalog add`: product {new_id} validated, encoded by model {versions}, written to Feast")
    photo = image_request([(new / IMAGES_DIR / f"{new_id}.jpg").read_bytes()], top_k=3)
    deadline = time.monotonic() + 15
    while (hits := parse_hits(infer(serving.transformer_url, photo))[0]) and hits[0].item_id != new_id:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print_hits(f"more like the new product {new_id}'s photo (the transformer applied the change log)", hits)
    remove_items([new_id], serving.served(), changes, catalog)
    after = parse_hits(infer(serving.transformer_url, photo))[0]
    console.print(f"`fashionrec catalog remove {new_id}`: now first is {after[0].item_id if after else 'nothing'}")
    return bool(hits) and hits[0].item_id == new_id and all(hit.item_id != new_id for hit in after)
