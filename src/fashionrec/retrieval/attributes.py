"""Each indexed item's attributes, aligned with the index's positions: what filters, diversity and re-ranking read.

Kept beside the index (``item_attributes.npz``, no pickle) so that a filtered query needs no read of the online store:
per filterable attribute an int code per position (-1: unknown) and its code book, the year as a number (-1:
unknown), and the item's product family (colour variants and near-duplicate photos, as the evaluation split joins
them). A product added live brings its attributes and joins the family of any indexed product of the same name
apart from colour words (``fashionrec.products``); its position is appended, as the index appends its vector.

``ItemFilter`` is a query's restriction: in-set on attributes, a year range, ids never to return. ``passing`` turns
it into a mask over positions, the form ``ItemIndex.search_passing`` searches within.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionrec.config import (
    COLOUR_COLUMN,
    FAMILY_COLUMN,
    FEAST_JOIN_KEY,
    FILTER_COLUMNS,
    ITEM_ATTRIBUTES_FILE,
    NAME_COLUMN,
    YEAR_COLUMN,
)
from fashionrec.products import colour_words, family_key

YEAR_BOUNDS = ("min", "max")  # a year filter: {"min": 2012, "max": 2016}, either bound optional, both inclusive


class FilterError(ValueError):
    """A filter that names an unknown attribute or gives a value of the wrong type (the client's mistake)."""


@dataclass(frozen=True)
class ItemFilter:
    """Which items a query may return: every attribute condition holds (an item passes an in-set condition when its
    value is one of the set), the year lies in the range, and the item is not excluded."""

    values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    year_min: int | None = None
    year_max: int | None = None
    exclude_ids: frozenset[int] = frozenset()

    @property
    def restricts_attributes(self) -> bool:
        return bool(self.values) or self.year_min is not None or self.year_max is not None

    @property
    def active(self) -> bool:
        return self.restricts_attributes or bool(self.exclude_ids)

    @classmethod
    def parse(cls, conditions: Any = None, exclude_ids: Any = None) -> ItemFilter:
        """From the v2 parameters: ``conditions`` a JSON object (or its text), e.g. ``{"gender": "Women",
        "articleType": ["Tops", "Tunics"], "year": {"min": 2012}}``; ``exclude_ids`` a JSON array of ids (or its
        text, or one id). FilterError names what is wrong."""
        conditions = _decoded(conditions, "filter", dict)
        values: dict[str, frozenset[str]] = {}
        year: dict[str, int] = {}
        for name, wanted in (conditions or {}).items():
            if name == YEAR_COLUMN:
                year = _year_range(wanted)
            elif name in FILTER_COLUMNS:
                allowed = wanted if isinstance(wanted, list) else [wanted]
                if not allowed or not all(isinstance(v, str) for v in allowed):
                    raise FilterError(f"filter {name!r} takes a string or a non-empty list of strings, got {wanted!r}")
                values[name] = frozenset(allowed)
            else:
                known = ", ".join((*FILTER_COLUMNS, YEAR_COLUMN))
                raise FilterError(f"filter names unknown attribute {name!r}: filterable are {known}")
        excluded = _decoded(exclude_ids, "exclude_ids", (list, int))
        excluded = [excluded] if isinstance(excluded, int) else excluded or []
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in excluded):
            raise FilterError(f"exclude_ids takes a list of integer item ids, got {exclude_ids!r}")
        return cls(values, year.get("min"), year.get("max"), frozenset(excluded))


def _decoded(value: Any, name: str, kinds: type | tuple[type, ...]) -> Any:
    """A parameter's value (as the transformer read it, over REST or gRPC), JSON text decoded."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise FilterError(f"{name} must be JSON, got {value!r}: {exc}") from exc
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise FilterError(f"{name} has the wrong type: {value!r}")
    return value


def _year_range(wanted: Any) -> dict[str, int]:
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        return {"min": wanted, "max": wanted}
    if not isinstance(wanted, dict) or not wanted or set(wanted) - set(YEAR_BOUNDS):
        raise FilterError(f"filter 'year' takes a year or {{'min': Y, 'max': Y}}, got {wanted!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in wanted.values()):
        raise FilterError(f"filter 'year' bounds must be integers, got {wanted!r}")
    return dict(wanted)


def parse_year(value: object) -> int:
    """A catalogue year as a number (-1 when it is not one: "", "nan", "n/a"); "2012.0" from a float column is 2012."""
    try:
        year = float(str(value))
    except ValueError:
        return -1
    return int(year) if year == year and year.is_integer() else -1


class ItemAttributes:
    """Attributes per index position (see the module docstring); positions only grow, as the index's do."""

    def __init__(
        self,
        item_ids: np.ndarray,
        codes: dict[str, np.ndarray],
        books: dict[str, list[str]],
        year: np.ndarray,
        family: np.ndarray,
        family_of_key: dict[str, int],
    ) -> None:
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.codes = {c: np.asarray(codes[c], dtype=np.int32) for c in FILTER_COLUMNS}
        self.books = {c: list(books[c]) for c in FILTER_COLUMNS}
        self.code_of = {c: {v: n for n, v in enumerate(self.books[c])} for c in FILTER_COLUMNS}
        self.year = np.asarray(year, dtype=np.int32)
        self.family = np.asarray(family, dtype=np.int64)
        self.family_of_key = dict(family_of_key)
        self.colours = colour_words(self.books[COLOUR_COLUMN])
        self._latest: tuple[np.ndarray, np.ndarray] | None = None  # ids sorted, and the latest position of each

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def of_table(cls, table: pd.DataFrame) -> ItemAttributes:
        """From the embeddings table, in its row order (the index's positions): its ``family`` column when the embed
        step wrote one (product groups, near-duplicate photos included), else families by name alone."""

        def column_of(name: str) -> pd.Series:  # a column the table lacks is unknown for every item
            return table[name] if name in table else pd.Series([""] * len(table))

        codes, books = {}, {}
        for column in FILTER_COLUMNS:
            book, inverse = np.unique(column_of(column).fillna("").astype(str).to_numpy(), return_inverse=True)
            codes[column], books[column] = inverse.astype(np.int32), [str(v) for v in book]
        year = np.array([parse_year(v) for v in column_of(YEAR_COLUMN)], dtype=np.int32)
        colours = colour_words(column_of(COLOUR_COLUMN).dropna())
        keys = [family_key(n, colours) for n in column_of(NAME_COLUMN)]
        if FAMILY_COLUMN in table:
            groups = table[FAMILY_COLUMN].to_numpy(dtype=np.int64)
        else:  # each non-empty name is a family; an unnamed item is a family of its own
            named, _ = pd.factorize(pd.Series(keys))
            groups = np.where([bool(k) for k in keys], named, -1 - np.arange(len(keys))).astype(np.int64)
        _, family = np.unique(groups, return_inverse=True)
        family_of_key = {k: int(f) for k, f in zip(keys, family, strict=True) if k}
        return cls(table[FEAST_JOIN_KEY].to_numpy(), codes, books, year, family, family_of_key)

    def append(self, item_ids: Sequence[int], rows: Mapping[str, Sequence[object]] | None) -> None:
        """Positions for items just appended to the index, with their attributes (None: all unknown, so the items
        pass no attribute filter). A product joins the family of its name; an unknown name starts a new family."""
        count = len(item_ids)
        rows = rows or {}
        for column in FILTER_COLUMNS:
            values = rows.get(column) or [None] * count
            book, code_of = self.books[column], self.code_of[column]
            new = []
            for value in values:
                if not isinstance(value, str):
                    new.append(-1)
                    continue
                if value not in code_of:
                    code_of[value] = len(book)
                    book.append(value)
                new.append(code_of[value])
            self.codes[column] = np.concatenate([self.codes[column], np.asarray(new, dtype=np.int32)])
        self.year = np.concatenate([self.year, [parse_year(v) for v in rows.get(YEAR_COLUMN) or [None] * count]])
        self.year = self.year.astype(np.int32)
        families = []
        next_family = int(self.family.max()) + 1 if len(self.family) else 0
        for name in rows.get(NAME_COLUMN) or [None] * count:
            key = family_key(name, self.colours)
            if key not in self.family_of_key or not key:
                if key:
                    self.family_of_key[key] = next_family
                families.append(next_family)
                next_family += 1
            else:
                families.append(self.family_of_key[key])
        self.family = np.concatenate([self.family, np.asarray(families, dtype=np.int64)])
        self.item_ids = np.concatenate([self.item_ids, np.asarray(item_ids, dtype=np.int64)])
        self._latest = None

    def passing(self, item_filter: ItemFilter) -> np.ndarray:
        """A bool mask over positions: True where the item meets every attribute condition (exclusions are by id:
        ``ItemIndex`` applies them)."""
        mask = np.ones(len(self.item_ids), dtype=bool)
        for column, allowed in item_filter.values.items():
            wanted = [self.code_of[column][v] for v in allowed if v in self.code_of[column]]
            mask &= np.isin(self.codes[column], wanted) if len(wanted) > 1 else self.codes[column] == (wanted or [-2])[0]
        if item_filter.year_min is not None:
            mask &= self.year >= item_filter.year_min
        if item_filter.year_max is not None:
            mask &= (self.year <= item_filter.year_max) & (self.year >= 0)
        return mask

    def positions_of(self, item_ids: np.ndarray) -> np.ndarray:
        """The latest position of each item (-1: not indexed): a replaced item's newest attributes count."""
        if self._latest is None:
            order = np.argsort(self.item_ids, kind="stable")  # a later position of one id sorts after an earlier one
            self._latest = self.item_ids[order], order
        ids, order = self._latest
        ids_wanted = np.asarray(item_ids, dtype=np.int64)
        at = np.searchsorted(ids, ids_wanted, side="right") - 1
        found = (at >= 0) & (ids[np.maximum(at, 0)] == ids_wanted) if len(ids) else np.zeros(len(ids_wanted), bool)
        return np.where(found, order[np.maximum(at, 0)] if len(ids) else -1, -1)

    def codes_of(self, column: str, item_ids: np.ndarray) -> np.ndarray:
        """Codes of ``column`` for these items (-1: unknown item or value)."""
        at = self.positions_of(item_ids)
        return np.where(at >= 0, self.codes[column][np.maximum(at, 0)], -1)

    def families_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Family of each item; an unknown item is a family of its own (distinct negative numbers)."""
        at = self.positions_of(item_ids)
        return np.where(at >= 0, self.family[np.maximum(at, 0)], -1 - np.arange(len(at)))

    def save(self, directory: Path) -> None:
        keys = list(self.family_of_key)
        arrays: dict[str, np.ndarray] = {
            "item_ids": self.item_ids,
            "year": self.year,
            "family": self.family,
            "family_keys": np.array(keys, dtype=str),
            "family_key_codes": np.array([self.family_of_key[k] for k in keys], dtype=np.int64),
            **{f"codes_{c}": self.codes[c] for c in FILTER_COLUMNS},
            **{f"book_{c}": np.array(self.books[c], dtype=str) for c in FILTER_COLUMNS},
        }
        np.savez(directory / ITEM_ATTRIBUTES_FILE, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: Path) -> ItemAttributes | None:
        """The attributes saved beside an index (None for indexes built before they were kept)."""
        path = directory / ITEM_ATTRIBUTES_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as saved:
            return cls(
                saved["item_ids"],
                {c: saved[f"codes_{c}"] for c in FILTER_COLUMNS},
                {c: [str(v) for v in saved[f"book_{c}"]] for c in FILTER_COLUMNS},
                saved["year"],
                saved["family"],
                dict(zip((str(k) for k in saved["family_keys"]), saved["family_key_codes"].tolist(), strict=True)),
            )
