"""The model gate: promote a candidate only if it beats production on the same evaluation split.

Rule: the primary metric (precision@5 by default) must strictly improve, by at least ``min_improvement``
(absolute; a negative value accepts a drop of up to its size), and no guard metric (catalogue coverage@10, nDCG@10)
may drop by more than its tolerance. No production model yet: promote. Both models are scored on the same held-out
product groups (``fashionrec.data.split``), ranked as the transformer ranks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GatePolicy:
    primary: str = "precision_at_5"
    min_improvement: float = 0.0
    guards: dict[str, float] = field(default_factory=lambda: {"catalogue_coverage_at_10": 0.02, "ndcg_at_10": 0.01})


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str]
    markdown: str


def decide(candidate: dict[str, Any], production: dict[str, Any] | None, policy: GatePolicy | None = None) -> GateDecision:
    """Metrics dicts as evaluate writes them (metrics.json: numbers plus model_version)."""
    policy = policy or GatePolicy()
    for name in [policy.primary, *policy.guards]:
        if name not in candidate:
            raise KeyError(f"candidate metrics lack {name!r}")
    rows = [
        f"| {name} | {candidate[name]:.4f} | {'—' if production is None else f'{production[name]:.4f}'} |"
        for name in [policy.primary, *policy.guards]
    ]
    reasons: list[str] = []
    if production is None:
        promote = True
        reasons.append("no production model yet: the first candidate is promoted")
    else:
        gain = candidate[policy.primary] - production[policy.primary]
        # A tie is no reason to deploy; a negative min_improvement explicitly accepts a drop up to its size.
        promote = gain >= policy.min_improvement and (gain > 0 or policy.min_improvement < 0)
        reasons.append(
            f"{policy.primary} {'improves' if gain > 0 else 'changes'} by {gain:+.4f} (required: >= {policy.min_improvement:+.4f})"
            + ("" if promote else ": not enough")
        )
        for name, tolerance in policy.guards.items():
            drop = production[name] - candidate[name]
            if drop > tolerance:
                promote = False
                reasons.append(f"guard {name} drops by {drop:.4f}, beyond its tolerance {tolerance:.4f}")
            else:
                reasons.append(f"guard {name} holds (change {-drop:+.4f}, tolerance {tolerance:.4f})")
    verdict = "PROMOTE" if promote else "REJECT"
    markdown = "\n".join(
        [
            f"# Model gate: {verdict}",
            "",
            f"candidate {candidate.get('model_version', '?')} vs production {'none' if production is None else production.get('model_version', '?')}",
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
