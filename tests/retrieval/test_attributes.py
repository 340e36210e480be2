"""Item attributes beside the index and the filters a query gives: parsed strictly (the client's mistakes named),
kept aligned with the index's positions through live changes, and never letting a failing item through (a
property-based check against brute force over generated catalogues and filters)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashionrec.config import ATTRIBUTE_COLUMNS, FAMILY_COLUMN, FEAST_JOIN_KEY, ITEM_ATTRIBUTES_FILE
from fashionrec.retrieval.attributes import FilterError, ItemAttributes, ItemFilter, parse_year
from fashionrec.retrieval.index import ItemIndex

GENDERS, TYPES, COLOURS = ["Men", "Women", "Unisex"], ["Tshirts", "Shirts", "Heels", "Watches"], ["Black", "Navy Blue"]
COUNT, DIM = 600, 16


def catalogue(count: int = COUNT, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({FEAST_JOIN_KEY: np.arange(count, dtype=np.int64) * 3 + 7})
    for column in ATTRIBUTE_COLUMNS:
        table[column] = "x"
    table["gender"] = rng.choice(GENDERS, count)
    table["articleType"] = rng.choice(TYPES, count)
    table["baseColour"] = rng.choice(COLOURS, count)
    table["season"] = rng.choice(["Summer", "Fall"], count)
    table["year"] = rng.choice(["2011", "2014", "2016.0", ""], count)
    table["productDisplayName"] = [f"Brand {table['baseColour'][n]} Shirt {n}" for n in range(count)]
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return table, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_filters_parse_from_json_text_or_values_and_name_what_is_wrong() -> None:
    parsed = ItemFilter.parse('{"gender": "Women", "articleType": ["Tops", "Tunics"], "year": {"min": 2012}}', "[5, 6]")
    assert parsed.values == {"gender": {"Women"}, "articleType": {"Tops", "Tunics"}}
    assert (parsed.year_min, parsed.year_max, parsed.exclude_ids) == (2012, None, {5, 6})
    assert ItemFilter.parse({"year": 2014}, 9) == ItemFilter({}, 2014, 2014, frozenset({9}))
    assert not ItemFilter.parse(None, "").active
    for conditions, exclude, message in [
        ('{"colour": "Red"}', None, "unknown attribute 'colour'"),
        ('{"gender": 3}', None, "filter 'gender' takes a string"),
        ('{"gender": []}', None, "filter 'gender' takes a string"),
        ('{"year": {"from": 2012}}', None, "filter 'year' takes"),
        ('{"year": {"min": "2012"}}', None, "bounds must be integers"),
        ("[1, 2]", None, "filter has the wrong type"),
        ("{gender", None, "filter must be JSON"),
        (None, '["a"]', "exclude_ids takes a list of integer"),
        (None, "true", "exclude_ids has the wrong type"),
    ]:
        with pytest.raises(FilterError, match=message):
            ItemFilter.parse(conditions, exclude)


def test_years_parse_from_catalogue_text() -> None:
    assert [parse_year(v) for v in ["2012", "2012.0", "", "nan", None, "n/a", 2016.5]] == [2012, 2012, -1, -1, -1, -1, -1]


def test_attributes_survive_a_save_with_families_and_take_live_additions(tmp_path: Path) -> None:
    table, _ = catalogue()
    table[FAMILY_COLUMN] = table[FEAST_JOIN_KEY]  # the embed step's groups: here every product alone ...
    table.loc[[0, 1], FAMILY_COLUMN] = 7  # ... but for two near-duplicate photos
    attributes = ItemAttributes.of_table(table)
    attributes.save(tmp_path)
    assert (tmp_path / ITEM_ATTRIBUTES_FILE).is_file() and ItemAttributes.load(tmp_path / "elsewhere") is None
    loaded = ItemAttributes.load(tmp_path)
    assert loaded is not None and len(loaded) == COUNT
    families = loaded.families_of(table[FEAST_JOIN_KEY].to_numpy()[:3])
    assert families[0] == families[1] != families[2]
    women = loaded.passing(ItemFilter({"gender": frozenset({"Women"})}))
    assert women.tolist() == (table["gender"] == "Women").tolist()
    # A live addition named like product 5 apart from its colour joins its family; a new name starts one.
    name = str(table["productDisplayName"][5]).replace("Navy Blue", "Black").replace("Black", "Navy Blue", 1)
    rows: dict[str, list[str | None]] = {c: ["Men", "Men"] if c == "gender" else [None, None] for c in ATTRIBUTE_COLUMNS}
    rows |= {"productDisplayName": [name, "Another Thing"], "articleType": ["Kurtas", None], "year": ["2020", None]}
    loaded.append([10_000, 10_001], rows)
    new = loaded.families_of(np.array([10_000, 10_001, 99_999]))
    assert new[0] == loaded.families_of(np.array([table[FEAST_JOIN_KEY][5]]))[0]
    assert new[1] not in set(loaded.family[:COUNT].tolist()) and new[2] < 0
    assert loaded.codes_of("articleType", np.array([10_000, 10_001])).tolist()[1] == -1
    kurtas = loaded.passing(ItemFilter({"articleType": frozenset({"Kurtas"})}))
    assert np.flatnonzero(kurtas).tolist() == [COUNT]
    assert np.flatnonzero(loaded.passing(ItemFilter(year_min=2019))).tolist() == [COUNT]
    # A replaced item's newest attributes count.
    loaded.append([10_001], {"articleType": ["Heels"]})
    assert loaded.books["articleType"][loaded.codes_of("articleType", np.array([10_001]))[0]] == "Heels"


def brute_force(table: pd.DataFrame, item_filter: ItemFilter, alive: np.ndarray) -> np.ndarray:
    passing = alive.copy()
    for column, allowed in item_filter.values.items():
        passing &= table[column].isin(allowed).to_numpy()
    years = np.array([parse_year(v) for v in table["year"]])
    if item_filter.year_min is not None:
        passing &= years >= item_filter.year_min
    if item_filter.year_max is not None:
        passing &= (years <= item_filter.year_max) & (years >= 0)
    return passing & ~table[FEAST_JOIN_KEY].isin(item_filter.exclude_ids).to_numpy()


@pytest.fixture(scope="module", params=["flat", "hnsw"])
def served(request: pytest.FixtureRequest) -> tuple[ItemIndex, pd.DataFrame, np.ndarray]:
    table, vectors = catalogue()
    index = ItemIndex.build(table[FEAST_JOIN_KEY].to_numpy(), vectors, "v1", "d", request.param,
                            attributes=ItemAttributes.of_table(table))  # fmt: skip
    index.remove(table[FEAST_JOIN_KEY].to_numpy()[:20])
    return index, table, vectors


filters = st.builds(
    ItemFilter,
    st.dictionaries(
        st.sampled_from(["gender", "articleType", "baseColour", "season"]),
        st.frozensets(st.sampled_from([*GENDERS, *TYPES, *COLOURS, "Summer", "Nothing"]), min_size=1, max_size=3),
        max_size=3,
    ),
    st.one_of(st.none(), st.sampled_from([2010, 2014, 2016])),
    st.one_of(st.none(), st.sampled_from([2011, 2014, 2020])),
    st.frozensets(st.integers(0, COUNT * 3 + 7), max_size=40),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item_filter=filters, k=st.integers(1, 15), seed=st.integers(0, 1000))
def test_a_filtered_query_never_returns_a_failing_item_and_finds_the_best_passing_ones(
    served: tuple[ItemIndex, pd.DataFrame, np.ndarray], item_filter: ItemFilter, k: int, seed: int
) -> None:
    index, table, vectors = served
    alive = np.arange(COUNT) >= 20
    passing = brute_force(table, item_filter, alive)
    query = vectors[seed % COUNT][None, :]
    scores, hits = index.search_filtered(query, k, item_filter)
    found = hits[0][hits[0] != -1]
    allowed = table[FEAST_JOIN_KEY].to_numpy()[passing]
    assert np.isin(found, allowed).all()
    # Fewer than FILTER_EXACT_ITEMS pass here, so the search is exact: exactly the best passing items.
    best = np.sort(vectors[passing] @ query[0])[::-1][: min(k, passing.sum())]
    np.testing.assert_allclose(scores[0][: len(found)], best, atol=1e-5)
    assert len(found) == len(best)


def test_live_changes_respect_filters(served: tuple[ItemIndex, pd.DataFrame, np.ndarray]) -> None:
    index, _, _ = served
    women = ItemFilter({"gender": frozenset({"Women"})})
    query = np.random.default_rng(5).standard_normal((1, DIM)).astype(np.float32)
    query /= np.linalg.norm(query)
    rows = {c: ["Women"] if c == "gender" else ["x"] for c in ATTRIBUTE_COLUMNS}
    index.upsert(np.array([50_000]), query, rows)  # added live: filterable at once, and the best match
    assert index.search_filtered(query, 3, women)[1][0][0] == 50_000
    assert 50_000 not in index.search_filtered(query, 3, ItemFilter({"gender": frozenset({"Men"})}))[1][0]
    assert 50_000 not in index.search_filtered(query, 3, ItemFilter(exclude_ids=frozenset({50_000})))[1][0]
    index.remove(np.array([50_000]))  # removed: never passes again
    assert 50_000 not in index.search_filtered(query, 3, women)[1][0]
    assert index.search_filtered(query, 3, ItemFilter({"gender": frozenset({"Nobody"})}))[1].tolist() == [[-1] * 3]


def test_an_index_without_attributes_refuses_an_attribute_filter_but_excludes() -> None:
    table, vectors = catalogue(50)
    index = ItemIndex.build(table[FEAST_JOIN_KEY].to_numpy(), vectors, "v1", "d", "flat")
    with pytest.raises(ValueError, match="without item attributes"):
        index.search_filtered(vectors[:1], 3, ItemFilter({"gender": frozenset({"Men"})}))
    first = int(index.search(vectors[:1], 1)[1][0][0])
    assert first not in index.search_filtered(vectors[:1], 3, ItemFilter(exclude_ids=frozenset({first})))[1][0]
