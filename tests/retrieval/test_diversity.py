"""Diversity re-orderings: a family cap keeps the order and skips extra family members; MMR trades similarity for
variety and is the plain order at lambda 1."""

import numpy as np
import pytest

from fashionrec.retrieval.diversity import family_capped, mmr_order


def test_a_family_cap_skips_members_beyond_the_cap_in_order() -> None:
    families = np.array([4, 4, 7, 4, 7, 9, 4])
    assert family_capped(families, 1).tolist() == [0, 2, 5]
    assert family_capped(families, 2).tolist() == [0, 1, 2, 4, 5]
    with pytest.raises(ValueError, match="cap"):
        family_capped(families, 0)


def test_mmr_picks_a_different_direction_over_a_near_copy() -> None:
    a, copy, other = np.array([1.0, 0.0]), np.array([0.995, 0.0998]), np.array([0.6, 0.8])
    vectors = np.stack([a, copy, other]).astype(np.float32)
    scores = np.array([0.99, 0.98, 0.7], dtype=np.float32)
    assert mmr_order(scores, vectors, 1.0, 3).tolist() == [0, 1, 2]
    assert mmr_order(scores, vectors, 0.5, 2).tolist() == [0, 2]  # the copy adds nothing new
    assert mmr_order(scores[:0], vectors[:0], 0.5, 3).tolist() == []
    with pytest.raises(ValueError, match="between 0 and 1"):
        mmr_order(scores, vectors, 1.5, 2)
