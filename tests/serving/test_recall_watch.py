"""Recall watched live: sampled searches are re-run exactly off the request path, and the published recall is the
served index's, filters included; the request path never waits for a check."""

import threading

import numpy as np
import pandas as pd

from fashionrec.config import ATTRIBUTE_COLUMNS, FEAST_JOIN_KEY, INDEX_RECALL_TARGET
from fashionrec.retrieval.attributes import ItemAttributes, ItemFilter
from fashionrec.retrieval.index import ItemIndex
from fashionrec.serving.metrics import transformer_metrics
from fashionrec.serving.recall import RecallWatch

COUNT, DIM = 4000, 32


def indexed(kind: str, version: str) -> tuple[ItemIndex, np.ndarray]:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((COUNT, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pd.DataFrame({FEAST_JOIN_KEY: np.arange(COUNT), **{c: ["x"] * COUNT for c in ATTRIBUTE_COLUMNS}})
    table["gender"] = np.where(np.arange(COUNT) % 4 == 0, "Women", "Men")
    return ItemIndex.build(np.arange(COUNT), vectors, version, "d", kind, attributes=ItemAttributes.of_table(table)), vectors


def gauge(name: str, **labels: str) -> float:
    metrics = transformer_metrics()
    return float(getattr(metrics, name).labels(**labels)._value.get())


def test_an_exact_index_has_recall_one_and_a_starved_graph_shows_its_loss() -> None:
    watch = RecallWatch(share=1.0, seed=0)
    flat, vectors = indexed("flat", "recall-flat")
    queries = vectors[:8] + 0.01
    women = ItemFilter({"gender": frozenset({"Women"})})
    _, served = flat.search_filtered(queries, 10, women)
    assert watch.offer(flat, queries, served, women) and watch.check_once() == 1.0
    assert gauge("index_recall", model_version="recall-flat") == 1.0
    # An HNSW graph searched with a beam of 1: its answers miss true neighbours, and the check says by how much.
    graph, _ = indexed("hnsw", "recall-hnsw")
    graph.tune(ef_search=1)
    _, served = graph.search(queries, 10)
    _, truth = graph.exact_search(queries, 10)
    expected = np.mean([len(set(s) & set(t)) / 10 for s, t in zip(served.tolist(), truth.tolist(), strict=True)])
    assert watch.offer(graph, queries, served, ItemFilter())
    recall = watch.check_once()
    assert recall == expected < INDEX_RECALL_TARGET
    assert gauge("index_recall", model_version="recall-hnsw") == expected
    watch.publish_target(graph)
    assert gauge("index_recall_target", model_version="recall-hnsw") == graph.meta.calibration["target_recall"]  # type: ignore[index]


def test_the_request_path_never_waits_one_check_waits_and_the_rest_are_skipped() -> None:
    flat, vectors = indexed("flat", "recall-skip")
    watch = RecallWatch(share=1.0, seed=0)
    _, served = flat.search(vectors[:1], 10)
    skipped = gauge("recall_checks", model_version="recall-skip", outcome="skipped")
    assert watch.offer(flat, vectors[:1], served, ItemFilter())
    assert not watch.offer(flat, vectors[:1], served, ItemFilter())  # one is already waiting
    assert gauge("recall_checks", model_version="recall-skip", outcome="skipped") == skipped + 1
    assert not RecallWatch(share=0.0).offer(flat, vectors[:1], served, ItemFilter())
    assert not watch.offer(flat, vectors[:1], served[:, :5], ItemFilter())  # fewer than 10 searched: nothing to check
    stopping = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stopping,))
    thread.start()
    try:
        for _ in range(100):
            if gauge("recall_checks", model_version="recall-skip", outcome="checked") >= 1:
                break
            stopping.wait(0.05)
    finally:
        stopping.set()
        thread.join(5)
    assert gauge("recall_checks", model_version="recall-skip", outcome="checked") == 1 and not thread.is_alive()
