"""Simulated shoppers for the demo, the experiments and the tests: people who ask for "more like this" and click.

So that clicks carry information the training label does not, a shopper's taste rests on attributes the encoder is
not trained on (``usage``, ``season``) and one it learns only as a side task (``baseColour``), and shoppers keep to
their ``gender``'s products. A click needs both: the item must be relevant to the query (same articleType; a little
for the same subCategory) *and* to the shopper's taste, so the articleType alone never decides it. On top:

- position bias: rank r is looked at with probability 1 / r ** POSITION_BIAS;
- noise: each shopper's click propensity is scaled by a log-normal factor;
- purchases follow some clicks, more often for items that match the taste.

Everything is drawn from one seeded generator: the same seed and answers give the same shoppers and clicks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fashionrec.engagement.events import cloud_event

TASTE_COLUMNS = ("baseColour", "usage", "season")
POSITION_BIAS = 0.8
SAME_TYPE, SAME_SUBCATEGORY, UNRELATED = 0.7, 0.12, 0.01  # relevance to the query
TASTE_FLOOR = 0.2  # propensity of a relevant item that matches nothing of the taste (1.0 when all of it matches)
PROPENSITY_NOISE = 0.3  # sigma of the shopper's log-normal click propensity
PURCHASE_GIVEN_CLICK = (0.05, 0.35)  # purchase probability after a click: no taste match .. full match


@dataclass(frozen=True)
class Shopper:
    session_id: str
    gender: str
    taste: dict[str, frozenset[str]]  # per TASTE_COLUMNS, the values this shopper likes
    propensity: float  # multiplies every click probability

    def taste_match(self, item: Mapping[str, str]) -> float:
        return sum(item.get(column, "") in liked for column, liked in self.taste.items()) / len(self.taste)


@dataclass
class Shoppers:
    """A population over a catalogue: ``attributes[item_id]`` holds at least gender, subCategory, articleType and
    the TASTE_COLUMNS."""

    attributes: Mapping[int, Mapping[str, str]]
    seed: int = 0
    click_scale: float = 1.0  # below 1: pickier shoppers (a season's change of taste: what an engagement drop looks like)
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._ids = np.asarray(sorted(self.attributes), dtype=np.int64)
        self._values = {
            column: Counter(str(self.attributes[i].get(column, "")) for i in self._ids.tolist())
            for column in (*TASTE_COLUMNS, "gender")
        }

    def _draw(self, column: str, size: int) -> frozenset[str]:
        values, counts = zip(*self._values[column].most_common(), strict=True)
        p = np.asarray(counts, dtype=np.float64) / sum(counts)
        picked = self.rng.choice(len(values), size=min(size, len(values)), replace=False, p=p)
        return frozenset(values[i] for i in picked)

    def shopper(self) -> Shopper:
        (gender,) = self._draw("gender", 1)
        taste = {"baseColour": self._draw("baseColour", 2), "usage": self._draw("usage", 1), "season": self._draw("season", 1)}
        session = f"s{self.rng.integers(2**62):016x}"  # anonymous, and reproducible with the seed
        return Shopper(session, gender, taste, float(self.rng.lognormal(0.0, PROPENSITY_NOISE)))

    def query_item(self, shopper: Shopper) -> int:
        """An item the shopper starts from: one of their gender's, preferring their taste."""
        for _ in range(50):
            item = int(self.rng.choice(self._ids))
            attrs = self.attributes[item]
            if attrs.get("gender") == shopper.gender and self.rng.random() < 0.3 + 0.7 * shopper.taste_match(attrs):
                return item
        return int(self.rng.choice(self._ids))

    def click_probability(self, shopper: Shopper, query: int, item: int, rank: int) -> float:
        asked, shown = self.attributes[query], self.attributes.get(item)
        if shown is None:
            return 0.0
        if shown.get("articleType") == asked.get("articleType"):
            relevance = SAME_TYPE
        elif shown.get("subCategory") == asked.get("subCategory"):
            relevance = SAME_SUBCATEGORY
        else:
            relevance = UNRELATED
        if shown.get("gender") not in (shopper.gender, "Unisex"):
            relevance *= 0.2
        taste = TASTE_FLOOR + (1 - TASTE_FLOOR) * shopper.taste_match(shown)
        return min(0.95, self.click_scale * relevance * taste * shopper.propensity / rank**POSITION_BIAS)

    def react(self, shopper: Shopper, query: int, shown: list[int], request_id: str, model_version: str) -> list[dict[str, Any]]:
        """The CloudEvents a client reports for one answer: an impression per item shown, then clicks and purchases."""
        events = []
        for rank, item in enumerate(shown, start=1):
            events.append(self._event("impression", request_id, model_version, item, rank, shopper))
        for rank, item in enumerate(shown, start=1):
            if self.rng.random() < self.click_probability(shopper, query, item, rank):
                events.append(self._event("click", request_id, model_version, item, rank, shopper))
                low, high = PURCHASE_GIVEN_CLICK
                if self.rng.random() < low + (high - low) * shopper.taste_match(self.attributes[item]):
                    events.append(self._event("purchase", request_id, model_version, item, rank, shopper))
        return events

    def _event(self, kind: str, request_id: str, version: str, item: int, rank: int, shopper: Shopper) -> dict[str, Any]:
        event_id = f"{request_id}-{kind[0]}{rank}"
        return cloud_event(kind, event_id, request_id, version, int(item), rank, shopper.session_id, source="fashionrec/shoppers")
