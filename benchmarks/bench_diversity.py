"""What the diversity options cost and buy on real photos: precision@5, coverage@10 and family repeats in the top 10
for the plain answer, family caps and MMR trade-offs, each after the label-vote re-ranking the transformer applies.

    python benchmarks/bench_diversity.py --embeddings work/quality/filters/embeddings.parquet \\
        --catalog work/quality/validate/valid.parquet [--queries 2000]

Protocol (the pipeline's own evaluation): a query is a catalogue item's embedding; its own product group (colour
variants, near-duplicate photos: ``product_groups``) is kept out of its candidates; relevant = same articleType.
Families for the cap are those groups, as the index keeps them. coverage@10: the share of the catalogue that appears
in any query's top 10; repeats@10: answers per query whose family already appeared higher in the same answer. Same
queries, same search for every row (exact inner product), so the rows compare directly. Prints a table and writes
benchmarks/results/diversity.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from fashionrec.config import LABEL_COLUMN, RERANK_DEPTH
from fashionrec.data.split import product_groups
from fashionrec.data.table import read_table
from fashionrec.retrieval.diversity import family_capped, mmr_order
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.retrieval.rerank import LabelVote, label_codes, rerank

RESULTS = Path(__file__).parent / "results" / "diversity.json"
TOP = 10
DEPTH = max(RERANK_DEPTH, 5 * TOP)  # what the transformer searches with a diversity option (DIVERSE_DEPTH_FACTOR)
SETTINGS: list[tuple[str, int | None, float | None]] = [
    ("plain (re-ranked)", None, None),
    ("family_cap 1", 1, None),
    ("family_cap 2", 2, None),
    ("family_cap 3", 3, None),
    ("mmr 0.9", None, 0.9),
    ("mmr 0.8", None, 0.8),
    ("mmr 0.7", None, 0.7),
    ("mmr 0.5", None, 0.5),
    ("family_cap 2 + mmr 0.9", 2, 0.9),
]


def answer(
    scores: np.ndarray, hits: np.ndarray, vectors: np.ndarray, codes: np.ndarray, groups: np.ndarray,
    cap: int | None, lam: float | None,
) -> np.ndarray:  # fmt: skip
    order, scores = rerank(codes[hits], scores, LabelVote())  # as the transformer: MMR trades the voted relevance
    hits = hits[order]
    if lam is not None:
        order = mmr_order(scores, vectors[hits], lam, TOP + 1)
        hits, scores = hits[order], scores[order]
    if cap is not None:
        hits = hits[family_capped(groups[hits], cap)]
    return hits[:TOP]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--catalog", type=Path, required=True, help="the validated catalogue the embeddings came from")
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    console = Console()
    table, vectors = read_embeddings(args.embeddings)
    catalog = read_table(args.catalog).set_index("id").loc[table["item_id"].to_numpy()].reset_index()
    groups = product_groups(catalog)
    codes, _ = label_codes(table[LABEL_COLUMN].astype(str).to_numpy())
    rng = np.random.default_rng(0)
    queries = rng.choice(len(table), min(args.queries, len(table)), replace=False)
    similarity = vectors[queries] @ vectors.T
    similarity[groups[None, :] == groups[queries][:, None]] = -np.inf  # the query's own group is not a candidate
    candidates = np.argsort(-similarity, axis=1)[:, :DEPTH]
    rows: list[dict[str, Any]] = []
    for name, cap, lam in SETTINGS:
        started = time.perf_counter()
        answers = [
            answer(similarity[n, candidates[n]], candidates[n], vectors, codes, groups, cap, lam) for n in range(len(queries))
        ]
        seconds = (time.perf_counter() - started) / len(queries)
        precision = np.mean([(codes[a[:5]] == codes[q]).mean() for a, q in zip(answers, queries, strict=True)])
        coverage = len({int(i) for a in answers for i in a}) / len(table)
        repeats = np.mean([len(a) - len(set(groups[a].tolist())) for a in answers])
        rows.append(
            {"setting": name, "family_cap": cap, "mmr_lambda": lam, "precision_at_5": float(precision),
             "coverage_at_10": coverage, "family_repeats_at_10": float(repeats), "ms_per_query": seconds * 1000}
        )  # fmt: skip
    out = Table(title=f"Diversity on {len(table)} real products, {len(queries)} queries (own group left out)")
    for column in ("setting", "P@5", "coverage@10", "repeats@10", "ms/query"):
        out.add_column(column)
    for row in rows:
        out.add_row(
            row["setting"], f"{row['precision_at_5']:.3f}", f"{row['coverage_at_10']:.3f}",
            f"{row['family_repeats_at_10']:.2f}", f"{row['ms_per_query']:.2f}",
        )  # fmt: skip
    console.print(out)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "items": len(table),
                "queries": len(queries),
                "embeddings": str(args.embeddings),
                "rows": rows,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
