"""Time to quality on real photos: P@5 of one long training run, measured every few epochs, against minutes of
training on this machine; the raw weights and their moving average side by side (one run, so the pair is exact).

    ../shared/data/merge.sh work/fashion-15k
    python benchmarks/bench_time_to_quality.py --catalog work/fashion-15k --epochs 42 --every 6 --ema-decay 0.999

Same protocol as bench_quality.py (its validated catalogue, group holdout, dev/test halves by a hash of the group,
label-vote re-ranking as the transformer does it). The schedule is one-cycle over the whole run, so a point in the
middle of the run is at a high learning rate: it is a lower bound on what a run planned to end there reaches (the
README lists those runs too). Minutes are of training alone: the evaluations at the snapshots are not counted.
``--weights`` (a trained model's folder) measures a warm-started retrain. Prints a table and writes
benchmarks/results/time_to_quality.json (runs merged by label).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_quality import dev_half, validated
from rich.console import Console
from rich.table import Table

from fashionrec.data.split import holdout_mask, product_groups
from fashionrec.data.table import decode_images, read_table
from fashionrec.params import SplitKind, TrainConfig
from fashionrec.retrieval.rerank import LabelVote
from fashionrec.training.evaluate import evaluate_vectors
from fashionrec.training.model import Encoder
from fashionrec.training.train import EpochRecord, Trainer, embed_array, load_training_data, pick_device, train

RESULTS = Path(__file__).resolve().parent / "results"


def scores(table: Any, vectors: np.ndarray, queries: np.ndarray, dev: np.ndarray) -> dict[str, float]:
    out = {}
    for rerank_name, rerank in (("", None), ("_reranked", LabelVote())):
        for half, rows in (("dev", queries[dev]), ("test", queries[~dev])):
            evaluation = evaluate_vectors(table, vectors, split=SplitKind.GROUP, rerank=rerank, query_rows=rows, examples=0)
            out[f"{half}{rerank_name}"] = evaluation.metrics["precision_at_5"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, required=True, help="Kaggle-layout catalogue of real photos")
    parser.add_argument("--work", type=Path, default=Path("work/quality"), help="models and caches (bench_quality's)")
    parser.add_argument("--epochs", type=int, default=42, help="the run's epochs (one-cycle schedule over all of them)")
    parser.add_argument("--every", type=int, default=6, help="measure after every this many epochs (and the last)")
    parser.add_argument("--ema-decay", type=float, default=0.999, help="the moving average's decay per step")
    parser.add_argument("--weights", default="none", help="none, or a trained model's folder: a warm start")
    parser.add_argument("--config", default="{}", help="JSON TrainConfig overrides, e.g. a margin")
    parser.add_argument("--label", default="", help="results are stored under this label")
    args = parser.parse_args()
    valid = validated(args.catalog, args.work)
    table = read_table(valid).reset_index(drop=True)
    queries = np.flatnonzero(holdout_mask(table, 0.2, SplitKind.GROUP))
    dev = dev_half(product_groups(table)[queries])
    label = args.label or f"epochs{args.epochs}_ema{args.ema_decay}" + ("_warm" if args.weights != "none" else "")
    config = TrainConfig(
        **{
            "time_budget_minutes": 0,
            **json.loads(args.config),
            "epochs": args.epochs,
            "ema_decay": args.ema_decay,
            "weights": args.weights,
        }
    )
    images = decode_images(table["image"], config.image_size)
    points: list[dict[str, Any]] = []
    measuring = {"seconds": 0.0}

    def vectors_of(encoder: Encoder, device: torch.device) -> np.ndarray:
        was_training = encoder.training
        vectors = embed_array(encoder.eval(), images, device)
        encoder.train(was_training)
        return vectors

    def measure(trainer: Trainer, record: EpochRecord) -> None:
        if record.epoch % args.every and record.epoch != args.epochs:
            return
        started = time.perf_counter()
        averaged, _ = trainer.candidate()
        point: dict[str, Any] = {
            "epoch": record.epoch,
            "train_minutes": (record.seconds - measuring["seconds"]) / 60,
            "holdout_accuracy": record.holdout_accuracy,
            "raw": scores(table, vectors_of(trainer.encoder, trainer.device), queries, dev),
        }
        if trainer.ema is not None:
            point["ema"] = scores(table, vectors_of(averaged, trainer.device), queries, dev)
        points.append(point)
        measuring["seconds"] += time.perf_counter() - started
        shown = point.get("ema", point["raw"])
        print(
            f"measured epoch {record.epoch}: {point['train_minutes']:.1f} min, P@5 test raw {point['raw']['test']:.3f}, "
            f"{'ema' if 'ema' in point else 'raw'} re-ranked {shown['test_reranked']:.3f}",
            flush=True,
        )

    model_dir = args.work / "time_to_quality" / label
    # What the time budget would plan from: its estimate of an epoch here, set against the epochs measured below.
    data = load_training_data(valid, config, None)
    estimated = Trainer.build(config, data, pick_device(config.device)).estimated_epoch_seconds(data)
    del data
    card = train(valid, model_dir, config, on_epoch=measure)
    results_path = RESULTS / "time_to_quality.json"
    saved = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}
    saved["runs"][label] = {
        "config": {k: str(v) for k, v in json.loads(args.config).items()}
        | {"epochs": args.epochs, "ema_decay": args.ema_decay, "weights": args.weights},
        "model_version": card.model_version,
        "kept_epoch": card.metrics.get("kept_epoch"),
        "train_seconds_total": card.metrics["train_seconds"] - measuring["seconds"],
        "estimated_epoch_seconds": estimated,
        "measured_epoch_seconds": (card.metrics["train_seconds"] - measuring["seconds"]) / args.epochs,
        "queries": {"dev": int(dev.sum()), "test": int((~dev).sum())},
        "points": points,
    }
    saved["machine"] = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    saved["catalog"] = {"path": str(args.catalog), "valid_items": len(table)}
    RESULTS.mkdir(exist_ok=True)
    results_path.write_text(json.dumps(saved, indent=2) + "\n")
    view = Table(title=f"Time to quality on {len(table)} real products: {label} (P@5, test half; dev in brackets)")
    for column in ("epoch", "train min", "raw", "raw re-ranked", "EMA", "EMA re-ranked"):
        view.add_column(column)
    for point in points:
        cells = [f"{point['epoch']}", f"{point['train_minutes']:.1f}"]
        for kind in ("raw", "ema"):
            for key in ("test", "test_reranked"):
                value = point.get(kind, {}).get(key)
                dev_value = point.get(kind, {}).get(key.replace("test", "dev"))
                cells.append("-" if value is None else f"{value:.3f} ({dev_value:.3f})")
        view.add_row(*cells)
    Console(width=160).print(view)
    measured_epoch = saved["runs"][label]["measured_epoch_seconds"]
    print(f"an epoch: {measured_epoch:.0f} s measured, {estimated:.0f} s estimated by the time budget's measurement")
    print(f"written {results_path}")


if __name__ == "__main__":
    main()
