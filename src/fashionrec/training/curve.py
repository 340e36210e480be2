"""The training curve: one page per run with the per-epoch loss and holdout accuracy (KFP's HTML artifact)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from fashionrec.charts import line_chart
from fashionrec.config import TRAINING_HISTORY_FILE
from fashionrec.training.card import ModelCard


def training_curve_html(model_dir: Path) -> str:
    """The page for the model written into ``model_dir`` (its model.json and history.json)."""
    card = ModelCard.load(model_dir)
    history = json.loads((model_dir / TRAINING_HISTORY_FILE).read_text())
    accuracy = [r["holdout_accuracy"] for r in history if r["holdout_accuracy"] is not None]
    kept = card.metrics.get("kept_epoch")
    rows = "".join(epoch_row(r, bold=r["epoch"] == kept) for r in history)
    kept_line = f"kept: epoch {kept:.0f} (in bold)" if kept is not None else ""
    return (
        f"<html><head><meta charset='utf-8'><title>training {html.escape(card.model_version)}</title></head><body>"
        f"<h1>Training of model {html.escape(card.model_version)}</h1>"
        f"<p>{html.escape(card.backbone)}, {len(history)} epochs, {kept_line}</p>"
        f"<h2>Holdout accuracy</h2>{line_chart({'holdout accuracy': accuracy}, x_label='epoch')}"
        f"<h2>Training loss (last step of each epoch)</h2>{line_chart({'loss': [r['loss'] for r in history]}, x_label='epoch')}"
        "<table border='1' cellpadding='3'><tr><th>epoch</th><th>loss</th><th>holdout accuracy</th><th>images/s</th>"
        f"<th>minutes</th></tr>{rows}</table></body></html>"
    )


def epoch_row(record: dict[str, Any], bold: bool) -> str:
    accuracy = "" if record["holdout_accuracy"] is None else f"{record['holdout_accuracy']:.3f}"
    speed, minutes = f"{record['images_per_second']:.0f}", f"{record['seconds'] / 60:.1f}"
    cells = (f"{record['epoch']:.0f}", f"{record['loss']:.3f}", accuracy, speed, minutes)
    style = ' style="font-weight:bold"' if bold else ""
    return f"<tr{style}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
