"""Varied answers: at most so many from one product family, and maximal marginal relevance (MMR).

Both re-order one query's candidates (best first) and return positions into them. The family cap keeps the order and
skips a candidate once its family has ``cap`` answers (five colour variants of one shirt become one or two); MMR picks,
one at a time, the candidate with the best ``lam`` x similarity to the query - (1 - ``lam``) x its highest similarity
to those already picked (Carbonell and Goldstein, 1998): ``lam`` = 1 is the plain order.
"""

from __future__ import annotations

import numpy as np


def family_capped(families: np.ndarray, cap: int) -> np.ndarray:
    """Positions of the candidates kept, in order, when at most ``cap`` come from one family."""
    if cap < 1:
        raise ValueError(f"a family cap must be >= 1, got {cap}")
    seen: dict[int, int] = {}
    kept = []
    for position, family in enumerate(families.tolist()):
        if seen.get(family, 0) < cap:
            seen[family] = seen.get(family, 0) + 1
            kept.append(position)
    return np.asarray(kept, dtype=np.int64)


def mmr_order(scores: np.ndarray, vectors: np.ndarray, lam: float, take: int) -> np.ndarray:
    """The first ``take`` candidates picked by MMR (positions into them); ``vectors`` L2-normalised, one per
    candidate, ``scores`` their similarity to the query."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"the MMR trade-off must be between 0 and 1, got {lam}")
    count = len(scores)
    take = min(take, count)
    if count == 0 or lam == 1.0:
        return np.arange(take, dtype=np.int64)
    similarity = vectors @ vectors.T
    picked = [int(np.argmax(scores))]
    closest = similarity[picked[0]].copy()  # each candidate's highest similarity to those picked
    available = np.ones(count, dtype=bool)
    available[picked[0]] = False
    while len(picked) < take:
        gain = np.where(available, lam * scores - (1 - lam) * closest, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        np.maximum(closest, similarity[best], out=closest)
    return np.asarray(picked, dtype=np.int64)
