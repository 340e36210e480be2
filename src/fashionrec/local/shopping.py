"""Simulated shoppers at a running transformer: each asks for "more like" an item it likes (a v2 item query), looks
at the answer and reports what it saw and chose through the feedback API, exactly as a shop's client would."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fashionrec.data.catalog import STYLES_FILE, read_styles
from fashionrec.deploy.experiment import ExperimentResult, ExperimentSettings, run_experiment
from fashionrec.deploy.rollout import Servable, Target
from fashionrec.engagement.shoppers import TASTE_COLUMNS, Shoppers
from fashionrec.serving.client import infer, item_request, parse_hits, post_feedback

ANSWER_SIZE = 10  # what a shopper is shown per query
QUERIES_PER_SESSION = 3


def catalogue_attributes(catalog: Path) -> dict[int, dict[str, str]]:
    """What the simulated shoppers know of each product: the attributes their taste and relevance read."""
    rows = read_styles(catalog / STYLES_FILE).rows
    columns = ["gender", "subCategory", "articleType", *TASTE_COLUMNS]
    return {int(row["id"]): {c: str(row[c]) for c in columns} for _, row in rows.iterrows() if str(row["id"]).isdigit()}


@dataclass
class Shopping:
    """What a round of shopping did: answers shown per model version and the events posted."""

    answers: Counter[str] = field(default_factory=Counter)
    events: int = 0


def go_shopping(transformer_url: str, shoppers: Shoppers, answers: int, shopping: Shopping | None = None) -> Shopping:
    """``answers`` queries by sessions of QUERIES_PER_SESSION, each answer's events posted as one batch."""
    shopping = shopping or Shopping()
    shopper = shoppers.shopper()
    for n in range(answers):
        if n % QUERIES_PER_SESSION == 0:
            shopper = shoppers.shopper()
        query = shoppers.query_item(shopper)
        response = infer(transformer_url, item_request([query], top_k=ANSWER_SIZE))
        shown = [hit.item_id for hit in parse_hits(response)[0]]
        version = str(response["model_version"])
        shopping.events += post_feedback(transformer_url, shoppers.react(shopper, query, shown, str(response["id"]), version))
        shopping.answers[version] += 1
    return shopping


def experiment_with_shoppers(
    target: Target, candidate: Servable, catalog: Path, settings: ExperimentSettings, answers_per_look: int,
    promote: bool = False, seed: int = 0,
) -> ExperimentResult:  # fmt: skip
    """An experiment on ``target`` with simulated shoppers as its traffic (``answers_per_look`` between looks; 0:
    real shoppers only)."""
    if answers_per_look <= 0:
        return run_experiment(target, candidate, settings, promote=promote)
    shoppers = Shoppers(catalogue_attributes(catalog), seed=seed)
    shopping = Shopping()

    def traffic() -> None:
        go_shopping(target.endpoint(), shoppers, answers_per_look, shopping)

    return run_experiment(target, candidate, settings, traffic=traffic, promote=promote)
