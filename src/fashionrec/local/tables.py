"""Tables for people at the console: one query's recommendations, the registry's model versions, engagement."""

from __future__ import annotations

from rich.table import Table

from fashionrec.console import console
from fashionrec.engagement.tally import Engagement
from fashionrec.serving.client import Hit
from fashionrec.training.registry import RegisteredVersion


def print_hits(title: str, hits: list[Hit]) -> None:
    """One query's recommendations as a table."""
    table = Table(title=title)
    for column in ("rank", "item_id", "score", "articleType", "baseColour", "productDisplayName"):
        table.add_column(column)
    for rank, hit in enumerate(hits, start=1):
        table.add_row(
            str(rank),
            str(hit.item_id),
            f"{hit.score:.3f}",
            hit.attributes.get("articleType", ""),
            hit.attributes.get("baseColour", ""),
            hit.attributes.get("productDisplayName", ""),
        )
    console.print(table)


def print_versions(versions: list[RegisteredVersion], title: str = "fashionrec model versions") -> None:
    """Registered model versions with their aliases and headline metrics."""
    table = Table(title=title)
    for column in ("version", "aliases", "model_version", "precision_at_5", "ndcg_at_10", "dataset", "git commit"):
        table.add_column(column, overflow="fold")
    for v in versions:
        table.add_row(
            str(v.version),
            ",".join(v.aliases),
            v.model_version,
            f"{v.metrics.get('precision_at_5', float('nan')):.4f}",
            f"{v.metrics.get('ndcg_at_10', float('nan')):.4f}",
            v.dataset_digest[:12],
            v.git_commit[:10],
        )
    console.print(table)


def print_engagement(engagement: dict[str, Engagement], title: str = "what shoppers did, per model version") -> None:
    """Answers shown, CTR@5, MRR of clicks and purchases per model version."""
    table = Table(title=title)
    for column in ("model_version", "answers shown", "CTR@5", "MRR", "clicks", "purchases"):
        table.add_column(column)
    for version, seen in sorted(engagement.items()):
        table.add_row(
            version, f"{seen.answers:.0f}", f"{seen.ctr:.3f}", f"{seen.mrr:.3f}", f"{seen.clicks:.0f}", f"{seen.purchases:.0f}"
        )
    console.print(table)
