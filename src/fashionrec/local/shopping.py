"""Simulated shoppers at a running transformer: each asks for "more like" an item it likes (a v2 item query), looks
at the answer and reports what it saw and chose through the feedback API, exactly as a shop's client would."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fashionrec.config import RETRAINING_COOLDOWN_HOURS
from fashionrec.console import console
from fashionrec.data.catalog import STYLES_FILE, read_styles
from fashionrec.deploy.experiment import ExperimentResult, ExperimentSettings, Look, run_experiment
from fashionrec.deploy.local_target import LocalServing, LocalTarget, stable_version
from fashionrec.deploy.rollout import Servable, Target
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.engagement.events import FeedbackEvent
from fashionrec.engagement.sequential import SequentialPolicy
from fashionrec.engagement.shoppers import TASTE_COLUMNS, Shoppers
from fashionrec.engagement.tally import tally
from fashionrec.local.deployment import production_deployment
from fashionrec.local.monitoring_loop import retrain_on
from fashionrec.local.retraining import hold_reason
from fashionrec.local.stages import run_stages
from fashionrec.local.tables import print_engagement
from fashionrec.monitoring.report import Decision, decide_retraining, engagement_drop
from fashionrec.params import TrainConfig
from fashionrec.serving.client import infer, item_request, parse_hits, post_feedback
from fashionrec.storage import SkippedLines, read_log_records
from fashionrec.workdir import WorkDir

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
    promote: bool = False, seed: int = 0, shopping: Shopping | None = None,
) -> ExperimentResult:  # fmt: skip
    """An experiment on ``target`` with simulated shoppers as its traffic (``answers_per_look`` between looks; 0:
    real shoppers only); what they did is added to ``shopping``."""

    def show(look: Look) -> None:
        arms = look.comparison
        console.print(
            f"  look at {look.seconds:4.0f} s: CTR@5 {arms.baseline.rate:.3f} ({arms.baseline.answers:.0f} answers) vs "
            f"candidate {arms.candidate.rate:.3f} ({arms.candidate.answers:.0f}): {arms.decision}",
            highlight=False,
        )

    if answers_per_look <= 0:
        return run_experiment(target, candidate, settings, promote=promote, on_look=show)
    shoppers = Shoppers(catalogue_attributes(catalog), seed=seed)
    shopping = shopping if shopping is not None else Shopping()

    def traffic() -> None:
        go_shopping(target.endpoint(), shoppers, answers_per_look, shopping)

    return run_experiment(target, candidate, settings, traffic=traffic, promote=promote, on_look=show)


def logged_events(event_log: Path, at_least: int, timeout_s: float = 30.0) -> list[FeedbackEvent]:
    """The event log once it holds ``at_least`` events (the transformer flushes every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = list(read_log_records(str(event_log), FeedbackEvent.from_log_line, SkippedLines()))
        if len(events) >= at_least or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


@dataclass(frozen=True)
class ShoppersOutcome:
    experiment: ExperimentResult
    report: Path
    drop: Decision
    retrained: str | None  # the first triggered retraining's model version (None: held or none)
    second_tick_held: bool


def run_shoppers(serving: LocalServing, catalog: Path, workdir: Path, config: TrainConfig, answers: int = 400) -> ShoppersOutcome:
    """The demo's shoppers: engagement with production, an experiment against a deliberately weak model (one epoch),
    then pickier shoppers whose engagement drop triggers one retraining (a second monitor tick is held)."""
    url, event_log = serving.transformer_url, WorkDir(workdir).event_log
    attributes = catalogue_attributes(catalog)
    production = stable_version(serving.live_dir)
    shopping = go_shopping(url, Shoppers(attributes, seed=1), answers)
    print_engagement(tally(logged_events(event_log, shopping.events)), f"{answers} simulated shoppers' answers")

    console.print("a deliberately weak candidate: the same pipeline stages, one epoch of training")
    weak = run_stages(catalog, workdir / "weak-model", dataclasses.replace(config, epochs=1, seed=config.seed + 9))
    settings = ExperimentSettings(share=0.5, max_answers=3000, poll_s=0.0, policy=SequentialPolicy(min_answers=300))
    target = LocalTarget(serving)
    result = experiment_with_shoppers(target, weak.deployment, catalog, settings, answers_per_look=100, seed=2, shopping=shopping)
    report = WorkDir(workdir).experiments / f"{result.candidate_version}.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(result.html(), encoding="utf-8")
    final = result.final
    console.print(f"experiment: {final.summary if final else 'no look'}; winner {result.winner or 'none'}; report: {report}")

    shift = time.time()
    go_shopping(url, Shoppers(attributes, seed=3, click_scale=0.4), answers, shopping)
    console.print(f"{answers} answers to pickier shoppers (a change of season: each click a little less likely)")
    events = logged_events(event_log, shopping.events)  # everything posted so far, flushed
    engagement = engagement_drop(events, production, time.time(), recent_s=time.time() - shift)
    profile = ReferenceProfile.of_index(production_deployment(workdir).index_dir)
    drop = decide_retraining([], 0, profile.catalogue_size if profile else 0, engagement)
    console.print(
        f"monitor tick 1: {'retrain' if drop.retrain else 'no retraining'} (signals: {', '.join(drop.signals) or 'none'})"
    )
    for reason in drop.reasons:
        console.print(f"  - {reason}", markup=False)
    retrained = retrain_on(serving, catalog, workdir, config) if drop.retrain else None
    held = hold_reason(workdir, RETRAINING_COOLDOWN_HOURS * 3600)
    console.print(f"monitor tick 2, same decision: {'held: ' + held if held else 'would start another run'}")
    return ShoppersOutcome(result, report, drop, retrained, held is not None)
