"""The gallery's catalogue: which rows it shows, filters, name search and pages, without a server."""

import os
from pathlib import Path

import pytest
from sample_catalogue import ROWS, WITH_PHOTOS, write_catalogue

from fashionrec.web.catalogue import MAX_PAGE_SIZE, BadRequest, Catalogue, CatalogueTable, Query


@pytest.fixture
def catalogue(tmp_path: Path) -> Catalogue:
    return Catalogue(write_catalogue(tmp_path, ROWS, WITH_PHOTOS))


def ids(table: CatalogueTable, query: Query) -> list[int]:
    return [p.item_id for p in table.page(query).products]


def test_only_products_with_a_photo_and_an_integer_id_are_shown_once(catalogue: Catalogue) -> None:
    table = catalogue.table()
    assert ids(table, Query()) == [1, 2, 3, 4, 5]
    duplicated, comma = table.product(5), table.product(4)
    assert duplicated is not None and duplicated.attributes["baseColour"] == "White"  # the first of a duplicated id
    assert comma is not None and comma.attributes["productDisplayName"] == "Silver Watch, Steel Strap"
    assert table.product(6) is None
    assert catalogue.photo(1) == catalogue.catalog_dir / "images" / "1.jpg"
    assert catalogue.photo(6) is None and catalogue.photo(99) is None


def test_pages_split_the_matches_and_a_page_past_the_end_shows_the_last(catalogue: Catalogue) -> None:
    table = catalogue.table()
    pages = [table.page(Query(page=n, page_size=2)) for n in (1, 2, 3)]
    assert [[p.item_id for p in page.products] for page in pages] == [[1, 2], [3, 4], [5]]
    assert {(page.total, page.pages) for page in pages} == {(5, 3)}
    past = table.page(Query(page=9, page_size=2))
    assert past.page == 3 and [p.item_id for p in past.products] == [5]
    nothing = table.page(Query(filters={"gender": "Girls"}))
    assert (nothing.total, nothing.page, nothing.pages, nothing.products) == (0, 1, 1, [])


def test_filters_combine_and_every_word_of_a_search_must_be_in_the_name(catalogue: Catalogue) -> None:
    table = catalogue.table()
    assert ids(table, Query(filters={"gender": "Men"})) == [1, 3, 5]
    assert ids(table, Query(filters={"gender": "Men", "articleType": "Shirts"})) == [1, 5]
    assert ids(table, Query(filters={"masterCategory": "Accessories"})) == [4]
    assert ids(table, Query(search="shirt")) == [1, 2, 5]  # a part of a word matches: "Tshirt" holds "shirt"
    assert ids(table, Query(search="SHIRT formal")) == [5]
    assert ids(table, Query(search="graphic tshirt", filters={"gender": "Women"})) == [2]
    assert ids(table, Query(search="steel strap")) == [4]
    assert ids(table, Query(search="(")) == []  # a word is plain text, not a pattern
    assert table.facets() == {
        "gender": ["Men", "Women"],
        "masterCategory": ["Accessories", "Apparel", "Footwear"],
        "articleType": ["Casual Shoes", "Shirts", "Tshirts", "Watches"],
    }


def test_query_parameters_are_checked() -> None:
    query = Query.parse({"page": "2", "page_size": "5", "gender": "Men", "articleType": "", "q": " blue ", "colour": "x"})
    assert query == Query(filters={"gender": "Men"}, search="blue", page=2, page_size=5)
    for params, words in (
        ({"page": "0"}, "page must be at least 1"),
        ({"page": "two"}, "page must be a whole number"),
        ({"page_size": str(MAX_PAGE_SIZE + 1)}, f"at most {MAX_PAGE_SIZE}"),
    ):
        with pytest.raises(BadRequest, match=words) as refused:
            Query.parse(params)
        assert refused.value.status == 400


def test_a_product_added_to_styles_csv_is_shown_on_the_next_request(catalogue: Catalogue) -> None:
    assert len(catalogue.table()) == 5
    styles = catalogue.catalog_dir / "styles.csv"
    write_catalogue(catalogue.catalog_dir, [*ROWS, "8,Women,Apparel,Topwear,Tops,Yellow,Summer,2012,Casual,Yellow Top"], (8,))
    changed = styles.stat().st_mtime_ns + 1_000_000_000  # a coarse file-system clock cannot hide the change
    os.utime(styles, ns=(changed, changed))
    table = catalogue.table()
    assert ids(table, Query(search="yellow")) == [8] and len(table) == 6
