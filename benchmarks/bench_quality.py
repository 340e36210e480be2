"""Retrieval quality on real photos: the leaky and the honest split side by side, and an ablation of the training
and serving choices, one row per change, same split, same epoch budget.

    ../shared/data/merge.sh work/fashion-15k
    python benchmarks/bench_quality.py --catalog work/fashion-15k --work work/quality --epochs 4 [--rows A,B,...]

Each row trains the train stage's own code (``fashionrec.training.train.train``) with one more change than the row
before, embeds the whole catalogue and evaluates it the way the gate does. The held-out product groups are split
once more in two halves by a hash of the group: "dev" is what rows are compared on, "test" is looked at only for the
reported numbers, so choosing a row does not tune on the figures reported. Rows are cached in --work (a row already
trained is evaluated again, not retrained), so rows can be run one at a time. Prints a table and writes
benchmarks/results/quality.json (rows merged by name).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from fashionrec.data.split import holdout_mask, product_groups
from fashionrec.data.table import decode_images, read_table
from fashionrec.params import Augmentation, SplitKind, TrainConfig
from fashionrec.retrieval.rerank import LabelVote
from fashionrec.training.card import ModelCard
from fashionrec.training.evaluate import evaluate_vectors, worst_classes
from fashionrec.training.train import embed_array, load_encoder, pick_device, train

RESULTS = Path(__file__).resolve().parent / "results"
BASE = {"margin": 0.0, "auxiliary_weight": 0.0, "augmentation": Augmentation.LIGHT}  # the defaults


@dataclass(frozen=True)
class Row:
    name: str
    change: str
    config: dict[str, Any]  # TrainConfig overrides (epochs come from the command line)
    split: SplitKind = SplitKind.GROUP
    rerank: bool = False
    flip: bool = False  # flip test-time augmentation: mean of the embeddings of the photo and its mirror image
    trained_as: str = ""  # reuse this row's model (serving-side changes need no training)
    extra: dict[str, Any] = field(default_factory=dict)


ROWS = [
    Row("A", "defaults, id split (leaky: twins on both sides)", {**BASE, "holdout_split": SplitKind.ID}, SplitKind.ID),
    Row("B", "defaults, group split (honest)", BASE),
    Row("C", "+ CosFace margin 0.2", {**BASE, "margin": 0.2}),
    Row(
        "D",
        "+ auxiliary heads (masterCategory, subCategory, gender, baseColour), weight 0.3",
        {**BASE, "margin": 0.2, "auxiliary_weight": 0.3},
    ),
    Row(
        "E",
        "+ strong augmentation (resized crops, colour casts, greyscale)",
        {**BASE, "margin": 0.2, "auxiliary_weight": 0.3, "augmentation": Augmentation.STRONG},
    ),
    Row("F", "+ label-vote re-ranking in the transformer (20 voters, bonus 0.05, depth 50)", {}, rerank=True, trained_as="E"),
    Row("G", "+ flip test-time augmentation", {}, rerank=True, flip=True, trained_as="E"),
]


def dev_half(groups: np.ndarray) -> np.ndarray:
    return np.array([int(hashlib.sha256(f"dev:{g}".encode()).hexdigest()[:8], 16) % 2 == 0 for g in groups])


def validated(catalog: Path, work: Path) -> Path:
    valid = work / "validate" / "valid.parquet"
    if not valid.is_file():
        subprocess.run(
            [
                str(Path(sys.executable).with_name("fashionrec")),
                "validate",
                "--catalog",
                str(catalog),
                "--out",
                str(valid.parent),
            ],
            check=True,
        )
    return valid


def row_vectors(
    row: Row, valid: Path, work: Path, epochs: int, config_overrides: dict[str, Any]
) -> tuple[np.ndarray, ModelCard, float]:
    model_dir = work / (row.trained_as or row.name)
    if not (model_dir / "model.json").is_file():
        config = TrainConfig(**{"time_budget_minutes": 0, **config_overrides, **row.config, "epochs": epochs})
        train(valid, model_dir, config)
    encoder, card = load_encoder(model_dir)
    cache = model_dir / f"vectors{'_flip' if row.flip else ''}.npy"
    if not cache.is_file():
        device = pick_device("auto")
        images = decode_images(read_table(valid)["image"], card.image_size)
        vectors = embed_array(encoder.to(device), images, device)
        if row.flip:
            mirrored = embed_array(encoder, np.ascontiguousarray(images[..., ::-1]), device)
            vectors = vectors + mirrored
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        np.save(cache, vectors)
    return np.load(cache), card, float(card.metrics.get("train_seconds", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, required=True, help="Kaggle-layout catalogue of real photos")
    parser.add_argument("--work", type=Path, default=Path("work/quality"), help="models and caches")
    parser.add_argument("--epochs", type=int, default=4, help="the epoch budget of every row")
    parser.add_argument("--rows", default=",".join(r.name for r in ROWS), help="comma-separated row names")
    parser.add_argument("--config", default="{}", help="JSON TrainConfig overrides for every row, e.g. a backbone")
    parser.add_argument("--label", default="", help="results are stored under this label (default: the epochs)")
    parser.add_argument("--serve-on", default="E", help="the trained row that the serving-side rows (F, G) re-rank")
    args = parser.parse_args()
    work = args.work / f"epochs{args.epochs}"
    work.mkdir(parents=True, exist_ok=True)
    valid = validated(args.catalog, args.work)
    table = read_table(valid).reset_index(drop=True)
    overrides = json.loads(args.config)
    results_path = RESULTS / "quality.json"
    saved = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}
    label = args.label or f"epochs{args.epochs}"
    run = saved["runs"].setdefault(label, {"epochs": args.epochs, "config": overrides, "rows": {}})
    for name in args.rows.split(","):
        row = next(r for r in ROWS if r.name == name)
        if row.trained_as:
            row = replace(row, trained_as=args.serve_on, change=row.change + f" (on {args.serve_on})")
        vectors, card, seconds = row_vectors(row, valid, work, args.epochs, overrides)
        queries = np.flatnonzero(holdout_mask(table, 0.2, row.split))
        groups = product_groups(table) if row.split == SplitKind.GROUP else table["id"].to_numpy()
        dev = dev_half(groups[queries])
        rerank = LabelVote() if row.rerank else None
        halves = {
            half: evaluate_vectors(table, vectors, split=row.split, rerank=rerank, query_rows=rows, examples=0)
            for half, rows in (("dev", queries[dev]), ("test", queries[~dev]), ("all", queries))
        }
        run["rows"][name] = {
            "change": row.change,
            "model_version": card.model_version,
            "train_seconds": seconds,
            "train_images_per_second": card.metrics.get("train_images_per_second"),
            "queries": {h: int(e.metrics["queries"]) for h, e in halves.items()},
            "metrics": {h: e.metrics for h, e in halves.items()},
            "worst_classes": [(c.label, c.queries, c.precision_at_5) for c in worst_classes(halves["all"].per_class)],
        }
    saved["machine"] = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    saved["catalog"] = {"path": str(args.catalog), "valid_items": len(table)}
    RESULTS.mkdir(exist_ok=True)
    results_path.write_text(json.dumps(saved, indent=2) + "\n")
    view = Table(title=f"Retrieval quality on {len(table)} real products, {label}")
    for column in ("row", "change", "train min", "P@5 dev", "P@5 test", "HR@5", "nDCG@10", "masterCat P@5", "worst-10 P@5"):
        view.add_column(column)
    for name, result in sorted(run["rows"].items()):
        m = result["metrics"]
        view.add_row(
            name,
            result["change"],
            f"{result['train_seconds'] / 60:.1f}",
            f"{m['dev']['precision_at_5']:.3f}",
            f"{m['test']['precision_at_5']:.3f}",
            f"{m['all']['hit_rate_at_5']:.3f}",
            f"{m['all']['ndcg_at_10']:.3f}",
            f"{m['all']['masterCategory_precision_at_5']:.3f}",
            f"{m['all']['worst_classes_precision_at_5']:.3f}",
        )
    Console(width=200).print(view)
    started = time.strftime("%Y-%m-%d %H:%M")
    Console().print(f"written {results_path} ({started})")


if __name__ == "__main__":
    main()
