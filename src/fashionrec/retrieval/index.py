"""The FAISS index of catalogue embeddings, with the model_version it was built from.

Catalogue changes go into a loaded index live (``upsert``, ``remove``) while it serves: additions are appended (FAISS
``add_with_ids``, HNSW and IVF included), and removed or replaced entries become tombstones that every search
filters out with an ID selector (HNSW cannot delete in place). A readers-writer lock keeps a change and searches
apart; the next full build starts clean.

The index kind and its search knob are chosen by measurement on the catalogue's own embeddings
(``choose_calibrated``: the fastest that reaches the recall target; exact search for small catalogues); the choice,
its parameters and the measurement are written to index.json next to the index and applied again on load, so a
served index searches the way it was measured.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from fashionrec.config import FEAST_JOIN_KEY, INDEX_FILE, INDEX_META_FILE, INDEX_RECALL_TARGET
from fashionrec.retrieval.attributes import ItemAttributes, ItemFilter
from fashionrec.retrieval.calibration import EXACT_BELOW, Calibration, calibrate
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.retrieval.faiss_kinds import (
    FAISS_CLASS,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    IVF_TRAINING_POINTS_PER_LIST,
    IndexKind,
    IndexSpec,
    apply_search_params,
    ivf_lists_for,
    new_index,
    search_params,
)
from fashionrec.retrieval.neighbourhoods import Neighbourhoods

INDEX_KINDS: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf")
# Exact search scans every vector: ~20 ms per query at 200k x 256 on 2 cores (benchmarks/bench_index.py), ~2 ms at 20k.
EXACT_SEARCH_LIMIT = 100_000
# An HNSW graph costs ~2*M ids per item on top of the vectors and builds at ~3.5k items/s per core; past this IVF
# (k-means on a sample, then one assignment per item) is the better trade.
HNSW_LIMIT = 2_000_000
HNSW_EF_SEARCH = 64  # query-time beam: recall@10 >= 0.99 on the benchmark's clustered data
IVF_PROBE_FRACTION = 1 / 32  # lists searched per query, as a share of all lists
CALIBRATION_MIN_ITEMS = 50  # a forced approximate index on fewer items keeps the default knobs: nothing to measure
# Filtered search: below this many passing items the search is exact over them (a scan of that many vectors costs
# less than a graph walk that skips almost every node); above it, the approximate index searches with a selector and
# its knob raised as the share of the query's neighbours that pass falls (HNSW's beam, IVF's lists), up to
# FILTER_DEPTH_LIMIT times the knob; when fewer than 1/FILTER_DEPTH_LIMIT of them pass, an exact search over the
# passing items of the nearest cells that hold any (fashionrec.retrieval.neighbourhoods).
FILTER_EXACT_ITEMS = 15_000  # exact p50 3.4 ms at 15k passing of 1M, 5.9 ms at 20k (benchmarks/bench_filters.py)
FILTER_DEPTH_LIMIT = 64
FILTER_PROBE_ITEMS = 64  # unfiltered neighbours whose passing share sets how much deeper the filtered search goes


def choose_index_spec(count: int, kind: str = "auto") -> IndexSpec:
    """The index for ``count`` items: ``auto`` picks by size; ``flat``, ``hnsw`` or ``ivf`` force one."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
    if count < 1:
        raise ValueError("an index needs at least one item")
    if kind == "auto":
        kind = "flat" if count <= EXACT_SEARCH_LIMIT else "hnsw" if count <= HNSW_LIMIT else "ivf"
    if kind == "hnsw":
        return IndexSpec("hnsw", {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH})
    if kind == "ivf":
        # ~4 sqrt(n) lists is FAISS's rule of thumb; never more lists than k-means can train from the items at hand.
        nlist = max(1, min(ivf_lists_for(count), count // IVF_TRAINING_POINTS_PER_LIST))
        return IndexSpec("ivf", {"nlist": nlist, "nprobe": max(1, math.ceil(nlist * IVF_PROBE_FRACTION))})
    return IndexSpec("flat")


def choose_calibrated(
    vectors: np.ndarray, kind: str = "auto", recall_target: float = INDEX_RECALL_TARGET, seed: int = 0
) -> tuple[IndexSpec, Calibration | None]:
    """The index to build, measured on these vectors (fashionrec.retrieval.calibration): ``auto`` takes the fastest of
    HNSW, IVF and exact search that reaches ``recall_target`` (recall@10 against exact search), exact below
    EXACT_BELOW items; a forced ``hnsw`` or ``ivf`` gets the smallest search knob that reaches it; ``flat`` is exact."""
    count = len(vectors)
    default = choose_index_spec(count, kind)
    if kind == "flat" or (kind == "auto" and count < EXACT_BELOW) or count < CALIBRATION_MIN_ITEMS:
        return (IndexSpec("flat") if kind == "auto" else default), None
    kinds = (kind,) if kind != "auto" else ("hnsw", "ivf", "flat") if count <= HNSW_LIMIT else ("ivf", "flat")
    calibration = calibrate(vectors, kinds, recall_target, seed=seed)
    return IndexSpec(cast(IndexKind, calibration.chosen.kind), dict(calibration.chosen.params)), calibration


@dataclass(frozen=True)
class IndexMeta:
    model_version: str
    dataset_digest: str
    dimension: int
    count: int
    index_type: str  # inner product on L2-normalised vectors = cosine similarity
    index_kind: IndexKind = "flat"  # indexes written before the kind was recorded are exact
    index_params: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # what was measured to choose kind and params (None: chosen by size)
    filter_exact_items: int = FILTER_EXACT_ITEMS  # filtered search is exact when at most this many items pass

    @property
    def spec(self) -> IndexSpec:
        return IndexSpec(self.index_kind, dict(self.index_params))

    @classmethod
    def load(cls, directory: Path) -> IndexMeta:
        """The index.json of an index folder, without loading the index."""
        return cls(**json.loads((directory / INDEX_META_FILE).read_text(encoding="utf-8")))


class ReadWriteLock:
    """Many searches at once, or one change: FAISS indexes are safe for concurrent searches, not for a search
    during an add. A waiting change goes before new searches, so a steady stream of queries cannot starve it."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writing and self._writers_waiting == 0)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            self._condition.wait_for(lambda: not self._writing and self._readers == 0)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


class ItemIndex:
    """Inner-product search over L2-normalised embeddings, keyed by catalogue item id."""

    def __init__(
        self,
        index: object,
        meta: IndexMeta,
        attributes: ItemAttributes | None = None,
        neighbourhoods: Neighbourhoods | None = None,
    ) -> None:
        self.index = index
        self.meta = meta
        if attributes is not None and len(attributes) != int(index.ntotal):  # type: ignore[attr-defined]
            raise ValueError(f"attributes of {len(attributes)} items for an index of {index.ntotal}")  # type: ignore[attr-defined]
        self.attributes = attributes  # per position, for filters, families and re-ranking (older indexes: none)
        self._lock = ReadWriteLock()
        self._dead = np.empty(0, dtype=np.int64)  # tombstoned positions inside the index
        self._search_params: Any = None  # FAISS search parameters that skip the tombstones (None: there are none)
        self._ids_at: np.ndarray | None = None  # catalogue id at each position, kept once the index changes
        self._removed: set[int] = set()  # catalogue ids removed live (FAISS's id map still points at their vectors)
        if meta.index_kind == "ivf":  # IVF looks a vector up by position only through a direct map (8 bytes/item)
            import faiss

            ivf: Any = faiss.downcast_index(cast(faiss.IndexIDMap2, index).index)
            ivf.make_direct_map(True)
            neighbourhoods = Neighbourhoods.of_ivf(ivf)  # its own lists
        if neighbourhoods is not None and len(neighbourhoods) != int(index.ntotal):  # type: ignore[attr-defined]
            raise ValueError(f"neighbourhoods of {len(neighbourhoods)} items for an index of {index.ntotal}")  # type: ignore[attr-defined]
        self.neighbourhoods = neighbourhoods  # cells a filtered search scans when few of a query's neighbours pass

    @property
    def count(self) -> int:
        """Items it answers with now (changes included)."""
        return int(self.index.ntotal) - len(self._dead)  # type: ignore[attr-defined]

    def _positions(self) -> np.ndarray:
        """Catalogue id at each position of the index (FAISS's id map; copied once, then kept in step)."""
        import faiss

        if self._ids_at is None:
            self._ids_at = faiss.vector_to_array(cast(faiss.IndexIDMap2, self.index).id_map)
        return self._ids_at

    def _live_positions_of(self, item_ids: np.ndarray) -> np.ndarray:
        positions = np.flatnonzero(np.isin(self._positions(), item_ids))
        return np.setdiff1d(positions, self._dead)

    def upsert(self, item_ids: np.ndarray, vectors: np.ndarray, attributes: dict[str, list[Any]] | None = None) -> None:
        """Add these items (an item already in the index is replaced by its new vector), with their attributes
        (columns of values in the order of ``item_ids``; none: they pass no attribute filter)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.meta.dimension) or len(np.unique(ids)) != len(ids):
            raise ValueError(f"need unique ids and [n, {self.meta.dimension}] vectors, got {len(ids)} ids, {list(vectors.shape)}")
        with self._lock.writing():
            self._tombstone(self._live_positions_of(ids))
            self.index.add_with_ids(vectors, ids)  # type: ignore[attr-defined]
            self._ids_at = np.concatenate([self._positions(), ids])
            if self.attributes is not None:
                self.attributes.append(ids.tolist(), attributes)
            if self.neighbourhoods is not None:
                self.neighbourhoods.append(vectors)
            self._removed.difference_update(ids.tolist())

    def remove(self, item_ids: np.ndarray) -> int:
        """Remove these items; returns how many were in the index."""
        with self._lock.writing():
            positions = self._live_positions_of(np.asarray(item_ids, dtype=np.int64))
            self._tombstone(positions)
            self._removed.update(self._positions()[positions].tolist())
        return len(positions)

    def vectors_of(self, item_ids: list[int]) -> list[np.ndarray | None]:
        """The vector the index searches with for each item (None where it holds none): an item query needs no
        store read for items the index has, and gets exactly the model version it is searched against."""
        vectors: list[np.ndarray | None] = []
        with self._lock.reading():
            for item in item_ids:
                if item in self._removed:
                    vectors.append(None)
                    continue
                try:  # IDMap2's reverse map points at the item's latest vector; unknown ids raise
                    vectors.append(self.index.reconstruct(int(item)))  # type: ignore[attr-defined]
                except RuntimeError:
                    vectors.append(None)
        return vectors

    def _tombstone(self, positions: np.ndarray) -> None:
        if len(positions) == 0:
            return

        self._dead = np.union1d(self._dead, positions).astype(np.int64)
        self._filter_tombstones()

    def _filter_tombstones(self) -> None:
        import faiss

        batch = faiss.IDSelectorBatch(self._dead)
        params = search_params(self.meta.spec)
        params.sel = faiss.IDSelectorNot(batch)
        params._keep = (batch, params.sel)  # FAISS's Python objects do not own what they point at
        self._search_params = params

    @classmethod
    def build(
        cls,
        item_ids: np.ndarray,
        vectors: np.ndarray,
        model_version: str,
        dataset_digest: str,
        kind: str = "auto",
        seed: int = 0,
        recall_target: float = INDEX_RECALL_TARGET,
        attributes: ItemAttributes | None = None,
    ) -> ItemIndex:
        if vectors.ndim != 2 or len(vectors) != len(item_ids):
            raise ValueError(f"vectors {vectors.shape} do not match {len(item_ids)} item ids")
        if len(np.unique(item_ids)) != len(item_ids):
            raise ValueError("item ids must be unique")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        spec, calibration = choose_calibrated(vectors, kind, recall_target, seed)
        index = new_index(spec, int(vectors.shape[1]), vectors, seed)
        index.add_with_ids(vectors, np.asarray(item_ids, dtype=np.int64))  # type: ignore[attr-defined]
        neighbourhoods = Neighbourhoods.fit(vectors, seed) if spec.kind == "hnsw" else None  # IVF: its lists
        meta = IndexMeta(
            model_version,
            dataset_digest,
            int(vectors.shape[1]),
            len(item_ids),
            spec.description,
            spec.kind,
            spec.params,
            calibration.as_dict() if calibration else None,
        )
        return cls(index, meta, attributes, neighbourhoods)

    def tune(self, **search_params: int) -> None:
        """Change query-time parameters (``ef_search`` for HNSW, ``nprobe`` for IVF) in place; ``save`` records them."""
        unknown = set(search_params) - {"ef_search", "nprobe"} or set(search_params) - set(self.meta.index_params)
        if unknown:
            raise ValueError(f"a {self.meta.index_kind} index has no search parameter(s) {sorted(unknown)}")
        import faiss

        self.meta = replace(self.meta, index_params={**self.meta.index_params, **search_params})
        apply_search_params(cast(faiss.IndexIDMap2, self.index).index, self.meta.spec)
        if len(self._dead):
            self._filter_tombstones()  # the tombstone filter carries the search knobs too

    def item_ids(self, limit: int | None = None) -> np.ndarray:
        """The catalogue ids the index holds, in insertion order (the first ``limit`` of them)."""
        import faiss

        ids = faiss.vector_to_array(cast(faiss.IndexIDMap2, self.index).id_map)
        return ids if limit is None else ids[:limit]

    def _checked(self, queries: np.ndarray) -> np.ndarray:
        if queries.ndim != 2 or queries.shape[1] != self.meta.dimension:
            raise ValueError(f"queries must be [n, {self.meta.dimension}], got {list(queries.shape)}")
        return np.ascontiguousarray(queries, dtype=np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [n, k], item ids [n, k]); ids are -1 where the catalogue has fewer than k items."""
        queries = self._checked(queries)
        with self._lock.reading():
            if self._search_params is None:
                scores, ids = self.index.search(queries, k)  # type: ignore[attr-defined]
                return scores, ids
            # Tombstones: search the wrapped index with positions filtered, then map positions to catalogue ids.
            scores, positions = self._inner().search(queries, k, params=self._search_params)
            return scores, self._ids_at_positions(positions)

    def _inner(self) -> Any:
        """The index inside the id map, searched by position (with selectors) and holding the vectors."""
        import faiss

        return faiss.downcast_index(cast(faiss.IndexIDMap2, self.index).index)

    def _ids_at_positions(self, positions: np.ndarray) -> np.ndarray:
        """Catalogue ids of search results given as positions (-1 stays -1)."""
        return np.where(positions >= 0, self._positions()[np.maximum(positions, 0)], -1)

    def _live(self, passing: np.ndarray) -> np.ndarray:
        """``passing`` without the tombstones (a copy)."""
        live = passing.copy()
        live[self._dead] = False
        return live

    def positions_of(self, item_ids: np.ndarray) -> np.ndarray:
        """A mask over the index's positions: True where the position holds one of ``item_ids`` (live or not: a
        search also drops tombstones). What a filter that names items (``exclude_ids``) starts from."""
        return np.isin(self._positions(), np.asarray(item_ids, dtype=np.int64))

    def search_filtered(self, queries: np.ndarray, k: int, item_filter: ItemFilter) -> tuple[np.ndarray, np.ndarray]:
        """``search`` among the items ``item_filter`` passes (``search_passing``'s strategy, its exact threshold the
        index's own). ValueError when the filter restricts attributes and this index was built without them."""
        queries = self._checked(queries)
        with self._lock.reading():
            return self._search_passing(queries, k, self._passing(item_filter), self.meta.filter_exact_items)

    def exact_search(self, queries: np.ndarray, k: int, item_filter: ItemFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The true top ``k`` among the live items the filter passes (a full scan): what the served search's recall is
        measured against."""
        queries = self._checked(queries)
        with self._lock.reading():
            selector = _bitmap_selector(self._live(self._passing(item_filter or ItemFilter())))
            scores, positions = _scan(self._inner(), self.meta.spec, queries, k, selector)
            return scores, self._ids_at_positions(positions)

    def _passing(self, item_filter: ItemFilter) -> np.ndarray:
        """The filter as a mask over positions (the read lock held)."""
        total: int = self.index.ntotal  # type: ignore[attr-defined]
        passing: np.ndarray = np.ones(total, dtype=np.bool_)
        if item_filter.restricts_attributes:
            if self.attributes is None:
                raise ValueError("this index was built without item attributes: rebuild it to filter by them")
            passing = self.attributes.passing(item_filter)
        if item_filter.exclude_ids:
            passing = passing & ~self.positions_of(np.fromiter(item_filter.exclude_ids, dtype=np.int64))
        return passing

    def search_passing(
        self, queries: np.ndarray, k: int, passing: np.ndarray, exact_items: int = FILTER_EXACT_ITEMS
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` among the positions where ``passing`` (a bool mask over positions, as ``positions_of`` gives)
        is True: never an item that fails it. Exact over the passing items when at most ``exact_items`` pass;
        otherwise the index's own search with an ID selector, its knob raised by the inverse of the share of the
        query's unfiltered neighbours that pass (capped), so that a restrictive filter still finds k neighbours; when
        (almost) none of them pass, exact over the passing items of the nearest cells that hold any. -1 ids past the
        passing items."""
        queries = self._checked(queries)
        with self._lock.reading():
            return self._search_passing(queries, k, passing, exact_items)

    def _search_passing(
        self, queries: np.ndarray, k: int, passing: np.ndarray, exact_items: int
    ) -> tuple[np.ndarray, np.ndarray]:
        live = self._live(self._checked_mask(passing))
        inner = self._inner()
        strategy, share = self._strategy(queries, live, exact_items)
        if strategy == "exact":
            scores, positions = _exact_among(inner, queries, k, np.flatnonzero(live))
        elif strategy == "cells":
            assert self.neighbourhoods is not None
            found = [
                _exact_among(inner, q[None], k, c)
                for q, c in zip(queries, self.neighbourhoods.candidates(queries, live, k), strict=True)
            ]
            scores, positions = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
        elif strategy == "scan":
            scores, positions = _scan(inner, self.meta.spec, queries, k, _bitmap_selector(live))
        else:
            params = _raised(search_params(self.meta.spec), self.meta.spec, share)
            params.sel = _bitmap_selector(live)
            scores, positions = inner.search(queries, k, params=params)
        return scores, self._ids_at_positions(positions)

    def _checked_mask(self, passing: np.ndarray) -> np.ndarray:
        total = int(self.index.ntotal)  # type: ignore[attr-defined]
        if passing.shape != (total,) or passing.dtype != np.bool_:
            raise ValueError(f"passing must be a bool mask over the index's {total} positions, got {passing.shape}")
        return passing

    def filter_strategy(self, queries: np.ndarray, passing: np.ndarray, exact_items: int = FILTER_EXACT_ITEMS) -> str:
        """Which way ``search_passing`` answers these queries: exact, cells, scan or selector (for benchmarks)."""
        queries = self._checked(queries)
        with self._lock.reading():
            return self._strategy(queries, self._live(self._checked_mask(passing)), exact_items)[0]

    def _strategy(self, queries: np.ndarray, live: np.ndarray, exact_items: int) -> tuple[str, float]:
        """(strategy, share of the queries' unfiltered neighbours that pass: the least of the batch)."""
        if np.count_nonzero(live) <= exact_items:
            return "exact", 0.0
        if self.meta.index_kind == "flat":  # a flat index's search is a scan: exact with the selector
            return "scan", 1.0
        # The share that matters is the share of the query's own neighbourhood that passes, not the catalogue's: a
        # filter correlated with the vectors ("another colour") can pass half the catalogue and none of the query's
        # neighbours. Measured on the unfiltered nearest FILTER_PROBE_ITEMS; (almost) none passing: exact over the
        # passing items of the nearest cells holding any (a full scan for an index without cells).
        probe_params = self._search_params if self._search_params is not None else search_params(self.meta.spec)
        _, probe = self._inner().search(queries, FILTER_PROBE_ITEMS, params=probe_params)
        near = np.where(probe >= 0, live[np.maximum(probe, 0)], False)
        share = float(near.mean(axis=1).min()) if len(near) else 1.0
        if share * FILTER_DEPTH_LIMIT >= 1.0:
            return "selector", share
        return ("cells" if self.neighbourhoods is not None else "scan"), share

    def save(self, directory: Path) -> None:
        import faiss

        if len(self._dead) or self.index.ntotal != self.meta.count:  # type: ignore[attr-defined]
            raise ValueError("an index changed live is not saved (its tombstones live in memory): build a new one")

        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))  # type: ignore[call-overload]
        (directory / INDEX_META_FILE).write_text(json.dumps(asdict(self.meta), indent=2), encoding="utf-8")
        if self.attributes is not None:
            self.attributes.save(directory)
        if self.neighbourhoods is not None and self.meta.index_kind == "hnsw":  # IVF's are its lists
            self.neighbourhoods.save(directory)

    @classmethod
    def load(cls, directory: Path) -> ItemIndex:
        import faiss

        meta = IndexMeta.load(directory)
        index = faiss.read_index(str(directory / INDEX_FILE))
        if index.ntotal != meta.count or index.d != meta.dimension:
            raise ValueError(f"{directory}: index holds {index.ntotal}x{index.d}, metadata says {meta.count}x{meta.dimension}")
        inner = faiss.downcast_index(cast(faiss.IndexIDMap2, faiss.downcast_index(index)).index)
        if type(inner).__name__ != FAISS_CLASS.get(meta.index_kind):
            raise ValueError(f"{directory}: index.json says {meta.index_kind!r}, the index is a {type(inner).__name__}")
        apply_search_params(inner, meta.spec)
        neighbourhoods = Neighbourhoods.load(directory) if meta.index_kind == "hnsw" else None
        return cls(index, meta, ItemAttributes.load(directory), neighbourhoods)


def _exact_among(inner: Any, queries: np.ndarray, k: int, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product top ``k`` over the vectors at positions ``chosen`` (scores, positions; -1 past them)."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    positions = np.full((len(queries), k), -1, dtype=np.int64)
    if len(chosen) == 0:
        return scores, positions
    vectors = inner.reconstruct_batch(chosen)
    similarity = queries @ vectors.T
    top = min(k, len(chosen))
    best = np.argpartition(-similarity, top - 1, axis=1)[:, :top]
    order = np.take_along_axis(-similarity, best, axis=1).argsort(axis=1, kind="stable")
    best = np.take_along_axis(best, order, axis=1)
    scores[:, :top] = np.take_along_axis(similarity, best, axis=1)
    positions[:, :top] = chosen[best]
    return scores, positions


def _bitmap_selector(live: np.ndarray) -> Any:
    """A FAISS selector passing the positions where ``live`` is True; it holds its bitmap (FAISS does not)."""
    import faiss

    bits = np.packbits(live, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bits))
    selector._bits = bits  # type: ignore[attr-defined]  # FAISS's Python objects do not own what they point at
    return selector


def _scan(inner: Any, spec: IndexSpec, queries: np.ndarray, k: int, selector: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exact search over every vector the selector passes: HNSW's flat storage, every IVF list, or the flat index."""
    import faiss

    params: Any = faiss.SearchParametersIVF() if spec.kind == "ivf" else faiss.SearchParameters()
    params.sel = selector
    if spec.kind == "ivf":
        params.nprobe = spec.params["nlist"]
    searched = faiss.downcast_index(inner.storage) if spec.kind == "hnsw" else inner
    scores, positions = searched.search(queries, k, params=params)
    return scores, positions


def _raised(params: Any, spec: IndexSpec, share: float) -> Any:
    """Search parameters with the knob raised by 1/share (at most FILTER_DEPTH_LIMIT times): with a selector, a
    graph walk or a list scan keeps only the passing share of what it visits."""
    factor = min(FILTER_DEPTH_LIMIT, max(1.0, 1.0 / share))
    if spec.kind == "hnsw":
        params.efSearch = math.ceil(spec.params["ef_search"] * factor)
    elif spec.kind == "ivf":
        params.nprobe = min(spec.params["nlist"], math.ceil(spec.params["nprobe"] * factor))
    return params


def build_index(embeddings: Path, out_dir: Path, kind: str = "auto", recall_target: float = INDEX_RECALL_TARGET) -> IndexMeta:
    """Index the embeddings parquet into ``out_dir``; ``kind`` and ``recall_target`` as in :func:`choose_calibrated`."""
    table, vectors = read_embeddings(embeddings)
    versions = table["model_version"].unique()
    if len(versions) != 1:
        raise ValueError(f"embeddings come from {len(versions)} model versions {list(versions)}; an index holds one")
    index = ItemIndex.build(
        table[FEAST_JOIN_KEY].to_numpy(),
        vectors,
        str(versions[0]),
        str(table["dataset_digest"].iloc[0]),
        kind,
        recall_target=recall_target,
        attributes=ItemAttributes.of_table(table),
    )
    index.save(out_dir)
    return index.meta
