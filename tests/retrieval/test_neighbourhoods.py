"""The cells a filtered search scans when few of a query's neighbours pass: every position in exactly one cell, the
candidates are the passing positions of the nearest cells that hold any, IVF's cells are its lists, and they follow
live additions and a save/load."""

from pathlib import Path

import numpy as np
import pytest

from fashionrec.config import NEIGHBOURHOODS_FILE
from fashionrec.retrieval.index import ItemIndex
from fashionrec.retrieval.neighbourhoods import Neighbourhoods, cells_for

DIM = 16


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_every_vector_sits_in_its_nearest_cell() -> None:
    vectors = unit(np.random.default_rng(0), 2000)
    cells = Neighbourhoods.fit(vectors)
    assert cells.centroids.shape == (cells_for(2000), DIM) and len(cells) == 2000
    np.testing.assert_array_equal(cells.cell_of, np.argmax(vectors @ cells.centroids.T, axis=1))


@pytest.mark.parametrize(("probed", "wanted"), [(1, 1), (3, 1), (500, 1), (1, 8)])
def test_the_candidates_are_the_passing_items_of_the_nearest_cells_that_hold_enough(probed: int, wanted: int) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 2000)
    cells = Neighbourhoods.fit(vectors)
    live = rng.random(2000) < 0.05
    queries = unit(rng, 6)
    for query, found in zip(queries, cells.candidates(queries, live, wanted, probed), strict=True):
        holding = np.unique(cells.cell_of[live])
        nearest = holding[np.argsort(-(cells.centroids[holding] @ query))]
        taken = 0
        while taken < len(nearest) and (taken < probed or np.isin(cells.cell_of[live], nearest[:taken]).sum() < 50 * wanted):
            taken += 1
        expected = np.flatnonzero(live & np.isin(cells.cell_of, nearest[:taken]))
        np.testing.assert_array_equal(np.sort(found), expected)


def test_nothing_passing_gives_no_candidates() -> None:
    vectors = unit(np.random.default_rng(2), 500)
    cells = Neighbourhoods.fit(vectors)
    assert [len(c) for c in cells.candidates(vectors[:2], np.zeros(500, dtype=bool), 5)] == [0, 0]


def test_ivf_cells_are_its_own_lists_and_follow_live_additions() -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng, 3000)
    index = ItemIndex.build(np.arange(3000), vectors, "v1", "d", kind="ivf")
    cells = index.neighbourhoods
    assert cells is not None
    _, assigned = index._inner().quantizer.search(vectors, 1)
    np.testing.assert_array_equal(cells.cell_of, assigned[:, 0])
    added = unit(rng, 7)
    index.upsert(np.arange(3000, 3007), added)
    _, assigned = index._inner().quantizer.search(added, 1)
    np.testing.assert_array_equal(cells.cell_of[3000:], assigned[:, 0])


def test_hnsw_cells_are_saved_beside_the_index_and_an_item_added_live_is_found_through_its_cell(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vectors = unit(rng, 3000)
    built = ItemIndex.build(np.arange(3000), vectors, "v1", "d", kind="hnsw")
    built.save(tmp_path)
    assert (tmp_path / NEIGHBOURHOODS_FILE).is_file()
    index = ItemIndex.load(tmp_path)
    assert index.neighbourhoods is not None and built.neighbourhoods is not None
    np.testing.assert_array_equal(index.neighbourhoods.cell_of, built.neighbourhoods.cell_of)
    query = vectors[:1]
    # A filter that passes the half of the catalogue facing away from the query (none of its neighbours), and an item
    # added live beside the best passing one, a little nearer the query: now the best, found only through its cell.
    far = vectors @ query[0] < 0
    edge = np.flatnonzero(far)[np.argmax(vectors[far] @ query[0])]
    newcomer = vectors[edge] - (vectors[edge] @ query[0]) * 0.5 * query[0]
    newcomer /= np.linalg.norm(newcomer)
    index.upsert(np.array([9999]), newcomer[None])
    passing = np.append(far, True)
    _, hits = index.search_passing(query, 10, passing, exact_items=0)
    ids = np.append(np.arange(3000), 9999)
    everything = np.vstack([vectors, newcomer[None]])
    truth = ids[passing][np.argsort(-(everything[passing] @ query[0]))[:10]]
    assert truth[0] == 9999 and hits[0][0] == 9999
    assert np.isin(hits[0], ids[passing]).all() and len(set(hits[0].tolist())) == 10
