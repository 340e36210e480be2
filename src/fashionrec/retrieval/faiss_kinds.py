"""FAISS index kinds (exact, HNSW, IVF): what each is built from and the knobs it searches with. Shared by the
served index (``fashionrec.retrieval.index``) and the measurement that chooses it (``fashionrec.retrieval.calibration``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

IndexKind = Literal["flat", "hnsw", "ivf"]
IVF_TRAINING_POINTS_PER_LIST = 50  # k-means sample size per list (FAISS warns below 39)
HNSW_EF_CONSTRUCTION = 100  # build-time beam: recall vs build time
# Graph degree, at every size. At 1M generated catalogue-like vectors (benchmarks/bench_million.py) M 32 reaches
# recall@10 0.99 at efSearch 48 (0.27 ms); M 16 at efSearch 64 (0.24 ms) with 10% less memory.
HNSW_M = 32


def ivf_lists_for(count: int) -> int:
    """~4 sqrt(n) inverted lists: FAISS's rule of thumb (callers cap it by what k-means can train from)."""
    return max(1, int(4 * math.sqrt(count)))


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index to build and the parameters it searches with."""

    kind: IndexKind
    params: dict[str, int] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """A FAISS-factory-like name, for people reading index.json and the KFP UI."""
        if self.kind == "hnsw":
            return f"IDMap2,HNSW{self.params['m']},IP"
        if self.kind == "ivf":
            return f"IDMap2,IVF{self.params['nlist']},FlatIP"
        return "IDMap2,FlatIP"


# What each kind is inside the IDMap2 wrapper, so index.json and items.faiss cannot disagree unnoticed.
FAISS_CLASS = {"flat": "IndexFlatIP", "hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}


def new_index(spec: IndexSpec, dimension: int, vectors: np.ndarray, seed: int, with_ids: bool = True) -> object:
    """An empty FAISS index for ``spec`` (IVF trained on a sample of ``vectors``), wrapped to keep item ids.

    FAISS's Python constructors keep the quantizer and the wrapped index alive with the object that holds them.
    """
    import faiss

    inner: object
    if spec.kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dimension, spec.params["m"], faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = spec.params["ef_construction"]
        inner = hnsw
    elif spec.kind == "ivf":
        quantizer = faiss.IndexFlatIP(dimension)
        ivf = faiss.IndexIVFFlat(quantizer, dimension, spec.params["nlist"], faiss.METRIC_INNER_PRODUCT)
        sample_size = min(len(vectors), spec.params["nlist"] * IVF_TRAINING_POINTS_PER_LIST)
        sample = vectors[np.random.default_rng(seed).choice(len(vectors), sample_size, replace=False)]
        ivf.train(np.ascontiguousarray(sample))
        inner = ivf
    else:
        inner = faiss.IndexFlatIP(dimension)
    apply_search_params(inner, spec)
    return faiss.IndexIDMap2(inner) if with_ids else inner


def search_params(spec: IndexSpec) -> Any:
    """FAISS search parameters equal to the index's own knobs (a selector is added to them)."""
    import faiss

    module: Any = faiss  # its stubs lack the SearchParameters classes
    if spec.kind == "hnsw":
        return module.SearchParametersHNSW(efSearch=spec.params["ef_search"])
    if spec.kind == "ivf":
        return module.SearchParametersIVF(nprobe=spec.params["nprobe"])
    return module.SearchParameters()


def apply_search_params(inner: object, spec: IndexSpec) -> None:
    """Set the query-time knobs from ``spec`` (FAISS keeps some of them only in memory)."""
    import faiss

    index: Any = faiss.downcast_index(cast(Any, inner))  # HNSW and IVF knobs live on the concrete classes
    if spec.kind == "hnsw":
        index.hnsw.efSearch = spec.params["ef_search"]
    elif spec.kind == "ivf":
        index.nprobe = spec.params["nprobe"]
