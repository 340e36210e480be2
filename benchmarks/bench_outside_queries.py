"""Does the pipeline's own estimate predict real queries? Train on one catalogue of real photos, query it with the
photos of products it does not contain, and compare P@5 with what the evaluation protocol says on the catalogue.

    ../shared/data/merge.sh work/fashion-15k   # not needed: the two samples are used apart
    python benchmarks/bench_outside_queries.py --catalog ../shared/data/fashion-sample-12k \
        --queries ../shared/data/fashion-sample-3k --epochs 12

The model is trained with the pipeline's defaults (group holdout, label-vote re-ranking as served) on ``--catalog``;
``--queries`` holds other products (a disjoint sample of the same shop). Each outside photo is a query against the
whole catalogue, re-ranked as the transformer does; relevant: the same articleType. Two variants of the outside
number: every catalogue item a candidate (a shopper's photo of a new product, whose colour variants may be in the
catalogue), and with the query's product group left out (groups computed over both samples: the protocol's own
rule applied to outside photos). The estimates compared: the protocol's P@5 over all held-out groups and on its test
half, with its group-bootstrap interval, and the same P@5 re-weighted so that the held-out classes weigh what they
weigh in the catalogue (``class_weighted_precision``: a draw of whole groups over-represents some classes).
Prints a table and writes benchmarks/results/outside_queries.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from bench_quality import dev_half, validated
from rich.console import Console
from rich.table import Table

from fashionrec.config import LABEL_COLUMN
from fashionrec.data.split import holdout_mask, product_groups
from fashionrec.data.table import decode_images, read_table
from fashionrec.params import SplitKind, TrainConfig
from fashionrec.retrieval.rerank import LabelVote, label_codes, vote_order
from fashionrec.training.bootstrap import group_bootstrap_interval
from fashionrec.training.evaluate import class_weighted_precision, evaluate_vectors
from fashionrec.training.train import embed_array, load_encoder, pick_device, train

RESULTS = Path(__file__).resolve().parent / "results"


def outside_precision(
    catalogue_vectors: np.ndarray,
    catalogue_labels: np.ndarray,
    query_vectors: np.ndarray,
    query_labels: np.ndarray,
    excluded: np.ndarray | None,
    rerank: LabelVote,
) -> np.ndarray:
    """Per outside query, P@5 against the catalogue after the served re-ranking; ``excluded[q, c]``: candidate c
    may not answer query q (its own product group)."""
    codes, _ = label_codes(np.concatenate([catalogue_labels, query_labels]))
    catalogue_codes, query_codes = codes[: len(catalogue_labels)], codes[len(catalogue_labels) :]
    similarities = query_vectors @ catalogue_vectors.T
    if excluded is not None:
        similarities[excluded] = -np.inf
    depth = rerank.depth
    top = np.argpartition(-similarities, depth - 1, axis=1)[:, :depth]
    top_scores = np.take_along_axis(similarities, top, 1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top, top_scores = np.take_along_axis(top, order, 1), np.take_along_axis(top_scores, order, 1)
    voted = vote_order(catalogue_codes[top], top_scores, rerank.voters, rerank.weight)
    answers = np.take_along_axis(top, voted, 1)[:, :5]
    return np.asarray((catalogue_codes[answers] == query_codes[:, None]).mean(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, required=True, help="what the model trains on and searches")
    parser.add_argument("--queries", type=Path, required=True, help="photos of other products: the outside queries")
    parser.add_argument("--work", type=Path, default=Path("work/outside"), help="validated tables, model, vectors")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    parser.add_argument("--ema-decay", type=float, default=0.999, help="the moving average's decay per step")
    parser.add_argument("--config", default="{}", help="JSON TrainConfig overrides")
    args = parser.parse_args()
    valid = validated(args.catalog, args.work / "catalogue")
    outside_valid = validated(args.queries, args.work / "queries")
    model_dir = args.work / f"model_{args.epochs}epochs"
    config = TrainConfig(
        **{"time_budget_minutes": 0, **json.loads(args.config), "epochs": args.epochs, "ema_decay": args.ema_decay}
    )
    if not (model_dir / "model.json").is_file():
        train(valid, model_dir, config)
    encoder, card = load_encoder(model_dir)
    device = pick_device("auto")
    encoder = encoder.to(device)
    table = read_table(valid).reset_index(drop=True)
    outside = read_table(outside_valid).reset_index(drop=True)
    vectors = embed_array(encoder, decode_images(table["image"], card.image_size), device)
    outside_vectors = embed_array(encoder, decode_images(outside["image"], card.image_size), device)

    rerank = LabelVote()
    queries = np.flatnonzero(holdout_mask(table, config.holdout_fraction, SplitKind.GROUP))
    groups = product_groups(table)
    test = ~dev_half(groups[queries])
    estimate: dict[str, Any] = {}
    for name, rows in (("all held-out", queries), ("test half", queries[test])):
        evaluation = evaluate_vectors(table, vectors, split=SplitKind.GROUP, rerank=rerank, query_rows=rows, examples=0)
        labels = table[LABEL_COLUMN].astype(str).to_numpy()
        estimate[name] = {
            "queries": len(rows),
            "precision_at_5": evaluation.metrics["precision_at_5"],
            "ci": [evaluation.metrics["precision_at_5_ci_low"], evaluation.metrics["precision_at_5_ci_high"]],
            "class_weighted": class_weighted_precision(evaluation.per_query["precision_at_5"].to_numpy(), labels[rows], labels),
        }

    both = pd.concat([table.drop(columns=["image"]), outside.drop(columns=["image"])], ignore_index=True)
    both["image"] = list(table["image"]) + list(outside["image"])
    both_groups = product_groups(both)
    catalogue_labels = table[LABEL_COLUMN].astype(str).to_numpy()
    query_labels = outside[LABEL_COLUMN].astype(str).to_numpy()
    same_group = both_groups[len(table) :][:, None] == both_groups[None, : len(table)]
    measured: dict[str, Any] = {}
    for name, excluded in (("every catalogue item a candidate", None), ("own product group left out", same_group)):
        per_query = outside_precision(vectors, catalogue_labels, outside_vectors, query_labels, excluded, rerank)
        low, high = group_bootstrap_interval(per_query, both_groups[len(table) :])
        measured[name] = {"queries": len(per_query), "precision_at_5": float(per_query.mean()), "ci": [low, high]}
    sharing = int(same_group.any(1).sum())

    result = {
        "catalog": {"path": str(args.catalog), "valid_items": len(table)},
        "queries": {"path": str(args.queries), "valid_items": len(outside), "with_a_group_in_the_catalogue": sharing},
        "model": {"version": card.model_version, "epochs": args.epochs, "ema_decay": args.ema_decay},
        "estimate": estimate,
        "outside": measured,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "outside_queries.json").write_text(json.dumps(result, indent=2) + "\n")
    view = Table(title=f"P@5 of outside photos vs the protocol's estimate ({len(table)} products, {len(outside)} outside)")
    for column in ("what", "queries", "P@5", "95% interval", "class-weighted"):
        view.add_column(column)
    for name, row in estimate.items():
        ci = f"{row['ci'][0]:.3f}-{row['ci'][1]:.3f}"
        view.add_row(f"estimate: {name}", str(row["queries"]), f"{row['precision_at_5']:.3f}", ci, f"{row['class_weighted']:.3f}")
    for name, row in measured.items():
        ci = f"{row['ci'][0]:.3f}-{row['ci'][1]:.3f}"
        view.add_row(f"outside: {name}", str(row["queries"]), f"{row['precision_at_5']:.3f}", ci, "-")
    Console(width=160).print(view)
    print(f"{sharing} of {len(outside)} outside photos share a product group with the catalogue")
    print(f"written {RESULTS / 'outside_queries.json'}")


if __name__ == "__main__":
    main()
