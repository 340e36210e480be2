"""Do shoppers' co-clicks help? Two encoders trained alike, one with co-clicked pairs as extra positives, scored on
the offline replay of held-out shoppers' sessions (and on precision@5, which they must not cost).

    python benchmarks/bench_coclicks.py --catalog ../shared/data/fashion-sample-3k --epochs 6

How: the catalogue is validated, and a "production" encoder (seed 0) is trained and embeds it. Simulated shoppers
(fashionrec.engagement.shoppers: taste for colours, a usage and a season the encoder is not trained on, position
bias, noise) ask ``--answers`` item queries, are shown that encoder's top 10 by cosine and click; their sessions are
split by request id (fashionrec.engagement.replay.for_replay: 80% may train, 20% are replayed). Two candidates
are then trained with the same seed (1) and settings, without and with the co-clicked pairs of the training sessions
(``--weight``), and scored: replay recall@5 on the replayed sessions, and the evaluation's precision@5 on held-out
product groups. One run; the production encoder's own replay is shown for reference (it chose what was clicked).
Prints a table and writes benchmarks/results/coclicks.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fashionrec.data.validation.quarantine import validate_catalog
from fashionrec.data.validation.report import output_paths, write_outputs
from fashionrec.engagement.events import FeedbackEvent, parse_feedback
from fashionrec.engagement.replay import coclicked_pairs, for_replay, sessions
from fashionrec.engagement.shoppers import Shoppers
from fashionrec.local.shopping import QUERIES_PER_SESSION, catalogue_attributes
from fashionrec.params import TrainConfig
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.training.card import ModelCard
from fashionrec.training.embed import embed_catalog
from fashionrec.training.evaluate import evaluate_embeddings
from fashionrec.training.train import train

RESULTS = Path(__file__).resolve().parent / "results"
ANSWER_SIZE = 10


def trained(
    valid: Path, root: Path, name: str, config: TrainConfig, pairs: list[tuple[int, int]] | None = None
) -> tuple[Path, str]:
    model = root / name
    train(valid, model, config, pairs)
    embed_catalog(valid, model, root / f"{name}.parquet")
    return root / f"{name}.parquet", ModelCard.load(model).model_version


def shop(
    embeddings: Path, attributes: dict[int, dict[str, str]], answers: int, seed: int
) -> tuple[list[FeedbackEvent], dict[str, int]]:
    """Simulated shoppers shown the encoder's top 10 by cosine: their events and each request's query item."""
    table, vectors = read_embeddings(embeddings)
    ids = table["item_id"].astype(int).to_numpy()
    row_of = {int(i): n for n, i in enumerate(ids)}
    shoppers = Shoppers({i: a for i, a in attributes.items() if i in row_of}, seed=seed)
    events: list[FeedbackEvent] = []
    queries: dict[str, int] = {}
    shopper = shoppers.shopper()
    for n in range(answers):
        if n % QUERIES_PER_SESSION == 0:
            shopper = shoppers.shopper()
        query = shoppers.query_item(shopper)
        scores = vectors @ vectors[row_of[query]]
        scores[row_of[query]] = -np.inf
        shown = [int(ids[i]) for i in np.argsort(-scores)[:ANSWER_SIZE]]
        request = f"r{n}"
        queries[request] = query
        posted = shoppers.react(shopper, query, shown, request, "production")
        events += parse_feedback(json.dumps(posted).encode(), time.time())  # through the collector's parser
    return events, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--answers", type=int, default=8000)
    parser.add_argument("--weight", type=float, default=0.5)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="fashionrec-bench-coclicks-") as tmp:
        root = Path(tmp)
        paths = output_paths(root / "validation")
        write_outputs(validate_catalog(args.catalog), args.catalog, paths)
        base = TrainConfig(epochs=args.epochs, time_budget_minutes=0)
        production, _ = trained(paths.valid, root, "production", base)
        events, queries = shop(production, catalogue_attributes(args.catalog), args.answers, seed=1)
        found = sessions(events, queries)
        by_request = {request: query for request, query in queries.items()}
        training = sessions(events, {r: q for r, q in by_request.items() if not for_replay(r)})
        replay = sessions(events, {r: q for r, q in by_request.items() if for_replay(r)})
        pairs = coclicked_pairs(training)
        console.print(f"{args.answers} answers, {len(found)} with clicks: {len(training)} may train ({len(pairs)} co-clicked "
                      f"pairs), {len(replay)} replayed")  # fmt: skip
        candidates = {
            "production (chose what was shown)": (production, ModelCard.load(root / "production").model_version),
            "candidate, labels only": trained(paths.valid, root, "plain", dataclasses.replace(base, seed=1)),
            f"candidate + co-clicks (weight {args.weight})": trained(
                paths.valid, root, "coclick", dataclasses.replace(base, seed=1, coclick_weight=args.weight), pairs
            ),
        }
        rows = {}
        for name, (embeddings, version) in candidates.items():
            metrics = evaluate_embeddings(paths.valid, embeddings, version, sessions=replay).metrics
            rows[name] = {k: metrics[k] for k in ("precision_at_5", "replay_recall_at_5", "replay_sessions")}
    table = Table(title=f"co-clicked pairs in training: {args.catalog.name}, {args.epochs} epochs, {os.cpu_count()} cores")
    for column in ("model", "replay recall@5", "precision@5"):
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(name, f"{row['replay_recall_at_5']:.4f}", f"{row['precision_at_5']:.4f}")
    console.print(table)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "catalog": str(args.catalog),
        "epochs": args.epochs,
        "answers": args.answers,
        "sessions_with_clicks": len(found),
        "training_sessions": len(training),
        "replayed_sessions": len(replay),
        "coclicked_pairs": len(pairs),
        "weight": args.weight,
        "models": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coclicks.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
