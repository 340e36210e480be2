"""Live changes to a loaded index (catalogue additions and removals without a rebuild), for every index kind, while
other threads search it."""

import threading
from pathlib import Path

import numpy as np
import pytest

from fashionrec.retrieval.index import ItemIndex


def unit(rng: np.random.Generator, count: int, dim: int = 32) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=["flat", "hnsw", "ivf"])
def index(request: pytest.FixtureRequest) -> tuple[ItemIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    ids, vectors = np.arange(1000, 3000), unit(rng, 2000)
    return ItemIndex.build(ids, vectors, "v1", "d", kind=request.param), ids, vectors


def test_an_added_item_is_found_and_a_removed_one_never_again(index: tuple[ItemIndex, np.ndarray, np.ndarray]) -> None:
    built, ids, vectors = index
    new = unit(np.random.default_rng(9), 3)
    built.upsert(np.array([5, 6, 7]), new)
    _, hits = built.search(new, 1)
    assert hits[:, 0].tolist() == [5, 6, 7] and built.count == 2003
    assert built.remove(np.array([6, int(ids[0]), 424242])) == 2  # an id not in the index is ignored
    _, hits = built.search(np.vstack([new[1:2], vectors[:1]]), 10)
    assert 6 not in hits and int(ids[0]) not in hits and built.count == 2001
    assert (hits[:, 0] != -1).all()  # the next best items take their place


def test_an_upsert_replaces_the_items_vector(index: tuple[ItemIndex, np.ndarray, np.ndarray]) -> None:
    built, ids, vectors = index
    moved = unit(np.random.default_rng(11), 1)
    built.upsert(ids[:1], moved)
    _, by_new = built.search(moved, 1)
    _, by_old = built.search(vectors[:1], 5)
    assert by_new[0, 0] == ids[0] and ids[0] not in by_old[0] and built.count == 2000
    built.remove(ids[:1])
    built.upsert(ids[:1], vectors[:1])  # removed, then added back
    assert built.search(vectors[:1], 1)[1][0, 0] == ids[0]


def the_vector(index: ItemIndex, item_id: int) -> np.ndarray:
    (found,) = index.vectors_of([item_id])
    assert found is not None, f"no vector for {item_id}"
    return found


def test_vectors_of_gives_what_the_index_searches_with_after_every_change(
    index: tuple[ItemIndex, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    built, ids, vectors = index
    assert np.allclose(the_vector(built, int(ids[5])), vectors[5])
    assert built.vectors_of([424242, int(ids[6])])[0] is None  # an unknown id has none
    moved = unit(np.random.default_rng(12), 1)
    built.upsert(ids[5:6], moved)
    assert np.allclose(the_vector(built, int(ids[5])), moved[0])  # the replacement, not the first vector
    built.remove(ids[5:6])
    assert built.vectors_of([int(ids[5])]) == [None]  # removed: FAISS's id map still knows it, the index does not
    built.upsert(ids[5:6], vectors[5:6])
    assert np.allclose(the_vector(built, int(ids[5])), vectors[5])
    fresh = ItemIndex.build(ids, vectors, "v1", "d", kind=built.meta.index_kind)
    fresh.save(tmp_path / "saved")
    assert np.allclose(the_vector(ItemIndex.load(tmp_path / "saved"), int(ids[7])), vectors[7])  # loaded too


def test_changes_made_while_other_threads_search_lose_nothing(index: tuple[ItemIndex, np.ndarray, np.ndarray]) -> None:
    built, ids, vectors = index
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        try:
            while not stop.is_set():
                _, hits = built.search(vectors[:8], 5)
                assert hits.shape == (8, 5) and (hits != -1).all()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    searchers = [threading.Thread(target=search) for _ in range(2)]
    for thread in searchers:
        thread.start()
    added = unit(np.random.default_rng(5), 200)
    for start in range(0, 200, 10):
        built.upsert(np.arange(start, start + 10), added[start : start + 10])
        built.remove(ids[start : start + 5])
    stop.set()
    for thread in searchers:
        thread.join()
    assert not errors
    assert built.count == 2000 + 200 - 100
    assert (built.search(added, 1)[1][:, 0] == np.arange(200)).mean() >= 0.95  # approximate kinds may miss a few


def test_an_upsert_with_the_wrong_shape_or_repeated_ids_is_refused(index: tuple[ItemIndex, np.ndarray, np.ndarray]) -> None:
    built, _, _ = index
    with pytest.raises(ValueError, match="unique ids"):
        built.upsert(np.array([1, 1]), unit(np.random.default_rng(0), 2))
    with pytest.raises(ValueError, match="unique ids"):
        built.upsert(np.array([1]), unit(np.random.default_rng(0), 1, dim=16))
    assert built.count == 2000


def test_retuning_keeps_the_tombstones_and_a_changed_index_is_not_saved(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    ids, vectors = np.arange(500), unit(rng, 500)
    built = ItemIndex.build(ids, vectors, "v1", "d", kind="hnsw")
    built.remove(ids[:1])
    built.tune(ef_search=128)
    assert 0 not in built.search(vectors[:1], 10)[1] and built._search_params.efSearch == 128
    with pytest.raises(ValueError, match="changed live is not saved"):
        built.save(tmp_path)
    fresh = ItemIndex.build(ids, vectors, "v1", "d", kind="flat")
    fresh.upsert(np.array([900]), vectors[:1])
    with pytest.raises(ValueError, match="changed live is not saved"):
        fresh.save(tmp_path)
