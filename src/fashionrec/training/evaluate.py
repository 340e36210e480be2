"""The evaluate stage: retrieval quality on a held-out split, the way users meet the model.

Protocol: every item of the catalogue is embedded; each held-out item is a query against the whole catalogue with
the query itself excluded; a neighbour is relevant when it has the query's articleType. The split is a fixed
function of the item id (``is_holdout``), so a candidate and the production model are compared on the same queries
and neither trained on them.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.config import CONFUSION_FILE, FEAST_JOIN_KEY, LABEL_COLUMN, METRICS_FILE, REPORT_FILE
from fashionrec.data.table import is_holdout, read_table
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.training.card import ModelCard
from fashionrec.training.embed import encode_table

K_VALUES = (1, 5, 10)


@dataclass(frozen=True)
class Example:
    query: int
    label: str
    image: bytes
    neighbours: list[tuple[int, str, bytes, float]]  # id, label, image, cosine similarity


@dataclass
class Evaluation:
    metrics: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted (nearest non-query neighbour's class)
    classes: list[str]
    examples: list[Example]  # a few queries with their neighbours, for the report


def retrieval_metrics(
    labels: np.ndarray, neighbour_ids: np.ndarray, query_rows: np.ndarray, k_values: tuple[int, ...] = K_VALUES
) -> dict[str, float]:
    """Metrics from the neighbours (catalogue row positions, query excluded, best first) of each query row."""
    max_k = neighbour_ids.shape[1]
    relevant = labels[neighbour_ids] == labels[query_rows][:, None]  # [queries, max_k]
    class_sizes = pd.Series(labels).value_counts()
    n_relevant = np.array([class_sizes[labels[q]] - 1 for q in query_rows])  # the query itself is not in the catalogue
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


def gini(counts: np.ndarray) -> float:
    """0 = every item recommended equally often, 1 = one item takes every recommendation."""
    if counts.sum() == 0:
        return 0.0
    ordered = np.sort(counts)
    n = len(ordered)
    return float((2 * np.arange(1, n + 1) - n - 1) @ ordered / (n * ordered.sum()))


def evaluate(
    valid_catalog: Path, model_dir: Path, holdout_fraction: float = 0.2, device: str = "auto", examples: int = 6
) -> Evaluation:
    """Embed the catalogue with the model in model_dir, then score it (the gate's path for the production model)."""
    table = read_table(valid_catalog).reset_index(drop=True)
    vectors, _ = encode_table(table, model_dir, device)
    return evaluate_vectors(table, vectors, holdout_fraction, examples)


def evaluate_embeddings(
    valid_catalog: Path, embeddings: Path, model_version: str, holdout_fraction: float = 0.2, examples: int = 6
) -> Evaluation:
    """Score the vectors the embed stage already wrote for this model: no second pass over the catalogue."""
    table = read_table(valid_catalog).reset_index(drop=True)
    embedded, vectors = read_embeddings(embeddings)
    versions = set(embedded["model_version"].astype(str))
    if versions != {model_version}:
        raise ValueError(f"embeddings come from model(s) {sorted(versions)}, not {model_version}")
    rows = pd.Index(embedded[FEAST_JOIN_KEY]).get_indexer(table["id"])
    if (rows < 0).any():
        raise ValueError(f"{int((rows < 0).sum())} catalogue items have no embedding")
    return evaluate_vectors(table, vectors[rows], holdout_fraction, examples)


def evaluate_vectors(table: pd.DataFrame, vectors: np.ndarray, holdout_fraction: float = 0.2, examples: int = 6) -> Evaluation:
    """Metrics, confusion matrix and report examples for catalogue ``table`` with ``vectors`` in the same row order."""
    labels = table[LABEL_COLUMN].astype(str).to_numpy()
    query_rows = np.flatnonzero(is_holdout(table["id"], holdout_fraction))
    if len(query_rows) == 0:
        raise ValueError("no held-out items: the catalogue is too small for this holdout fraction")
    max_k = min(max(K_VALUES), len(table) - 1)
    similarities = vectors[query_rows] @ vectors.T
    similarities[np.arange(len(query_rows)), query_rows] = -np.inf  # the query is not its own neighbour
    neighbour_ids = np.argsort(-similarities, axis=1)[:, :max_k]
    metrics = retrieval_metrics(labels, neighbour_ids, query_rows, tuple(k for k in K_VALUES if k <= max_k))
    classes = sorted(set(labels))
    index_of = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    for q, first in zip(query_rows, neighbour_ids[:, 0], strict=True):
        confusion[index_of[labels[q]], index_of[labels[first]]] += 1
    metrics["nearest_neighbour_accuracy"] = float(np.trace(confusion) / confusion.sum())
    metrics["queries"] = float(len(query_rows))
    ids = [int(i) for i in table["id"]]
    images = [bytes(b) for b in table["image"]]
    example_rows = []
    for position in np.linspace(0, len(query_rows) - 1, num=min(examples, len(query_rows))).astype(int).tolist():
        row = int(query_rows[position])
        neighbours = [(ids[n], str(labels[n]), images[n], float(similarities[position, n])) for n in neighbour_ids[position, :5]]
        example_rows.append(Example(ids[row], str(labels[row]), images[row], neighbours))
    return Evaluation(metrics, confusion.tolist(), classes, example_rows)


def _thumb(data: bytes, border: str = "#ccc") -> str:
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" height="80" style="border:3px solid {border}">'


def render_report(evaluation: Evaluation, card: ModelCard) -> str:
    metric_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in sorted(evaluation.metrics.items()))
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
the query excluded; relevant = same {LABEL_COLUMN}.</p>
<h2>Example queries</h2><p>Green: same {LABEL_COLUMN} as the query; red: different.</p>
<table><tr><th>query</th><th colspan=5>nearest neighbours</th></tr>{"".join(example_rows)}</table>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{metric_rows}</table></body></html>"""


def write_evaluation(evaluation: Evaluation, card: ModelCard, out_dir: Path) -> None:
    """metrics.json (what the gate reads), confusion.json and report.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).write_text(
        json.dumps({"model_version": card.model_version, "dataset_digest": card.dataset_digest, **evaluation.metrics}, indent=2)
    )
    (out_dir / CONFUSION_FILE).write_text(json.dumps({"classes": evaluation.classes, "matrix": evaluation.confusion}))
    (out_dir / REPORT_FILE).write_text(render_report(evaluation, card), encoding="utf-8")
