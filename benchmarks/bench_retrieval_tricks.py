"""Retrieval tricks that cost (almost) nothing per query, one row each, on one trained model and real photos:
database-side augmentation (each catalogue vector averaged with its nearest neighbours at index time) and query
expansion (the query averaged with its first answers, then searched again), with and without the transformer's
label-vote re-ranking.

    python benchmarks/bench_retrieval_tricks.py --catalog work/fashion-15k --model work/quality/time_to_quality/<run>

Same protocol as bench_quality.py (group holdout, dev/test halves by a hash of the group). Both tricks are kept
honest: query photos are not in the catalogue, so a query searches with its own vector (expanded only by answers
outside its group), and the catalogue's vectors are augmented only with neighbours that are not held out (a held-out
photo must not leak into the vectors it is scored against). Prints a table and writes
benchmarks/results/retrieval_tricks.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from bench_quality import dev_half, validated
from rich.console import Console
from rich.table import Table

from fashionrec.config import LABEL_COLUMN
from fashionrec.data.split import holdout_mask, product_groups
from fashionrec.data.table import decode_images, read_table
from fashionrec.params import SplitKind
from fashionrec.retrieval.rerank import LabelVote
from fashionrec.training.evaluate import evaluate_vectors, nearest_outside_group
from fashionrec.training.train import embed_array, load_encoder, pick_device

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 2048


def normalised(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def database_augmented(vectors: np.ndarray, allowed: np.ndarray, neighbours: int) -> np.ndarray:
    """Each vector plus its ``neighbours`` nearest among the ``allowed`` rows (itself excluded), renormalised."""
    pool = np.flatnonzero(allowed)
    out = vectors.copy()
    for start in range(0, len(vectors), CHUNK):
        block = vectors[start : start + CHUNK] @ vectors[pool].T
        own = pool[None, :] == np.arange(start, start + len(block))[:, None]
        block[own] = -np.inf
        top = np.argpartition(-block, neighbours - 1, axis=1)[:, :neighbours]
        out[start : start + len(block)] += vectors[pool[top]].sum(1)
    return normalised(out)


def expanded_queries(vectors: np.ndarray, queries: np.ndarray, groups: np.ndarray, answers: int, alpha: float) -> np.ndarray:
    """alpha-query expansion: the query plus its first ``answers`` (outside its group) weighted by similarity^alpha."""
    found, scores = nearest_outside_group(vectors, queries, groups, answers)
    weights = np.maximum(scores, 0) ** alpha
    out = vectors.copy()
    out[queries] += (vectors[found] * weights[..., None]).sum(1)
    return normalised(out)


def synonym_labels(labels: np.ndarray, vectors: np.ndarray, rows: np.ndarray, groups: np.ndarray, share: float) -> np.ndarray:
    """Labels with near-synonym classes merged, learned from the confusion of the ``rows`` (not held out) among
    themselves: classes a and b merge when (a->b + b->a) nearest-neighbour confusions reach ``share`` of their items."""
    found, _ = nearest_outside_group(vectors[rows], np.arange(len(rows)), groups[rows], 1)
    mine, theirs = labels[rows], labels[rows][found[:, 0]]
    sizes = pd.Series(mine).value_counts()
    pairs = pd.Series(
        1, index=pd.MultiIndex.from_arrays([np.where(mine < theirs, mine, theirs), np.where(mine < theirs, theirs, mine)])
    )
    confused = pairs[mine != theirs].groupby(level=[0, 1]).sum()
    merged = {name: name for name in set(labels)}  # classes only held out too: never merged

    def root(name: str) -> str:
        while merged[name] != name:
            name = merged[name]
        return name

    for (a, b), count in confused.items():
        if count >= share * (sizes[a] + sizes[b]):
            merged[root(b)] = root(a)
    return np.array([root(name) for name in labels])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, required=True, help="Kaggle-layout catalogue of real photos")
    parser.add_argument("--work", type=Path, default=Path("work/quality"), help="bench_quality's work folder")
    parser.add_argument("--model", type=Path, required=True, help="a trained model's folder")
    args = parser.parse_args()
    table = read_table(validated(args.catalog, args.work)).reset_index(drop=True)
    encoder, card = load_encoder(args.model)
    device = pick_device("auto")
    vectors = embed_array(encoder.to(device).eval(), decode_images(table["image"], card.image_size), device)
    held = holdout_mask(table, 0.2, SplitKind.GROUP)
    queries = np.flatnonzero(held)
    groups = product_groups(table)
    dev = dev_half(groups[queries])
    rows: dict[str, tuple[np.ndarray, np.ndarray | None]] = {"baseline": (vectors, None)}
    for k in (1, 3, 5):
        rows[f"database-side augmentation, {k} neighbours"] = (database_augmented(vectors, ~held, k), vectors)
    for k, alpha in ((3, 3.0), (5, 3.0)):
        rows[f"query expansion, {k} answers, alpha {alpha:g}"] = (vectors, expanded_queries(vectors, queries, groups, k, alpha))
    results = {}
    labels = table[LABEL_COLUMN].astype(str).to_numpy()
    for share in (0.1, 0.2, 0.3):
        voting = synonym_labels(labels, vectors, np.flatnonzero(~held), groups, share)
        merges = sorted({" / ".join(sorted(set(labels[voting == v]))) for v in set(voting) if len(set(labels[voting == v])) > 1})
        label = f"synonym-aware re-ranking, classes merged at {share:g} confusion"
        results[label] = {
            half: evaluate_vectors(
                table, vectors, split=SplitKind.GROUP, rerank=LabelVote(), query_rows=part, examples=0, vote_labels=voting
            ).metrics["precision_at_5"]
            for half, part in (("dev", queries[dev]), ("test", queries[~dev]))
        }
        print(f"{label}: dev {results[label]['dev']:.3f}, test {results[label]['test']:.3f}; merged {merges}", flush=True)
    for name, (catalogue, searching) in rows.items():
        for rerank in (None, LabelVote()):
            label = name + (" + re-ranking" if rerank else "")
            results[label] = {
                half: evaluate_vectors(
                    table, catalogue, split=SplitKind.GROUP, rerank=rerank, query_rows=part, examples=0, query_vectors=searching
                ).metrics["precision_at_5"]
                for half, part in (("dev", queries[dev]), ("test", queries[~dev]))
            }
            print(f"{label}: dev {results[label]['dev']:.3f}, test {results[label]['test']:.3f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval_tricks.json").write_text(
        json.dumps({"model": str(args.model), "model_version": card.model_version, "rows": results}, indent=2) + "\n"
    )
    view = Table(title=f"Retrieval tricks on {len(table)} real products, model {card.model_version} (P@5)")
    for column in ("trick", "dev", "test", "dev vs baseline"):
        view.add_column(column)
    base = {False: results["baseline"]["dev"], True: results["baseline + re-ranking"]["dev"]}
    reranked = ("re-ranking", "synonym")
    for label, scores in results.items():
        view.add_row(
            label,
            f"{scores['dev']:.3f}",
            f"{scores['test']:.3f}",
            f"{scores['dev'] - base[any(word in label for word in reranked)]:+.3f}",
        )
    Console(width=160).print(view)


if __name__ == "__main__":
    main()
