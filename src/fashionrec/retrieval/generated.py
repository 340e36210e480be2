"""Embeddings drawn from a model fitted to a real catalogue's, for sizes no photo set here reaches (1M items).

Why a fitted generator rather than random or hand-made clusters: how well approximate search does depends on the
data's shape (how many dense regions, how far apart, how spread inside), and hand-made clusters either flatter it
or punish it. The fit keeps that shape: spherical k-means splits the real vectors into regions; each region keeps
its share of the items, its centre and the main directions of its spread (PCA), plus an isotropic rest for the
other directions. Samples are drawn region by region and L2-normalised like the encoder's output.
``similarity_profile`` checks the fit: nearest-neighbour similarities of real and generated vectors side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS = 128  # k-means regions fitted to the real vectors (~100 items each in a 15k catalogue)
DIRECTIONS = 24  # principal directions of spread kept per region; the rest is isotropic


@dataclass(frozen=True)
class FittedGenerator:
    weights: np.ndarray  # [regions] share of the items in each region
    centres: np.ndarray  # [regions, dim] mean vector of the region
    axes: np.ndarray  # [regions, directions, dim] principal directions, scaled by their standard deviation
    rest: np.ndarray  # [regions] standard deviation per dimension of what the directions leave out

    @classmethod
    def fit(cls, vectors: np.ndarray, regions: int = REGIONS, directions: int = DIRECTIONS, seed: int = 0) -> FittedGenerator:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        count, dim = vectors.shape
        regions = max(1, min(regions, count // max(2, directions)))
        kmeans = faiss.Kmeans(dim, regions, niter=20, spherical=True, seed=seed, verbose=False)
        kmeans.train(vectors)
        _, assignment = kmeans.index.search(vectors, 1)
        weights, centres, axes, rest = [], [], [], []
        for region in range(regions):
            members = vectors[assignment[:, 0] == region]
            if len(members) < 2:
                continue
            centre = members.mean(axis=0)
            residuals = members - centre
            _, singular, basis = np.linalg.svd(residuals, full_matrices=False)
            variance = singular**2 / (len(members) - 1)
            kept = min(directions, len(variance))
            padded = np.zeros((directions, dim), dtype=np.float32)
            padded[:kept] = basis[:kept] * np.sqrt(variance[:kept])[:, None]
            left_over = variance[kept:].sum() / max(1, dim - kept)
            weights.append(len(members))
            centres.append(centre)
            axes.append(padded)
            rest.append(np.sqrt(left_over))
        shares = np.asarray(weights, dtype=np.float64)
        return cls(shares / shares.sum(), np.stack(centres), np.stack(axes), np.asarray(rest, dtype=np.float32))

    def sample(self, count: int, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
        """``count`` L2-normalised float32 vectors (drawn ``chunk`` at a time to bound the temporary memory)."""
        return self.sample_with_regions(count, seed, chunk)[0]

    def sample_with_regions(self, count: int, seed: int = 0, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        """``sample``'s draw, with the region each vector came from (what attributes correlated with it follow)."""
        rng = np.random.default_rng(seed)
        regions, directions, dim = self.axes.shape
        out = np.empty((count, dim), dtype=np.float32)
        drawn_from = np.empty(count, dtype=np.int64)
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            region = rng.choice(regions, size=size, p=self.weights)
            along = np.einsum("nd,ndk->nk", rng.standard_normal((size, directions)).astype(np.float32), self.axes[region])
            noise = rng.standard_normal((size, dim)).astype(np.float32) * self.rest[region][:, None]
            points = self.centres[region] + along + noise
            out[start : start + size] = points / np.linalg.norm(points, axis=1, keepdims=True)
            drawn_from[start : start + size] = region
        return out, drawn_from


def similarity_profile(base: np.ndarray, queries: np.ndarray, k: int = 10) -> dict[str, float]:
    """Median cosine similarity of each query's 1st and k-th nearest neighbour in ``base`` (exact search): how
    crowded the neighbourhoods are, the property approximate search is sensitive to."""
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    scores, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return {"top1_similarity_p50": float(np.median(scores[:, 0])), f"top{k}_similarity_p50": float(np.median(scores[:, -1]))}
