"""Index choice from measurement: on the catalogue's own embeddings, the fastest index and search parameters whose
recall@k against exact search reaches the target.

A sample of items is held out of the index as queries (a query is never its own answer, as a shopper's photo is
not in the catalogue); exact search over the rest is the truth. Each candidate kind is built once on the rest, its
query-time knob (HNSW efSearch, IVF nprobe) swept upwards until the recall target is met, and the latency of one
query at a time (how the transformer searches) measured there; the winner is then built on every item. Small
catalogues stay exact: a scan of them costs less than anything saves.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fashionrec.config import INDEX_RECALL_K, INDEX_RECALL_TARGET
from fashionrec.retrieval.faiss_kinds import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    IndexSpec,
    apply_search_params,
    ivf_lists_for,
    new_index,
)

EXACT_BELOW = 10_000  # items; below this an exact scan answers in well under a millisecond on 2 cores
CALIBRATION_QUERIES = 1_000  # held-out items used as queries
LATENCY_QUERIES = 200  # of those, timed one at a time
HNSW_EF_SWEEP = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
IVF_PROBE_SWEEP = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


@dataclass(frozen=True)
class Candidate:
    kind: str
    params: dict[str, int]
    recall: float  # recall@k against exact search on the held-out queries
    p50_ms: float  # one query at a time
    p99_ms: float
    build_seconds: float
    meets_target: bool


@dataclass(frozen=True)
class Calibration:
    target_recall: float
    k: int
    queries: int
    chosen: Candidate
    candidates: list[Candidate]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true k nearest that were found (ids; -1 never matches)."""
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size if truth.size else 1.0


def _latency_ms(search: object, queries: np.ndarray, k: int) -> tuple[float, float]:
    timings = []
    for query in queries[:LATENCY_QUERIES]:
        started = time.perf_counter()
        search(query[None, :], k)  # type: ignore[operator]
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 99))


def calibrate(
    vectors: np.ndarray,
    kinds: tuple[str, ...] = ("hnsw", "ivf", "flat"),
    target_recall: float = INDEX_RECALL_TARGET,
    k: int = INDEX_RECALL_K,
    seed: int = 0,
) -> Calibration:
    """Measure ``kinds`` on ``vectors`` (L2-normalised) and choose: the fastest (p50) that meets ``target_recall``,
    else the one with the best recall. ``calibration.chosen`` has the kind and the parameters to build with."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(len(vectors), size=min(CALIBRATION_QUERIES, max(1, len(vectors) // 10)), replace=False))
    rest = np.setdiff1d(np.arange(len(vectors)), held)
    queries, base = vectors[held], vectors[rest]
    k = min(k, len(base))
    exact = faiss.IndexFlatIP(base.shape[1])
    exact.add(base)
    _, truth = exact.search(queries, k)
    candidates: list[Candidate] = []
    for kind in kinds:
        started = time.perf_counter()
        if kind == "flat":
            index: object = exact
            sweep: list[dict[str, int]] = [{}]
        else:
            spec = (
                IndexSpec(
                    "hnsw",
                    {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SWEEP[0]},
                )
                if kind == "hnsw"
                else IndexSpec("ivf", {"nlist": min(ivf_lists_for(len(base)), max(1, len(base) // 39)), "nprobe": 1})
            )
            index = new_index(spec, base.shape[1], base, seed, with_ids=False)
            index.add(base)  # type: ignore[attr-defined]
            knob = "ef_search" if kind == "hnsw" else "nprobe"
            values = HNSW_EF_SWEEP if kind == "hnsw" else [p for p in IVF_PROBE_SWEEP if p <= spec.params["nlist"]]
            sweep = [{**spec.params, knob: v} for v in values]
        build_seconds = time.perf_counter() - started
        best: Candidate | None = None
        for params in sweep:
            apply_search_params(index, IndexSpec(kind, params))  # type: ignore[arg-type]
            _, found = index.search(queries, k)  # type: ignore[attr-defined]
            recall = recall_at_k(found, truth)
            if recall >= target_recall or params is sweep[-1]:
                p50, p99 = _latency_ms(index.search, queries, k)  # type: ignore[attr-defined]
                best = Candidate(kind, params, recall, p50, p99, build_seconds, recall >= target_recall)
                break
        assert best is not None
        candidates.append(best)
    passing = [c for c in candidates if c.meets_target] or [max(candidates, key=lambda c: c.recall)]
    return Calibration(target_recall, k, len(held), min(passing, key=lambda c: c.p50_ms), candidates)
