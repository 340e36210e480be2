"""Simulated shoppers: clicks follow the query's relevance *and* a taste the training label does not carry."""

from __future__ import annotations

import json

import numpy as np

from fashionrec.engagement.events import MAX_EVENTS_PER_POST, parse_feedback
from fashionrec.engagement.sequential import CANDIDATE_BETTER, Arm, SequentialPolicy, compare
from fashionrec.engagement.shoppers import Shoppers
from fashionrec.engagement.tally import tally

TYPES, COLOURS, USAGES, SEASONS = ("Tshirts", "Jeans", "Watches", "Heels"), ("Black", "Blue", "Red", "White"), ("Casual", "Formal"), ("Summer", "Winter")  # fmt: skip


def catalogue(items: int = 400, seed: int = 0) -> dict[int, dict[str, str]]:
    rng = np.random.default_rng(seed)
    return {
        item: {
            "gender": "Women",
            "articleType": TYPES[item % len(TYPES)],
            "subCategory": "Topwear" if item % len(TYPES) < 2 else "Other",
            "baseColour": str(rng.choice(COLOURS)),
            "usage": str(rng.choice(USAGES)),
            "season": str(rng.choice(SEASONS)),
        }
        for item in range(items)
    }


def serve(shoppers: Shoppers, answer: object, answers: int, version: str) -> list[dict[str, object]]:
    events = []
    for n in range(answers):
        shopper = shoppers.shopper()
        query = shoppers.query_item(shopper)
        events += shoppers.react(shopper, query, answer(query, shopper), f"{version}-{n}", version)  # type: ignore[operator]
    return events


def test_a_model_that_finds_the_same_type_earns_more_clicks_and_the_test_says_so() -> None:
    items = catalogue()
    by_type = {t: [i for i, a in items.items() if a["articleType"] == t] for t in TYPES}
    rng = np.random.default_rng(3)

    def strong(query: int, shopper: object) -> list[int]:
        return [int(i) for i in rng.choice([i for i in by_type[items[query]["articleType"]] if i != query], 10, replace=False)]

    def weak(query: int, shopper: object) -> list[int]:
        return [int(i) for i in rng.choice([i for i in items if i != query], 10, replace=False)]

    shoppers = Shoppers(items, seed=5)
    events = serve(shoppers, weak, 1500, "weak") + serve(shoppers, strong, 1500, "strong")
    posts = [
        json.dumps(events[start : start + MAX_EVENTS_PER_POST]).encode() for start in range(0, len(events), MAX_EVENTS_PER_POST)
    ]
    seen = tally(event for post in posts for event in parse_feedback(post, 0.0))  # through the collector's parser
    assert seen["strong"].ctr > 1.5 * seen["weak"].ctr
    result = compare(
        Arm(seen["weak"].answers, seen["weak"].clicked), Arm(seen["strong"].answers, seen["strong"].clicked), SequentialPolicy()
    )
    assert result.decision == CANDIDATE_BETTER


def test_taste_decides_among_items_of_the_queried_type_and_rank_one_is_seen_most() -> None:
    items = catalogue()
    shoppers = Shoppers(items, seed=1)
    shopper = shoppers.shopper()
    query = shoppers.query_item(shopper)
    same_type = [i for i, a in items.items() if a["articleType"] == items[query]["articleType"] and i != query]
    liked = max(same_type, key=lambda i: shopper.taste_match(items[i]))
    disliked = min(same_type, key=lambda i: shopper.taste_match(items[i]))
    assert shopper.taste_match(items[liked]) > shopper.taste_match(items[disliked])
    assert shoppers.click_probability(shopper, query, liked, 1) > 1.5 * shoppers.click_probability(shopper, query, disliked, 1)
    assert shoppers.click_probability(shopper, query, liked, 1) > 2 * shoppers.click_probability(shopper, query, liked, 5)


def test_the_same_seed_gives_the_same_shoppers_and_clicks() -> None:
    def clicks(seed: int) -> list[dict[str, object]]:
        shoppers = Shoppers(catalogue(), seed=seed)
        return serve(shoppers, lambda query, shopper: list(range(10)), 50, "v")

    assert clicks(4) == clicks(4) != clicks(5)
