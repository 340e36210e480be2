"""The evaluate stage: retrieval quality on a held-out split, the way users meet the model.

Protocol: every item of the catalogue is embedded; each held-out item is a query against the whole catalogue with
the query's own product group excluded (its near-duplicate photos and colour variants: a shopper's photo of a product
that is not in the catalogue has no twin there); a neighbour is relevant when it has the query's articleType. The
split keeps whole groups on one side and is a fixed function of the catalogue (``fashionrec.data.split``), so a
candidate and the production model are compared on the same queries and neither trained on them.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.config import (
    CONFUSION_FILE,
    FEAST_JOIN_KEY,
    LABEL_COLUMN,
    METRICS_FILE,
    PER_CLASS_FILE,
    PER_QUERY_FILE,
    REPORT_FILE,
)
from fashionrec.data.split import holdout_mask, product_groups
from fashionrec.data.table import read_table
from fashionrec.engagement.replay import REPLAY_K, Session, replay_recall
from fashionrec.params import SplitKind
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.retrieval.rerank import LabelVote, label_codes, vote_order
from fashionrec.training.bootstrap import group_bootstrap_interval
from fashionrec.training.card import ModelCard
from fashionrec.training.embed import encode_table

K_VALUES = (1, 5, 10)
COARSE_LABEL_COLUMN = "masterCategory"  # a second, coarser relevance: is the answer at least the right kind of thing
WORST_CLASSES = 10  # classes listed in the report, worst precision@5 first
WORST_CLASS_MIN_QUERIES = 5  # a class needs this many held-out queries to be ranked among the worst (noise otherwise)
QUERY_CHUNK = 1024  # queries scored at once: bounds the similarity matrix on large catalogues
# What the transformer does by default (its --rerank_voters/--rerank_depth), so the gate scores what users get.
SERVED_RERANK = LabelVote()


@dataclass(frozen=True)
class Example:
    query: int
    label: str
    image: bytes
    neighbours: list[tuple[int, str, bytes, float]]  # id, label, image, cosine similarity


@dataclass(frozen=True)
class ClassQuality:
    label: str
    queries: int
    precision_at_5: float


@dataclass
class Evaluation:
    metrics: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted (nearest non-query neighbour's class)
    classes: list[str]
    examples: list[Example]  # a few queries with their neighbours, for the report
    per_class: list[ClassQuality]  # every class with queries, worst precision@5 first
    per_query: pd.DataFrame  # item_id, group, precision_at_5 of every query: what the gate pairs with production's


def retrieval_metrics(
    labels: np.ndarray,
    neighbour_ids: np.ndarray,
    query_rows: np.ndarray,
    k_values: tuple[int, ...] = K_VALUES,
    excluded_relevant: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics from the neighbours (catalogue row positions, query excluded, best first) of each query row.
    ``excluded_relevant``: per query, how many items of its label were kept out of its candidates (default 1: itself)."""
    max_k = neighbour_ids.shape[1]
    relevant = labels[neighbour_ids] == labels[query_rows][:, None]  # [queries, max_k]
    class_sizes = pd.Series(labels).value_counts()
    excluded = np.ones(len(query_rows), dtype=np.int64) if excluded_relevant is None else excluded_relevant
    n_relevant = np.array([class_sizes[labels[q]] for q in query_rows]) - excluded
    metrics: dict[str, float] = {}
    discounts = 1 / np.log2(np.arange(2, max_k + 2))
    for k in k_values:
        hits = relevant[:, :k]
        metrics[f"precision_at_{k}"] = float(hits.mean())
        metrics[f"recall_at_{k}"] = float(np.mean(hits.sum(1) / np.maximum(np.minimum(n_relevant, k), 1)))
        metrics[f"hit_rate_at_{k}"] = float(hits.any(1).mean())
        dcg = (hits * discounts[:k]).sum(1)
        ideal = np.array([discounts[: min(int(n), k)].sum() for n in n_relevant])
        metrics[f"ndcg_at_{k}"] = float(np.mean(np.where(ideal > 0, dcg / np.maximum(ideal, 1e-12), 0)))
        precision_at_rank = np.cumsum(hits, 1) / np.arange(1, k + 1)
        metrics[f"map_at_{k}"] = float(np.mean((precision_at_rank * hits).sum(1) / np.maximum(np.minimum(n_relevant, k), 1)))
    top = neighbour_ids[:, : min(10, max_k)]
    counts = np.bincount(top.reshape(-1), minlength=len(labels)).astype(np.float64)
    metrics["catalogue_coverage_at_10"] = float((counts > 0).mean())
    metrics["recommendation_gini_at_10"] = gini(counts)
    return metrics


def class_weighted_precision(per_query: np.ndarray, query_labels: np.ndarray, catalogue_labels: np.ndarray) -> float:
    """Mean per-query precision with each class weighted by its share of the catalogue instead of its share of the
    queries: a draw of whole groups over-represents some classes, random shoppers' photos do not. Classes without a
    query are left out and the weights of the others renormalised."""
    by_class = pd.Series(per_query).groupby(np.asarray(query_labels)).mean()
    shares = pd.Series(np.asarray(catalogue_labels)).value_counts().reindex(by_class.index).fillna(0.0)
    if shares.sum() == 0:
        return float(np.mean(per_query))
    return float((by_class * shares).sum() / shares.sum())


def gini(counts: np.ndarray) -> float:
    """0 = every item recommended equally often, 1 = one item takes every recommendation."""
    if counts.sum() == 0:
        return 0.0
    ordered = np.sort(counts)
    n = len(ordered)
    return float((2 * np.arange(1, n + 1) - n - 1) @ ordered / (n * ordered.sum()))


def evaluate(
    valid_catalog: Path,
    model_dir: Path,
    holdout_fraction: float = 0.2,
    device: str = "auto",
    examples: int = 6,
    rerank: LabelVote | None = SERVED_RERANK,
) -> Evaluation:
    """Embed the catalogue with the model in model_dir, then score it (the gate's path for the production model)."""
    table = read_table(valid_catalog).reset_index(drop=True)
    vectors, _ = encode_table(table, model_dir, device)
    return evaluate_vectors(table, vectors, holdout_fraction, examples, rerank=rerank)


def evaluate_embeddings(
    valid_catalog: Path,
    embeddings: Path,
    model_version: str,
    holdout_fraction: float = 0.2,
    examples: int = 6,
    rerank: LabelVote | None = SERVED_RERANK,
    sessions: list[Session] | None = None,
) -> Evaluation:
    """Score the vectors the embed stage already wrote for this model: no second pass over the catalogue. With
    ``sessions`` (shoppers' logged item queries and their clicks), the replay metric too."""
    table = read_table(valid_catalog).reset_index(drop=True)
    embedded, vectors = read_embeddings(embeddings)
    versions = set(embedded["model_version"].astype(str))
    if versions != {model_version}:
        raise ValueError(f"embeddings come from model(s) {sorted(versions)}, not {model_version}")
    rows = pd.Index(embedded[FEAST_JOIN_KEY]).get_indexer(table["id"])
    if (rows < 0).any():
        raise ValueError(f"{int((rows < 0).sum())} catalogue items have no embedding")
    result = evaluate_vectors(table, vectors[rows], holdout_fraction, examples, rerank=rerank)
    if sessions is not None:
        result.metrics.update(replay_metrics(table["id"].astype(int).to_numpy(), vectors[rows], sessions))
    return result


def replay_metrics(item_ids: np.ndarray, vectors: np.ndarray, found: list[Session]) -> dict[str, float]:
    """The offline replay on shoppers' logged sessions: the share of each session's clicks that this model's top
    REPLAY_K neighbours of the query item recover (plain cosine order, the query left out), over the sessions whose
    query item is in the catalogue."""
    position = {int(item): row for row, item in enumerate(item_ids)}
    usable = [session for session in found if session.query_item in position]

    def neighbours(item: int) -> list[int]:
        scores = vectors @ vectors[position[item]]
        scores[position[item]] = -np.inf
        top = np.argpartition(-scores, REPLAY_K)[:REPLAY_K] if len(scores) > REPLAY_K else np.arange(len(scores))
        return [int(item_ids[row]) for row in top[np.argsort(-scores[top], kind="stable")]]

    return {f"replay_recall_at_{REPLAY_K}": replay_recall(usable, neighbours), "replay_sessions": float(len(usable))}


def nearest_outside_group(
    vectors: np.ndarray, query_rows: np.ndarray, groups: np.ndarray, depth: int, query_vectors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per query row, the ``depth`` nearest catalogue rows outside the query's own group, best first, and their scores.
    ``query_vectors`` (same rows as ``vectors``): what the queries search with, when it is not their catalogue vector
    (an expanded query, or a catalogue whose vectors were augmented at index time)."""
    queries = vectors if query_vectors is None else query_vectors
    found, scores = [], []
    for start in range(0, len(query_rows), QUERY_CHUNK):
        rows = query_rows[start : start + QUERY_CHUNK]
        similarities = queries[rows] @ vectors.T
        similarities[groups[rows][:, None] == groups[None, :]] = -np.inf
        columns = similarities.shape[1]
        top = (
            np.argpartition(-similarities, depth - 1, axis=1)[:, :depth]
            if depth < columns
            else np.broadcast_to(np.arange(columns), similarities.shape)  # every column: the sort below orders them
        )
        top_scores = np.take_along_axis(similarities, top, 1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        found.append(np.take_along_axis(top, order, 1))
        scores.append(np.take_along_axis(top_scores, order, 1))
    return np.concatenate(found), np.concatenate(scores)


def evaluate_vectors(
    table: pd.DataFrame,
    vectors: np.ndarray,
    holdout_fraction: float = 0.2,
    examples: int = 6,
    split: SplitKind = SplitKind.GROUP,
    rerank: LabelVote | None = None,
    query_rows: np.ndarray | None = None,
    query_vectors: np.ndarray | None = None,
    vote_labels: np.ndarray | None = None,
) -> Evaluation:
    """Metrics, confusion matrix and report examples for catalogue ``table`` with ``vectors`` in the same row order.

    ``split``: group (the honest protocol) or id (each query excludes only itself: twins leak; for comparison).
    ``rerank``: answers re-ordered by the neighbours' label vote, as the transformer does. ``query_rows``: score only
    these held-out rows (default: all of them). ``query_vectors``: what the queries search with, when it is not their
    catalogue vector (see nearest_outside_group). ``vote_labels``: what the re-ranking's vote counts, when not the
    articleType (e.g. near-synonym classes merged); relevance stays the articleType."""
    labels = table[LABEL_COLUMN].astype(str).to_numpy()
    if query_rows is None:
        query_rows = np.flatnonzero(holdout_mask(table, holdout_fraction, split))
    if len(query_rows) == 0:
        raise ValueError("no held-out items: the catalogue is too small for this holdout fraction")
    groups = product_groups(table) if split == SplitKind.GROUP else table["id"].astype("int64").to_numpy()
    outside = len(table) - pd.Series(groups).value_counts()[groups[query_rows]].to_numpy()
    max_k = int(min(max(K_VALUES), outside.min()))
    if max_k < 1:
        raise ValueError("a query's group is the whole catalogue: nothing to retrieve")
    depth = max(max_k, min(rerank.depth, int(outside.min()))) if rerank else max_k
    neighbour_ids, scores = nearest_outside_group(vectors, query_rows, groups, depth, query_vectors)
    if rerank:
        codes, _ = label_codes(labels if vote_labels is None else vote_labels)
        order = vote_order(codes[neighbour_ids], scores, min(rerank.voters, depth), rerank.weight)
        neighbour_ids, scores = np.take_along_axis(neighbour_ids, order, 1), np.take_along_axis(scores, order, 1)
    neighbour_ids, scores = neighbour_ids[:, :max_k], scores[:, :max_k]
    same_label_in_group = pd.Series(1, index=pd.MultiIndex.from_arrays([groups, labels])).groupby(level=[0, 1]).sum()
    excluded = same_label_in_group.reindex(pd.MultiIndex.from_arrays([groups[query_rows], labels[query_rows]])).to_numpy()
    metrics = retrieval_metrics(labels, neighbour_ids, query_rows, tuple(k for k in K_VALUES if k <= max_k), excluded)
    top5 = neighbour_ids[:, : min(5, max_k)]
    coarse = table[COARSE_LABEL_COLUMN].astype(str).to_numpy() if COARSE_LABEL_COLUMN in table else labels
    metrics[f"{COARSE_LABEL_COLUMN}_precision_at_5"] = float((coarse[top5] == coarse[query_rows][:, None]).mean())
    per_query = (labels[top5] == labels[query_rows][:, None]).mean(1)
    by_class = pd.DataFrame({"label": labels[query_rows], "p": per_query}).groupby("label")["p"].agg(["size", "mean"])
    per_class = [
        ClassQuality(str(label), int(row["size"]), float(row["mean"]))
        for label, row in by_class.sort_values(["mean", "size"], ascending=[True, False]).iterrows()
    ]
    per_query_table = pd.DataFrame(
        {"item_id": table["id"].astype("int64").to_numpy()[query_rows], "group": groups[query_rows], "precision_at_5": per_query}
    )
    metrics["precision_at_5_ci_low"], metrics["precision_at_5_ci_high"] = group_bootstrap_interval(per_query, groups[query_rows])
    metrics["precision_at_5_class_weighted"] = class_weighted_precision(per_query, labels[query_rows], labels)
    worst = worst_classes(per_class)
    metrics["worst_classes_precision_at_5"] = float(np.mean([c.precision_at_5 for c in worst])) if worst else 0.0
    classes = sorted(set(labels))
    index_of = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    for q, first in zip(query_rows, neighbour_ids[:, 0], strict=True):
        confusion[index_of[labels[q]], index_of[labels[first]]] += 1
    metrics["nearest_neighbour_accuracy"] = float(np.trace(confusion) / confusion.sum())
    metrics["queries"] = float(len(query_rows))
    ids = [int(i) for i in table["id"]]
    images = [bytes(b) for b in table["image"]] if examples else []
    example_rows = []
    for position in np.linspace(0, len(query_rows) - 1, num=min(examples, len(query_rows))).astype(int).tolist():
        row = int(query_rows[position])
        neighbours = [
            (ids[n], str(labels[n]), images[n], float(score))
            for n, score in zip(neighbour_ids[position, :5], scores[position, :5], strict=True)
        ]
        example_rows.append(Example(ids[row], str(labels[row]), images[row], neighbours))
    return Evaluation(metrics, confusion.tolist(), classes, example_rows, per_class, per_query_table)


def worst_classes(per_class: list[ClassQuality]) -> list[ClassQuality]:
    """The classes with the lowest precision@5 among those with enough queries to tell."""
    return [c for c in per_class if c.queries >= WORST_CLASS_MIN_QUERIES][:WORST_CLASSES]


def _thumb(data: bytes, border: str = "#ccc") -> str:
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" height="80" style="border:3px solid {border}">'


def render_report(evaluation: Evaluation, card: ModelCard) -> str:
    metric_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in sorted(evaluation.metrics.items()))
    class_rows = "".join(
        f"<tr><td>{html.escape(c.label)}</td><td>{c.queries}</td><td>{c.precision_at_5:.3f}</td></tr>"
        for c in worst_classes(evaluation.per_class)
    )
    example_rows = []
    for ex in evaluation.examples:
        neighbours = "".join(
            f"<td>{_thumb(img, '#2a2' if label == ex.label else '#c22')}<br>{nid}<br>{html.escape(label)}<br>{score:.3f}</td>"
            for nid, label, img, score in ex.neighbours
        )
        example_rows.append(f"<tr><td>{_thumb(ex.image)}<br>{ex.query}<br><b>{html.escape(ex.label)}</b></td>{neighbours}</tr>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Model evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:center}}</style></head><body>
<h1>Model {html.escape(card.model_version)} ({html.escape(card.backbone)})</h1>
<p>Dataset {html.escape(card.dataset_digest[:16])}…; {int(evaluation.metrics["queries"])} held-out queries against the whole catalogue,
the query's own product group excluded (near-duplicate photos, colour variants); relevant = same {LABEL_COLUMN}.
Precision@5: <b>{evaluation.metrics.get("precision_at_5", 0):.3f}</b>; right {COARSE_LABEL_COLUMN}:
{evaluation.metrics.get(f"{COARSE_LABEL_COLUMN}_precision_at_5", 0):.3f}.</p>
<h2>Where it fails: the {WORST_CLASSES} worst classes (of those with {WORST_CLASS_MIN_QUERIES}+ queries)</h2>
<table><tr><th>{LABEL_COLUMN}</th><th>queries</th><th>precision@5</th></tr>{class_rows}</table>
<h2>Example queries</h2><p>Green: same {LABEL_COLUMN} as the query; red: different.</p>
<table><tr><th>query</th><th colspan=5>nearest neighbours</th></tr>{"".join(example_rows)}</table>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{metric_rows}</table></body></html>"""


def write_evaluation(evaluation: Evaluation, card: ModelCard, out_dir: Path) -> None:
    """metrics.json (what the gate reads), confusion.json, per_class.json (worst precision@5 first), per_query.json
    (what the gate pairs with production's) and report.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).write_text(
        json.dumps({"model_version": card.model_version, "dataset_digest": card.dataset_digest, **evaluation.metrics}, indent=2)
    )
    (out_dir / CONFUSION_FILE).write_text(json.dumps({"classes": evaluation.classes, "matrix": evaluation.confusion}))
    (out_dir / PER_CLASS_FILE).write_text(json.dumps([asdict(c) for c in evaluation.per_class], indent=1))
    (out_dir / PER_QUERY_FILE).write_text(evaluation.per_query.to_json(orient="records"))
    (out_dir / REPORT_FILE).write_text(render_report(evaluation, card), encoding="utf-8")
