"""Console output for people: the rich console, progress bars for long steps and tables of recommendations. Everything
goes to stderr so that command output (JSON) stays parseable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from fashionrec.serving.client import Hit
    from fashionrec.training.registry import RegisteredVersion

console = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


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
