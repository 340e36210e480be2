"""The model gate: promote a candidate only if it is good enough on its own and beats production on the same
evaluation split.

Rules, in order: the primary metric (precision@5 by default) must reach an absolute ``floor``, whether or not a
production model exists (fail closed: the first model too); it must strictly improve on production's, by at least
``min_improvement`` (absolute; a negative value accepts a drop of up to its size); and no guard metric (catalogue
coverage@10, nDCG@10) may drop by more than its tolerance. No production model yet: the floor alone decides. Both
models are scored on the same held-out product groups (``fashionrec.data.split``), ranked as the transformer ranks
them. The Markdown decision names the rule that decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fashionrec.config import MIN_PRECISION_AT_5
from fashionrec.engagement.replay import REPLAY_K
from fashionrec.training.bootstrap import CONFIDENCE, group_bootstrap_interval

# Shown in the gate's table, deciding nothing: the share of shoppers' logged clicks the model's top 5 recovers.
REPORTED_METRICS = (f"replay_recall_at_{REPLAY_K}",)


@dataclass(frozen=True)
class GatePolicy:
    primary: str = "precision_at_5"
    min_improvement: float = 0.0
    floor: float = MIN_PRECISION_AT_5  # the primary metric's absolute minimum
    guards: dict[str, float] = field(default_factory=lambda: {"catalogue_coverage_at_10": 0.02, "ndcg_at_10": 0.01})


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str]
    markdown: str


@dataclass(frozen=True)
class PairedGain:
    """Candidate minus production precision@5 on the same queries, with its group-bootstrap interval."""

    mean: float
    low: float
    high: float
    queries: int
    groups: int

    def sentence(self) -> str:
        luck = " (0 is inside it: the gain is within the luck of the draw)" if self.low <= 0 <= self.high else ""
        return (
            f"precision_at_5 gain on the same {self.queries} queries ({self.groups} product groups): {self.mean:+.4f}, "
            f"{CONFIDENCE:.0%} interval [{self.low:+.4f}, {self.high:+.4f}] by a paired group bootstrap{luck}; "
            "reported, the rules decide"
        )


def paired_gain(candidate: pd.DataFrame, production: pd.DataFrame) -> PairedGain:
    """From two evaluations' per-query tables (item_id, group, precision_at_5) of the same split."""
    joined = candidate.merge(production, on=["item_id", "group"], suffixes=("_candidate", "_production"))
    if len(joined) < len(candidate):
        raise ValueError(
            f"the evaluations are not of the same queries: {len(candidate) - len(joined)} of the candidate's are not production's"
        )
    differences = (joined["precision_at_5_candidate"] - joined["precision_at_5_production"]).to_numpy()
    low, high = group_bootstrap_interval(differences, joined["group"].to_numpy())
    return PairedGain(float(differences.mean()), low, high, len(joined), int(joined["group"].nunique()))


def decide(
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    policy: GatePolicy | None = None,
    paired: PairedGain | None = None,
) -> GateDecision:
    """Metrics dicts as evaluate writes them (metrics.json: numbers plus model_version). ``paired``: the paired
    interval of the primary metric's gain, reported beside the rules."""
    policy = policy or GatePolicy()
    for name in [policy.primary, *policy.guards]:
        if name not in candidate:
            raise KeyError(f"candidate metrics lack {name!r}")
    rows = [
        f"| {name} | {candidate[name]:.4f} | {'—' if production is None else f'{production[name]:.4f}'} |"
        for name in [policy.primary, *policy.guards]
    ]
    rows += [  # reported beside the rules, deciding nothing: the offline replay of shoppers' clicks
        f"| {name} (reported) | {candidate[name]:.4f} | {f'{production[name]:.4f}' if production and name in production else '—'} |"
        for name in REPORTED_METRICS
        if name in candidate and candidate[name] == candidate[name]  # not NaN
    ]
    reasons: list[str] = []
    value = candidate[policy.primary]
    above_floor = value >= policy.floor
    reasons.append(
        f"{policy.primary} {value:.4f} {'reaches' if above_floor else 'is below'} the floor {policy.floor:.4f}"
        + ("" if above_floor else ": rejected whatever production is")
    )
    decided_by = "the floor"
    if production is None:
        promote = above_floor
        reasons.append("no production model yet" + (": the floor alone decides" if above_floor else ""))
    else:
        gain = candidate[policy.primary] - production[policy.primary]
        # A tie is no reason to deploy; a negative min_improvement explicitly accepts a drop up to its size.
        improves = gain >= policy.min_improvement and (gain > 0 or policy.min_improvement < 0)
        promote = above_floor and improves
        if above_floor:
            decided_by = "the improvement over production"
        reasons.append(
            f"{policy.primary} {'improves' if gain > 0 else 'changes'} by {gain:+.4f} (required: >= {policy.min_improvement:+.4f})"
            + ("" if improves else ": not enough")
        )
        for name, tolerance in policy.guards.items():
            drop = production[name] - candidate[name]
            if drop > tolerance:
                if promote:
                    decided_by = f"the guard on {name}"
                promote = False
                reasons.append(f"guard {name} drops by {drop:.4f}, beyond its tolerance {tolerance:.4f}")
            else:
                reasons.append(f"guard {name} holds (change {-drop:+.4f}, tolerance {tolerance:.4f})")
        if promote:
            decided_by = "every rule passing: the floor, the improvement over production, the guards"
        if paired is not None:
            reasons.append(paired.sentence())
    verdict = "PROMOTE" if promote else "REJECT"
    markdown = "\n".join(
        [
            f"# Model gate: {verdict}",
            "",
            f"candidate {candidate.get('model_version', '?')} vs production {'none' if production is None else production.get('model_version', '?')}",
            "",
            f"Decided by {decided_by}.",
            "",
            "| metric | candidate | production |",
            "|---|---|---|",
            *rows,
            "",
            *(f"- {r}" for r in reasons),
            "",
        ]
    )
    return GateDecision(promote, reasons, markdown)
