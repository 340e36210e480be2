"""The FAISS index of catalogue embeddings, with the model_version it was built from."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fashionrec.config import FEAST_JOIN_KEY, INDEX_FILE, INDEX_META_FILE
from fashionrec.embed import read_embeddings


@dataclass(frozen=True)
class IndexMeta:
    model_version: str
    dataset_digest: str
    dimension: int
    count: int
    index_type: str  # inner product on L2-normalised vectors = cosine similarity


class ItemIndex:
    """Exact inner-product search over L2-normalised embeddings, keyed by catalogue item id."""

    def __init__(self, index: object, meta: IndexMeta) -> None:
        self.index = index
        self.meta = meta

    @classmethod
    def build(cls, item_ids: np.ndarray, vectors: np.ndarray, model_version: str, dataset_digest: str) -> ItemIndex:
        import faiss

        if vectors.ndim != 2 or len(vectors) != len(item_ids):
            raise ValueError(f"vectors {vectors.shape} do not match {len(item_ids)} item ids")
        if len(np.unique(item_ids)) != len(item_ids):
            raise ValueError("item ids must be unique")
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(item_ids, dtype=np.int64))
        meta = IndexMeta(model_version, dataset_digest, int(vectors.shape[1]), len(item_ids), "IDMap2,FlatIP")
        return cls(index, meta)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [n, k], item ids [n, k]); ids are -1 where the catalogue has fewer than k items."""
        if queries.ndim != 2 or queries.shape[1] != self.meta.dimension:
            raise ValueError(f"queries must be [n, {self.meta.dimension}], got {list(queries.shape)}")
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)  # type: ignore[attr-defined]
        return scores, ids

    def save(self, directory: Path) -> None:
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))  # type: ignore[call-overload]
        (directory / INDEX_META_FILE).write_text(json.dumps(asdict(self.meta), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> ItemIndex:
        import faiss

        meta = IndexMeta(**json.loads((directory / INDEX_META_FILE).read_text(encoding="utf-8")))
        index = faiss.read_index(str(directory / INDEX_FILE))
        if index.ntotal != meta.count or index.d != meta.dimension:
            raise ValueError(f"{directory}: index holds {index.ntotal}x{index.d}, metadata says {meta.count}x{meta.dimension}")
        return cls(index, meta)


def build_index(embeddings: Path, out_dir: Path) -> IndexMeta:
    table, vectors = read_embeddings(embeddings)
    versions = table["model_version"].unique()
    if len(versions) != 1:
        raise ValueError(f"embeddings come from {len(versions)} model versions {list(versions)}; an index holds one")
    index = ItemIndex.build(table[FEAST_JOIN_KEY].to_numpy(), vectors, str(versions[0]), str(table["dataset_digest"].iloc[0]))
    index.save(out_dir)
    return index.meta
