"""Search among the items a filter passes (issue 31's core): never an item that fails it or was removed, exact over
few passing items, and the approximate kinds with their knob raised as the share passing falls. Checked against a
brute-force reference over generated catalogues and masks (property-based)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashionrec.retrieval.index import ItemIndex

COUNT, DIM = 3000, 32


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module", params=["flat", "hnsw", "ivf"])
def built(request: pytest.FixtureRequest) -> tuple[ItemIndex, np.ndarray, np.ndarray]:
    ids, vectors = np.arange(COUNT) + 500, unit(np.random.default_rng(1), COUNT)
    index = ItemIndex.build(ids, vectors, "v1", "d", kind=request.param)
    index.remove(ids[:30])  # tombstones: a removed item passes no filter
    return index, ids, vectors


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), share=st.sampled_from([0.5, 0.1, 0.01, 0.001, 0.0]), k=st.integers(1, 20),
       exact=st.booleans())  # fmt: skip
def test_a_filtered_search_returns_only_passing_live_items_and_exactly_the_best_when_exact(
    built: tuple[ItemIndex, np.ndarray, np.ndarray], seed: int, share: float, k: int, exact: bool
) -> None:
    index, ids, vectors = built
    rng = np.random.default_rng(seed)
    passing = rng.random(COUNT) < share
    queries = unit(rng, 4)
    scores, hits = index.search_passing(queries, k, passing, exact_items=COUNT if exact else 0)
    allowed = ids[passing & (np.arange(COUNT) >= 30)]
    for row in range(len(queries)):
        found = hits[row][hits[row] != -1]
        assert np.isin(found, allowed).all() and len(set(found.tolist())) == len(found)
        if exact or index.meta.index_kind == "flat":
            truth = allowed[np.argsort(-(queries[row] @ vectors[allowed - 500].T), kind="stable")[:k]]
            assert len(found) == min(k, len(allowed))
            np.testing.assert_allclose(scores[row][: len(found)], queries[row] @ vectors[truth - 500].T, atol=1e-5)


def test_a_restrictive_filter_still_finds_its_neighbours_on_an_approximate_index(
    built: tuple[ItemIndex, np.ndarray, np.ndarray],
) -> None:
    index, ids, vectors = built
    rng = np.random.default_rng(7)
    passing = rng.random(COUNT) < 0.02
    allowed = ids[passing & (np.arange(COUNT) >= 30)]
    queries = unit(rng, 20)
    _, hits = index.search_passing(queries, 10, passing, exact_items=0)  # the selector path, not the exact one
    truth = [set(allowed[np.argsort(-(q @ vectors[allowed - 500].T))[:10]].tolist()) for q in queries]
    recall = np.mean([len(t & set(h.tolist())) / len(t) for t, h in zip(truth, hits, strict=True)])
    assert recall >= 0.9


def test_a_mask_of_the_wrong_length_is_refused(built: tuple[ItemIndex, np.ndarray, np.ndarray]) -> None:
    index, ids, _ = built
    assert index.positions_of(ids[:3]).sum() == 3
    with pytest.raises(ValueError, match="bool mask"):
        index.search_passing(unit(np.random.default_rng(0), 1), 5, np.ones(10, dtype=bool))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_a_filter_that_passes_half_the_catalogue_but_none_of_the_querys_neighbours_still_finds_them(kind: str) -> None:
    """Attributes correlate with the vectors ("another colour"): the share of the catalogue passing says nothing
    about the query's neighbourhood, so the depth follows the share of its neighbours that pass (here none): exact
    over the passing items of the nearest cells that hold any. The catalogue is clustered, as embeddings of products
    are (on vectors spread evenly over the sphere, cells say little about who is near whom)."""
    rng = np.random.default_rng(5)
    centres = unit(rng, 60)
    cluster = rng.integers(0, 60, COUNT)
    vectors = centres[cluster] + 0.08 * rng.standard_normal((COUNT, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(COUNT) + 500
    index = ItemIndex.build(ids, vectors, "v1", "d", kind=kind)
    passing = centres[cluster, 0] < 0  # half the clusters
    queries = centres[centres[:, 0] >= 0][:8] + 0.05 * unit(rng, 8)  # each beside a cluster that fails
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, hits = index.search_passing(queries, 10, passing, exact_items=0)
    allowed = ids[passing]
    truth = [set(allowed[np.argsort(-(q @ vectors[allowed - 500].T))[:10]].tolist()) for q in queries]
    recall = np.mean([len(t & set(h.tolist())) / len(t) for t, h in zip(truth, hits, strict=True)])
    assert recall >= 0.95 and np.isin(hits, allowed).all()
