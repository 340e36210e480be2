"""Attribute-filtered vector search at 1M items (issue 31): recall@10 against exact filtered search, single-query
latency and the strategy that answered, for ``ItemIndex.search_passing`` as served, per index kind, selectivity and
kind of filter; and for the strategy it did not choose, so the crossover that sets FILTER_EXACT_ITEMS is visible.

    python benchmarks/bench_filters.py --embeddings work/quality/filters/embeddings.parquet [--items 1000000]

The vectors: ``--embeddings`` is an embeddings parquet of a real catalogue (the embed stage's output). The 1M items
and held-out queries are drawn from ``FittedGenerator.fit`` on them (as benchmarks/bench_million.py does), keeping
the region each vector was drawn from. Two kinds of attribute on the generated items:

* independent of the vectors: an integer uniform in [0, 10000), the filter ``value < s * 10000``;
* correlated with them: a "band", the item's rank in an order that follows the vectors (the generator's regions
  ordered along the main direction of their centres, items inside a region along its main axis of spread). A
  filter passes a window of ``s * items`` consecutive ranks: ``same`` centred on the query's own rank (it passes
  most of the query's neighbours, like "same category as the query"), ``other`` half the ring away (it passes
  almost none of them, like "a category unlike the query").

The real embeddings are benchmarked too at their own size, with their own attributes (gender, masterCategory,
subCategory, articleType, baseColour, usage): ``real-same`` keeps the query item's own value of the attribute whose
share is nearest the selectivity, ``real-other`` the value nearest it that the query does not have; plus the
independent attribute. Queries are held out of the index (a query is never its own answer).

Each index is built once per kind as the index step serves it (``choose_index_spec``'s build parameters; the search
knob, HNSW efSearch or IVF nprobe, is the first of the calibration sweep reaching INDEX_RECALL_TARGET unfiltered) and
reused for every cell. Per cell: recall@10 against brute force over the passing vectors (ties counted as hits),
p50/p99 of one query per call with one FAISS and one BLAS thread (as the transformer searches; building the mask is
not timed), and which strategy answered. Rows: ``default`` (exact_items=FILTER_EXACT_ITEMS), the strategy it did
not take (``selector``: exact_items=0, which answers by the selector or the cells; ``exact``: exact_items above the
catalogue size), and strategies it does not have (``direct_search``): ``scan``, an exhaustive FAISS scan that skips
failing items through the bitmap (what answered before the cells); ``deep``, the selector with the knob at its cap
whatever the share. "answered by" is ``ItemIndex.filter_strategy`` per query: exact, selector (the knob raised by the
share of the query's unfiltered neighbours that pass), cells (exact over the passing items of the nearest cells
that hold any, when almost none of those neighbours pass). Query counts stop at ``--row-seconds`` per row (never
under ``--min-queries``). Prints a table and writes benchmarks/results/filters.json.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fashionrec.config import FEAST_JOIN_KEY, INDEX_RECALL_TARGET
from fashionrec.retrieval.calibration import HNSW_EF_SWEEP, IVF_PROBE_SWEEP
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.retrieval.faiss_kinds import IndexSpec, apply_search_params, new_index, search_params
from fashionrec.retrieval.generated import FittedGenerator, similarity_profile
from fashionrec.retrieval.index import FILTER_DEPTH_LIMIT, FILTER_EXACT_ITEMS, IndexMeta, ItemIndex, choose_index_spec
from fashionrec.retrieval.neighbourhoods import NEIGHBOURHOODS_CANDIDATES_PER_RESULT, NEIGHBOURHOODS_PROBED, Neighbourhoods

RESULTS = Path(__file__).resolve().parent / "results"
K = 10
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001, 0.0001)
UNIFORM_VALUES = 10_000  # the independent attribute: an integer uniform in [0, UNIFORM_VALUES)
REAL_COLUMNS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "usage")
TARGET_RECALL, TARGET_P50_MS = 0.95, 5.0  # issue 31, at 1M items
TIE = 1e-5  # a found item scoring within this of the k-th true one counts as a hit (duplicates tie exactly)
CHUNK = 65_536
DIRECT_MODES = ("scan", "deep")  # strategies tried beside search_passing's (see direct_search)


def blas_threads(count: int) -> bool:
    """Set numpy's OpenBLAS thread count (the served process runs with OMP_NUM_THREADS=1); False if not found."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in glob.glob(str(libs / "*openblas*.so*")):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                getattr(lib, name)(count)
                return True
    return False


def search_threads(count: int) -> None:
    faiss.omp_set_num_threads(count)
    blas_threads(count)


# --- exact search --------------------------------------------------------------------------------------------------


def merge_top(scores: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` per row of candidate (scores, positions), best first; -inf / -1 pad."""
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        positions = np.pad(positions, ((0, 0), (0, pad)), constant_values=-1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(positions, order, axis=1)


def exact_top(
    queries: np.ndarray, vectors: np.ndarray, k: int, rows: np.ndarray | None = None, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top ``k`` over ``vectors`` (only ``rows`` of it when given), in chunks: (scores,
    positions) where positions are row numbers (plus ``offset``); -inf / -1 past the rows there are."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_p = np.full((len(queries), k), -1, dtype=np.int64)
    total = len(vectors) if rows is None else len(rows)
    for start in range(0, total, CHUNK):
        if rows is None:
            block, positions = vectors[start : start + CHUNK], np.arange(start, min(total, start + CHUNK)) + offset
        else:
            positions = rows[start : start + CHUNK]
            block = vectors[positions]
        sims = queries @ block.T
        take = min(k, sims.shape[1])
        part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        best_s, best_p = merge_top(
            np.concatenate([best_s, np.take_along_axis(sims, part, axis=1)], axis=1),
            np.concatenate([best_p, positions[part]], axis=1),
            k,
        )
    return best_s, best_p


# --- catalogues and filters ----------------------------------------------------------------------------------------


@dataclass
class Catalogue:
    name: str
    vectors: np.ndarray  # [n, dim] by index position
    ids: np.ndarray  # catalogue id at each position
    queries: np.ndarray  # [q, dim], held out of the index
    truth: np.ndarray  # [q, K] positions of the unfiltered exact top K

    def __post_init__(self) -> None:
        self._sorter = np.argsort(self.ids)

    def positions(self, found: np.ndarray) -> np.ndarray:
        """Index positions of catalogue ids (-1 stays -1)."""
        at = np.searchsorted(self.ids, found, sorter=self._sorter)
        at = self._sorter[np.minimum(at, len(self.ids) - 1)]
        return np.where((found >= 0) & (self.ids[at] == found), at, -1)


@dataclass
class Cell:
    """One filter at one selectivity: a passing mask per query, and the exact filtered answer."""

    catalogue: str
    filter: str
    target: float  # the selectivity asked for
    description: str
    mask_of: Callable[[int], np.ndarray]  # query -> bool mask over positions
    passes: Callable[[int, np.ndarray], np.ndarray]  # query, positions -> whether they pass
    counts: np.ndarray  # [q] items passing per query
    truth_scores: np.ndarray  # [q, K]
    truth: np.ndarray  # [q, K] positions, -1 past the passing items
    neighbours_passing: float = 0.0  # mean share of each query's unfiltered top K that the filter passes


@dataclass
class SharedMask:
    """One mask for every query (a filter that does not depend on the query)."""

    mask: np.ndarray

    def mask_of(self, _query: int) -> np.ndarray:
        return self.mask

    def passes(self, _query: int, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.mask[positions])


@dataclass
class QueryMasks:
    """A mask per query, held as a [queries, items] matrix (small catalogues)."""

    masks: np.ndarray

    def mask_of(self, query: int) -> np.ndarray:
        return np.asarray(self.masks[query])

    def passes(self, query: int, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.masks[query][positions])


def neighbour_share(cell: Cell, catalogue: Catalogue) -> float:
    return float(np.mean([cell.passes(i, catalogue.truth[i]).mean() for i in range(len(catalogue.queries))]))


def independent_cells(catalogue: Catalogue, values: np.ndarray, selectivities: list[float], progress: Progress) -> list[Cell]:
    cells = []
    task = progress.add_task(f"exact truth, {catalogue.name} independent", total=len(selectivities))
    for share in selectivities:
        threshold = round(share * UNIFORM_VALUES)
        mask = values < threshold
        rows = np.flatnonzero(mask)
        scores, truth = exact_top(catalogue.queries, catalogue.vectors, K, rows=rows)
        shared = SharedMask(mask)
        counts = np.full(len(catalogue.queries), len(rows))
        cell = Cell(
            catalogue.name, "independent", share, f"value < {threshold}", shared.mask_of, shared.passes, counts, scores, truth
        )
        cell.neighbours_passing = neighbour_share(cell, catalogue)
        cells.append(cell)
        progress.advance(task)
    return cells


def band_ranks(generator: FittedGenerator, vectors: np.ndarray, regions: np.ndarray, items: int) -> np.ndarray:
    """The correlated attribute: each vector's rank among the first ``items`` vectors (the catalogue) in an order
    that follows the vectors: regions along the weighted main direction of their centres, then along the region's
    own main axis of spread. The catalogue's ranks are a permutation of 0..items-1; a query's is where it falls."""
    centres, weights = generator.centres, generator.weights
    spread = (centres - weights @ centres) * np.sqrt(weights)[:, None]
    main = np.linalg.svd(spread, full_matrices=False)[2][0]
    region_rank = np.argsort(np.argsort(centres @ main))
    along = np.empty(len(vectors), dtype=np.float32)
    for region in np.unique(regions):
        members = regions == region
        along[members] = vectors[members] @ generator.axes[region, 0]
    order = np.lexsort((along, region_rank[regions]))
    is_item = order < items
    before: np.ndarray = np.cumsum(is_item) - is_item.astype(np.int64)  # catalogue items ahead of each vector in the order
    ranks = np.empty(len(vectors), dtype=np.int64)
    ranks[order] = before
    return ranks


def band_slices(low: int, width: int, count: int) -> list[tuple[int, int]]:
    """The rank ranges of the circular window [low, low + width) over ``count`` ranks."""
    if low + width <= count:
        return [(low, low + width)]
    return [(low, count), (0, low + width - count)]


def band_cells(
    catalogue: Catalogue, ranks: np.ndarray, query_ranks: np.ndarray, selectivities: list[float], progress: Progress
) -> list[Cell]:
    count = len(ranks)
    at_rank = np.argsort(ranks)  # position of the item at each rank
    by_rank = catalogue.vectors[at_rank]  # the vectors in rank order: a window is one or two slices
    cells = []
    task = progress.add_task(f"exact truth, {catalogue.name} correlated", total=2 * len(selectivities) * len(query_ranks))
    for name, shift in (("correlated-same", 0), ("correlated-other", count // 2)):
        for share in selectivities:
            width = max(1, round(share * count))
            lows = (query_ranks + shift - width // 2) % count

            def mask_of(i: int, lows: np.ndarray = lows, width: int = width) -> np.ndarray:
                mask = np.zeros(count, dtype=bool)
                for a, b in band_slices(int(lows[i]), width, count):
                    mask[at_rank[a:b]] = True
                return mask

            def passes(i: int, positions: np.ndarray, lows: np.ndarray = lows, width: int = width) -> np.ndarray:
                return np.asarray((ranks[positions] - lows[i]) % count < width)

            scores = np.full((len(lows), K), -np.inf, dtype=np.float32)
            truth = np.full((len(lows), K), -1, dtype=np.int64)
            for i, low in enumerate(lows):
                for a, b in band_slices(int(low), width, count):
                    s, p = exact_top(catalogue.queries[i : i + 1], by_rank[a:b], K, offset=a)
                    p = np.where(p >= 0, at_rank[np.maximum(p, 0)], -1)
                    s, p = merge_top(
                        np.concatenate([scores[i : i + 1], s], axis=1), np.concatenate([truth[i : i + 1], p], axis=1), K
                    )
                    scores[i], truth[i] = s[0], p[0]
                progress.advance(task)
            where = "centred on the query's rank" if shift == 0 else "half the ring from the query's rank"
            cell = Cell(catalogue.name, name, share, f"{width:,} consecutive ranks {where}", mask_of, passes,
                        np.full(len(lows), width), scores, truth)  # fmt: skip
            cell.neighbours_passing = neighbour_share(cell, catalogue)
            cells.append(cell)
    return cells


def real_cells(catalogue: Catalogue, base: pd.DataFrame, held: pd.DataFrame, selectivities: list[float]) -> list[Cell]:
    """Filters on the real attributes: the query's own value (``real-same``) or one it lacks (``real-other``) of the
    attribute value whose share of the catalogue is nearest the selectivity (in ratio)."""
    shares = {(c, v): s for c in REAL_COLUMNS for v, s in base[c].value_counts(normalize=True).items()}
    cells = []
    for name in ("real-same", "real-other"):
        for share in selectivities:
            picked: list[tuple[str, Any]] = []
            for i in range(len(held)):
                own = {(c, held[c].iloc[i]) for c in REAL_COLUMNS}
                pool = [p for p in shares if (p in own) == (name == "real-same")]
                picked.append(min(pool, key=lambda p: (abs(math.log(shares[p] / share)), str(p))))
            masks = np.stack([(base[c] == v).to_numpy() for c, v in picked])
            scores = np.full((len(held), K), -np.inf, dtype=np.float32)
            truth = np.full((len(held), K), -1, dtype=np.int64)
            for i in range(len(held)):
                s, p = exact_top(catalogue.queries[i : i + 1], catalogue.vectors, K, rows=np.flatnonzero(masks[i]))
                scores[i], truth[i] = s[0], p[0]
            common = pd.Series([f"{c}={v}" for c, v in picked]).value_counts()
            description = f"{len(common)} values, most often {common.index[0]} ({common.iloc[0]} queries)"
            each = QueryMasks(masks)
            cell = Cell(catalogue.name, name, share, description, each.mask_of, each.passes, masks.sum(axis=1), scores, truth)
            cell.neighbours_passing = neighbour_share(cell, catalogue)
            cells.append(cell)
    return cells


# --- indexes -------------------------------------------------------------------------------------------------------


def recall_of(catalogue: Catalogue, cell: Cell | None, found: list[np.ndarray]) -> tuple[float, int]:
    """(recall@K against the cell's exact answer, items returned that fail the filter), ties counted as hits."""
    hits = total = violations = 0
    for i, ids in enumerate(found):
        truth = catalogue.truth[i] if cell is None else cell.truth[i]
        valid = int((truth >= 0).sum())
        if valid == 0:
            continue
        positions = catalogue.positions(ids)
        positions = positions[positions >= 0]
        if cell is not None:
            passing = cell.passes(i, positions)
            violations += int((~passing).sum())
            positions = positions[passing]
        kth = float(catalogue.queries[i] @ catalogue.vectors[truth[valid - 1]])
        scores = catalogue.vectors[positions] @ catalogue.queries[i]
        hits += min(valid, int((scores >= kth - TIE).sum()))
        total += valid
    return (hits / total if total else 1.0), violations


def build_served(kind: str, catalogue: Catalogue, progress: Progress) -> tuple[ItemIndex, dict[str, Any]]:
    """The index the index step would serve for this kind: its build parameters, and the first search knob of the
    calibration sweep that reaches INDEX_RECALL_TARGET on the held-out queries unfiltered (``ItemIndex.build`` does
    the same through a full calibration, too slow at 1M: it builds every kind)."""
    search_threads(os.cpu_count() or 1)
    vectors = catalogue.vectors
    spec = choose_index_spec(len(vectors), kind)
    task = progress.add_task(f"build {kind} on {len(vectors):,}", total=None)
    started = time.perf_counter()
    index: Any = new_index(spec, vectors.shape[1], vectors, seed=0)
    index.add_with_ids(vectors, catalogue.ids)
    build_s = time.perf_counter() - started
    neighbourhoods = Neighbourhoods.fit(vectors) if kind == "hnsw" else None  # IVF: its own lists
    cells_s = time.perf_counter() - started - build_s
    progress.update(task, total=1, completed=1)
    inner: Any = faiss.downcast_index(index.index)
    knob, values = (
        ("ef_search", HNSW_EF_SWEEP) if kind == "hnsw" else ("nprobe", [p for p in IVF_PROBE_SWEEP if p <= spec.params["nlist"]])
    )
    sweep = []
    for value in values:
        spec = IndexSpec(spec.kind, {**spec.params, knob: value})
        apply_search_params(inner, spec)
        _, found = index.search(catalogue.queries, K)
        recall, _ = recall_of(catalogue, None, list(found))
        sweep.append({knob: value, "recall_at_10": recall})
        if recall >= INDEX_RECALL_TARGET:
            break
    meta = IndexMeta("bench", "bench", vectors.shape[1], len(vectors), spec.description, spec.kind, spec.params)
    served = ItemIndex(index, meta, neighbourhoods=neighbourhoods)
    cells = len(served.neighbourhoods.centroids) if served.neighbourhoods is not None else 0
    return served, {"kind": kind, "params": spec.params, "build_s": build_s, "cells": cells, "cells_s": cells_s, "sweep": sweep}


def direct_search(index: ItemIndex, query: np.ndarray, passing: np.ndarray, mode: str) -> np.ndarray:
    """Positions of the top K passing items by a strategy search_passing does not have (no tombstones here):

    * ``scan``: exact, by an exhaustive FAISS scan that skips failing items through the bitmap, no vector copied
      (HNSW's flat storage; IVF with every list probed);
    * ``deep``: the selector search with the knob at its cap (FILTER_DEPTH_LIMIT times), whatever the share passing.
    """
    inner: Any = faiss.downcast_index(index.index.index)  # type: ignore[attr-defined]
    spec = index.meta.spec
    bits = np.packbits(passing, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(passing), faiss.swig_ptr(bits))
    factor = float(FILTER_DEPTH_LIMIT)
    params = search_params(spec)
    if mode == "scan":
        if spec.kind == "hnsw":
            module: Any = faiss
            return np.asarray(
                faiss.downcast_index(inner.storage).search(query, K, params=module.SearchParameters(sel=selector))[1][0]
            )
        params.nprobe = inner.nlist
    elif spec.kind == "hnsw":
        params.efSearch = math.ceil(spec.params["ef_search"] * factor)
    else:
        params.nprobe = min(spec.params["nlist"], math.ceil(spec.params["nprobe"] * factor))
    params.sel = selector
    return np.asarray(inner.search(query, K, params=params)[1][0])


def timed_rows(
    index: ItemIndex, catalogue: Catalogue, cell: Cell, mode: str, args: argparse.Namespace, progress: Progress
) -> dict[str, Any]:
    """One row: the cell's queries one per call under ``mode``: default, selector, exact (search_passing with
    exact_items at FILTER_EXACT_ITEMS, 0, above the catalogue size), or one of DIRECT_MODES."""
    exact_items = {"default": FILTER_EXACT_ITEMS, "selector": 0, "exact": len(catalogue.vectors) + 1}.get(mode, 0)
    limit = len(catalogue.queries)
    task = progress.add_task(f"{index.meta.index_kind} {cell.filter} {cell.target:g} {mode}", total=limit)
    timings: list[float] = []
    found: list[np.ndarray] = []
    strategies: list[str] = []
    started = time.perf_counter()
    for i in range(limit):
        mask = cell.mask_of(i)
        query = catalogue.queries[i : i + 1]
        before = time.perf_counter()
        if mode in DIRECT_MODES:
            positions = direct_search(index, query, mask, mode)
            ids = np.where(positions >= 0, catalogue.ids[np.maximum(positions, 0)], -1)
        else:
            ids = index.search_passing(query, K, mask, exact_items=exact_items)[1][0]
        timings.append((time.perf_counter() - before) * 1000)
        strategies.append(mode if mode in DIRECT_MODES else index.filter_strategy(query, mask, exact_items))
        found.append(ids)
        progress.advance(task)
        if i + 1 >= args.min_queries and time.perf_counter() - started > args.row_seconds:
            break
    progress.remove_task(task)
    recall, violations = recall_of(catalogue, cell, found)
    counts = cell.counts[: len(found)]
    answered = pd.Series(strategies).value_counts(normalize=True)
    return {
        "catalogue": catalogue.name, "items": len(catalogue.vectors), "kind": index.meta.index_kind,
        "params": index.meta.index_params, "filter": cell.filter, "selectivity": cell.target,
        "description": cell.description, "passing_share": float(counts.mean() / len(catalogue.vectors)),
        "passing_items_p50": float(np.median(counts)), "neighbours_passing": cell.neighbours_passing, "mode": mode,
        "exact_items": None if mode in DIRECT_MODES else exact_items,
        "answered_by": " ".join(str(name) if share == 1 else f"{name} {share:.0%}" for name, share in answered.items()),
        "queries": len(found), "recall_at_10": recall, "violations": violations,
        "p50_ms": float(np.percentile(timings, 50)), "p99_ms": float(np.percentile(timings, 99)),
    }  # fmt: skip


def unfiltered_row(index: ItemIndex, catalogue: Catalogue) -> dict[str, Any]:
    timings: list[float] = []
    found: list[np.ndarray] = []
    for i in range(len(catalogue.queries)):
        before = time.perf_counter()
        found.append(index.search(catalogue.queries[i : i + 1], K)[1][0])
        timings.append((time.perf_counter() - before) * 1000)
    recall, _ = recall_of(catalogue, None, found)
    return {
        "catalogue": catalogue.name, "items": len(catalogue.vectors), "kind": index.meta.index_kind,
        "params": index.meta.index_params, "filter": "none", "selectivity": 1.0, "description": "ItemIndex.search",
        "passing_share": 1.0, "passing_items_p50": float(len(catalogue.vectors)), "neighbours_passing": 1.0,
        "mode": "unfiltered", "exact_items": None, "answered_by": "index", "queries": len(found), "recall_at_10": recall,
        "violations": 0, "p50_ms": float(np.percentile(timings, 50)), "p99_ms": float(np.percentile(timings, 99)),
    }  # fmt: skip


def run_cells(
    index: ItemIndex, catalogue: Catalogue, cells: list[Cell], args: argparse.Namespace, progress: Progress, console: Console
) -> list[dict[str, Any]]:
    search_threads(1)  # as the transformer searches
    rows = [unfiltered_row(index, catalogue)]
    for cell in cells:
        default = timed_rows(index, catalogue, cell, "default", args, progress)
        rows.append(default)
        others = (["selector"] if default["answered_by"] != "selector" else []) + (
            ["exact"] if default["answered_by"] != "exact" else []
        )
        extra = [m for m in args.direct if m != "deep" or default["answered_by"] != "exact"]  # deep: where a selector answers
        for mode in [*others, *extra]:
            rows.append(timed_rows(index, catalogue, cell, mode, args, progress))
        for row in rows[-1 - len(others) - len(extra) :]:
            console.print(
                f"{row['catalogue']} {row['kind']} {row['filter']} {row['selectivity']:g} {row['mode']}: recall {row['recall_at_10']:.3f}"
                f" p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms ({row['answered_by']}, {row['queries']} queries)"
            )
    search_threads(os.cpu_count() or 1)
    return rows


# --- the two catalogues --------------------------------------------------------------------------------------------


def generated_catalogue(
    real: np.ndarray, args: argparse.Namespace, progress: Progress, console: Console
) -> tuple[Catalogue, list[Cell], dict[str, Any]]:
    generator = FittedGenerator.fit(real)
    vectors, regions = generator.sample_with_regions(args.items + args.queries, seed=7, chunk=25_000)
    ranks = band_ranks(generator, vectors, regions, args.items)
    items, queries = vectors[: args.items], vectors[args.items :]
    ids = np.arange(args.items, dtype=np.int64) * 3 + 10_000  # catalogue ids are not positions
    _, truth = exact_top(queries, items, K)
    catalogue = Catalogue(f"generated {args.items:,}", items, ids, queries, truth)
    values = np.random.default_rng(11).integers(0, UNIFORM_VALUES, args.items)
    cells = independent_cells(catalogue, values, [1.0, *args.selectivities], progress)
    cells += band_cells(catalogue, ranks[: args.items], ranks[args.items :], args.selectivities, progress)
    same_region = float(np.mean(regions[: args.items][truth] == regions[args.items :][:, None]))
    fit = {
        "regions": len(generator.weights),
        "region_share_p50": float(np.median(generator.weights)),
        "top10_in_query_region": same_region,
        "real": similarity_profile(real[1000:], real[:1000]),
        "generated_at_real_size": similarity_profile(items[: len(real) - 1000], queries[: min(1000, len(queries))]),
    }
    console.print(f"generated {args.items:,} + {args.queries} queries; {fit}")
    return catalogue, cells, fit


def real_catalogue(path: Path, args: argparse.Namespace, progress: Progress) -> tuple[Catalogue, list[Cell], pd.DataFrame]:
    table, vectors = read_embeddings(path)
    held = np.sort(np.random.default_rng(3).choice(len(vectors), min(args.real_queries, len(vectors) // 10), replace=False))
    rest = np.setdiff1d(np.arange(len(vectors)), held)
    base = table.iloc[rest].reset_index(drop=True)
    ids = base[FEAST_JOIN_KEY].to_numpy().astype(np.int64)
    _, truth = exact_top(vectors[held], vectors[rest], K)
    catalogue = Catalogue(f"real {len(rest):,}", vectors[rest], ids, vectors[held], truth)
    values = np.random.default_rng(11).integers(0, UNIFORM_VALUES, len(rest))
    cells = independent_cells(catalogue, values, args.selectivities, progress)
    cells += real_cells(catalogue, base, table.iloc[held].reset_index(drop=True), args.selectivities)
    return catalogue, cells, table


def meets(row: dict[str, Any]) -> str:
    misses = [m for m, bad in (("recall", row["recall_at_10"] < TARGET_RECALL), ("p50", row["p50_ms"] > TARGET_P50_MS)) if bad]
    return "yes" if not misses else "NO: " + ", ".join(misses)


def report(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("catalogue", "index", "filter", "sel.", "passing", "nbrs pass", "mode", "answered by", "n", "recall@10",
                   "p50 ms", "p99 ms", "target"):  # fmt: skip
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(
            row["catalogue"], f"{row['kind']} {' '.join(f'{k}={v}' for k, v in row['params'].items() if k in ('ef_search', 'nprobe'))}",
            row["filter"], f"{row['selectivity']:.2%}", f"{row['passing_items_p50']:,.0f}", f"{row['neighbours_passing']:.0%}",
            row["mode"], row["answered_by"], str(row["queries"]), f"{row['recall_at_10']:.3f}", f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}", meets(row),
        )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, required=True, help="a real catalogue's embeddings parquet")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300, help="held-out generated queries (at most, per row)")
    parser.add_argument("--real-queries", type=int, default=500, help="held-out real items as queries")
    parser.add_argument("--kinds", nargs="+", default=["hnsw", "ivf"], choices=["hnsw", "ivf"])
    parser.add_argument("--selectivities", nargs="+", type=float, default=list(SELECTIVITIES))
    parser.add_argument("--row-seconds", type=float, default=6.0, help="stop a row's queries after this long")
    parser.add_argument("--min-queries", type=int, default=20)
    parser.add_argument("--direct", nargs="*", default=list(DIRECT_MODES), choices=DIRECT_MODES, help="extra strategies")
    parser.add_argument("--out", type=Path, default=RESULTS / "filters.json")
    args = parser.parse_args()
    console = Console(width=200)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    builds: list[dict[str, Any]] = []
    with Progress(console=console) as progress:
        real, real_cells_, table = real_catalogue(args.embeddings, args, progress)
        generated, generated_cells, fit = generated_catalogue(real.vectors, args, progress, console)
        for catalogue, cells in ((real, real_cells_), (generated, generated_cells)):
            for kind in args.kinds:
                index, build = build_served(kind, catalogue, progress)
                builds.append({"catalogue": catalogue.name, **build})
                console.print(f"{catalogue.name} {kind}: {build}")
                rows += run_cells(index, catalogue, cells, args, progress, console)
                del index
    wall_s = time.perf_counter() - started
    for name in dict.fromkeys(r["catalogue"] for r in rows):
        console.print(report([r for r in rows if r["catalogue"] == name],
                             f"Filtered search, {name} items, top {K}, 1 thread per query ({os.cpu_count()} CPUs, {platform.node()})"))  # fmt: skip
    console.print(f"wall time {wall_s:.0f} s; FILTER_EXACT_ITEMS {FILTER_EXACT_ITEMS:,}, FILTER_DEPTH_LIMIT {FILTER_DEPTH_LIMIT}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "blas_threads_pinned": blas_threads(os.cpu_count() or 1),
        },
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "vectors": f"FittedGenerator on {len(table):,} real embeddings ({args.embeddings.name}); the real ones at their own size",
        "filter_exact_items": FILTER_EXACT_ITEMS,
        "filter_depth_limit": FILTER_DEPTH_LIMIT,
        "neighbourhoods_probed": NEIGHBOURHOODS_PROBED,
        "neighbourhoods_candidates_per_result": NEIGHBOURHOODS_CANDIDATES_PER_RESULT,
        "targets": {"recall_at_10": TARGET_RECALL, "p50_ms": TARGET_P50_MS},
        "fit_check": fit,
        "builds": builds,
        "rows": rows,
        "wall_s": wall_s,
    }
    args.out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
