"""The catalogue as the gallery browses it: the rows of styles.csv that have a photo, filtered, searched and paged.

Read from the catalogue folder (Kaggle layout), never from the index or the online store: the gallery is a client
of the transformer like any other. `fashionrec catalog add|remove` rewrite styles.csv; the next request sees it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fashionrec.config import ATTRIBUTE_COLUMNS
from fashionrec.data.catalog import IMAGES_DIR, STYLES_FILE, image_path, read_styles

# The attributes a person filters the grid by, in the order the page shows them.
FILTER_COLUMNS = ("gender", "masterCategory", "articleType")
NAME_COLUMN = "productDisplayName"
DEFAULT_PAGE_SIZE = 24
MAX_PAGE_SIZE = 96


class BadRequest(ValueError):
    """A request the gallery refuses with a 4xx; the message says why (the page shows it)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Product:
    item_id: int
    attributes: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "attributes": self.attributes}


@dataclass(frozen=True)
class Query:
    """What the grid shows: equality filters on FILTER_COLUMNS, words that must all occur in the name, a page."""

    filters: dict[str, str] = field(default_factory=dict)
    search: str = ""
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        """From URL query parameters (filters by column name, ``q``, ``page``, ``page_size``); bad values are a 400."""
        page = _positive_int(params.get("page", "1"), "page")
        page_size = _positive_int(params.get("page_size", str(DEFAULT_PAGE_SIZE)), "page_size")
        if page_size > MAX_PAGE_SIZE:
            raise BadRequest(f"page_size must be at most {MAX_PAGE_SIZE}, got {page_size}")
        filters = {column: params[column] for column in FILTER_COLUMNS if params.get(column)}
        return cls(filters, params.get("q", "").strip(), page, page_size)


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {text!r}") from None
    if value < 1:
        raise BadRequest(f"{name} must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class Page:
    products: list[Product]
    total: int  # products matching the query, on every page
    page: int  # the page shown: the one asked for, or the last one when it asked past the end
    pages: int
    page_size: int

    def as_json(self) -> dict[str, Any]:
        return {
            "products": [p.as_json() for p in self.products],
            "total": self.total,
            "page": self.page,
            "pages": self.pages,
            "page_size": self.page_size,
        }


class CatalogueTable:
    """One reading of styles.csv: rows with an integer id and a photo, in file order."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.rows = rows.reset_index(drop=True)
        self._names = self.rows[NAME_COLUMN].str.casefold()
        self._positions = {int(item_id): position for position, item_id in enumerate(self.rows["id"])}

    @classmethod
    def read(cls, catalog_dir: Path) -> CatalogueTable:
        styles = read_styles(catalog_dir / STYLES_FILE).rows
        photos = {p.name for p in (catalog_dir / IMAGES_DIR).iterdir()} if (catalog_dir / IMAGES_DIR).is_dir() else set()
        numeric = styles["id"].str.fullmatch(r"\d+").fillna(False).astype(bool)
        styles = styles[numeric]
        with_photo = styles["id"].map(lambda item_id: image_path(Path(), item_id).name in photos).astype(bool)
        rows = styles[with_photo].drop_duplicates("id", keep="first")  # a duplicated id is one product to look at
        columns = ["id", *ATTRIBUTE_COLUMNS]
        return cls(rows.loc[:, columns].fillna(""))

    def __len__(self) -> int:
        return len(self.rows)

    def facets(self) -> dict[str, list[str]]:
        """Every value of each filter column, sorted (what the page's drop-downs offer)."""
        return {column: sorted(v for v in self.rows[column].unique() if v) for column in FILTER_COLUMNS}

    def product(self, item_id: int) -> Product | None:
        position = self._positions.get(item_id)
        return None if position is None else self._product(position)

    def _product(self, position: int) -> Product:
        row = self.rows.iloc[position]
        return Product(int(row["id"]), {column: str(row[column]) for column in ATTRIBUTE_COLUMNS})

    def page(self, query: Query) -> Page:
        mask = pd.Series(True, index=self.rows.index)
        for column, value in query.filters.items():
            mask &= self.rows[column] == value
        for word in query.search.casefold().split():
            mask &= self._names.str.contains(word, regex=False)
        positions = mask[mask].index
        total = len(positions)
        pages = max(1, math.ceil(total / query.page_size))
        page = min(query.page, pages)
        start = (page - 1) * query.page_size
        shown = [self._product(int(p)) for p in positions[start : start + query.page_size]]
        return Page(shown, total, page, pages, query.page_size)


class Catalogue:
    """The catalogue folder, re-read when styles.csv changes (a product added or removed live)."""

    def __init__(self, catalog_dir: Path) -> None:
        self.catalog_dir = catalog_dir
        self._lock = threading.Lock()
        self._table: CatalogueTable | None = None
        self._read_at: int | None = None  # styles.csv's mtime (ns) when _table was read

    def table(self) -> CatalogueTable:
        styles = self.catalog_dir / STYLES_FILE
        with self._lock:
            changed_at = styles.stat().st_mtime_ns
            if self._table is None or changed_at != self._read_at:
                self._table = CatalogueTable.read(self.catalog_dir)
                self._read_at = changed_at
            return self._table

    def photo(self, item_id: int) -> Path | None:
        """The product's photo, if it is a product of the catalogue and the photo is there."""
        path = image_path(self.catalog_dir, item_id)
        return path if self.table().product(item_id) is not None and path.is_file() else None
