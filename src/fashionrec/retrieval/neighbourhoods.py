"""Coarse neighbourhoods of an index's positions (k-means cells): where a filtered search looks when the filter passes
many items but few of the query's nearest ones ("another colour than the query": half the catalogue passes, none of
its neighbours do). A graph walk with a selector then wanders through failing nodes and a full scan costs ~60 ms at
1M; the nearest cells that hold passing items hold the true filtered neighbours, and scanning only those is exact
over a few thousand vectors.

An IVF index's own lists are its cells (nothing stored); an HNSW graph gets cells fitted beside it at build time
(``neighbourhoods.npz``). Items added live join their nearest cell, as IVF assigns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.config import NEIGHBOURHOODS_FILE
from fashionrec.retrieval.faiss_kinds import IVF_TRAINING_POINTS_PER_LIST

# Cells scanned per query: the nearest ones that hold a passing item. At 1M generated catalogue-like vectors
# (benchmarks/bench_filters.py) 16 of ~1000 cells for HNSW and of 4000 IVF lists keep recall@10 >= 0.95 for filters
# that pass none of the query's neighbours.
NEIGHBOURHOODS_PROBED = 16
NEIGHBOURHOODS_CANDIDATES_PER_RESULT = 50  # and more cells until they hold this many passing items per result wanted
KMEANS_ITERATIONS = 10  # the cells only need to be compact, not converged


def cells_for(count: int) -> int:
    """~sqrt(n) cells of ~sqrt(n) items (an HNSW index's; k-means on a sample of IVF_TRAINING_POINTS_PER_LIST each)."""
    return max(1, min(int(math.sqrt(count)), count // IVF_TRAINING_POINTS_PER_LIST))


@dataclass
class Neighbourhoods:
    """``centroids`` [cells, d] and ``cell_of`` [positions]: the cell of each index position."""

    centroids: np.ndarray
    cell_of: np.ndarray
    _members: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def fit(cls, vectors: np.ndarray, seed: int = 0) -> Neighbourhoods:
        """Spherical k-means cells over these vectors (a sample trains them; every vector is assigned)."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        cells = cells_for(len(vectors))
        sample_size = min(len(vectors), cells * IVF_TRAINING_POINTS_PER_LIST)
        sample = vectors[np.sort(np.random.default_rng(seed).choice(len(vectors), sample_size, replace=False))]
        kmeans = faiss.Kmeans(
            vectors.shape[1], cells, niter=KMEANS_ITERATIONS, seed=seed, spherical=True,
            max_points_per_centroid=IVF_TRAINING_POINTS_PER_LIST,
        )  # fmt: skip
        kmeans.train(sample)
        centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
        return cls(centroids, _nearest(centroids, vectors))

    @classmethod
    def of_ivf(cls, ivf: Any) -> Neighbourhoods:
        """An IVF index's own lists (it needs its direct map, which holds each position's list)."""
        import faiss

        centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        cell_of = (faiss.vector_to_array(ivf.direct_map.array) >> 32).astype(np.int32)
        return cls(np.ascontiguousarray(centroids, dtype=np.float32), cell_of)

    def __len__(self) -> int:
        return len(self.cell_of)

    def append(self, vectors: np.ndarray) -> None:
        """Positions added at the end (live additions) join their nearest cell."""
        self.cell_of = np.concatenate([self.cell_of, _nearest(self.centroids, vectors)])
        self._members = None

    def candidates(
        self, queries: np.ndarray, live: np.ndarray, wanted: int, probed: int = NEIGHBOURHOODS_PROBED
    ) -> list[np.ndarray]:
        """Per query, the positions where ``live`` is True in the cells nearest it that hold any: at least ``probed``
        such cells, and more until they hold NEIGHBOURHOODS_CANDIDATES_PER_RESULT x ``wanted`` passing items (a
        sparse filter spreads its few items over many cells)."""
        members, bounds = self._sorted()
        passing = live[members]
        running = np.concatenate([[0], np.cumsum(passing, dtype=np.int64)])
        held = running[bounds[1:]] - running[bounds[:-1]]
        holding = np.flatnonzero(held)
        chosen = []
        for query in queries:
            nearest = holding[np.argsort(-(self.centroids[holding] @ query), kind="stable")]
            enough = np.searchsorted(np.cumsum(held[nearest]), NEIGHBOURHOODS_CANDIDATES_PER_RESULT * wanted) + 1
            parts = [
                members[bounds[c] : bounds[c + 1]][passing[bounds[c] : bounds[c + 1]]] for c in nearest[: max(probed, enough)]
            ]
            chosen.append(np.concatenate(parts) if parts else np.empty(0, dtype=np.int64))
        return chosen

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions grouped by cell and each cell's [start, end) in them (rebuilt after an append)."""
        members = self._members
        if members is None:  # concurrent readers may both build it; each builds the same and assigns it whole
            order = np.argsort(self.cell_of, kind="stable")
            bounds = np.searchsorted(self.cell_of[order], np.arange(len(self.centroids) + 1))
            members = self._members = (order, bounds)
        return members

    def save(self, directory: Path) -> None:
        np.savez(directory / NEIGHBOURHOODS_FILE, centroids=self.centroids, cell_of=self.cell_of)

    @classmethod
    def load(cls, directory: Path) -> Neighbourhoods | None:
        """The cells saved beside an index (None where none were: IVF, exact, or an index built before them)."""
        path = directory / NEIGHBOURHOODS_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as saved:
            return cls(saved["centroids"], saved["cell_of"])


def _nearest(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    import faiss

    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(centroids)
    _, cells = quantizer.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return cells[:, 0].astype(np.int32)
