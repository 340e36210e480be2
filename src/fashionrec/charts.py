"""Small inline SVG charts for the HTML reports (no plotting library, no file beside the report)."""

from __future__ import annotations

import html

import numpy as np


def line_chart(series: dict[str, list[float]], threshold: float | None = None, log_scale: bool = False, width: int = 480,
          height: int = 180, x_label: str = "window", threshold_label: str = "α") -> str:  # fmt: skip
    """Lines over window number as SVG (log scale for p-values); a dashed threshold. ``x_label`` names the points."""
    values = [v for points in series.values() for v in points]
    if not values:
        return "<p>not enough logged queries for one window</p>"

    def scale(value: float) -> float:
        return float(np.log10(max(value, 1e-4))) if log_scale else value

    low, high = (scale(1e-4), 0.0) if log_scale else (min(0.0, min(values)), max(1.0, max(values)))
    count = max(len(points) for points in series.values())

    def point(i: int, value: float) -> str:
        x = width * (i / max(count - 1, 1))
        return f"{x:.1f},{height - height * (scale(value) - low) / (high - low):.1f}"

    colours = ("#1f6fb4", "#d33", "#2a2")
    lines = [
        f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(point(i, v) for i, v in enumerate(points))}"/>'
        for (_, points), colour in zip(series.items(), colours, strict=False)
    ]
    if threshold is not None:
        y = point(0, threshold).split(",")[1]
        lines.append(f'<line x1="0" x2="{width}" y1="{y}" y2="{y}" stroke="#000" stroke-dasharray="4 3"/>')
    # the y range, written on the plot: without it a line says nothing
    top, bottom = ("1", "0.0001") if log_scale else (f"{high:.3g}", f"{low:.3g}")
    lines.append(f'<text x="2" y="12" font-size="11">{top}</text><text x="2" y="{height - 2}" font-size="11">{bottom}</text>')
    legend = ", ".join(f'<span style="color:{c}">{html.escape(name)}</span>' for name, c in zip(series, colours, strict=False))
    legend += f" by {x_label} 1 to {count}" + (" (log scale)" if log_scale else "")
    legend += f"; dashed: {threshold_label} = {threshold}" if threshold is not None else ""
    return f'<figure><svg width="{width}" height="{height}" role="img">{"".join(lines)}</svg><figcaption>{legend}</figcaption></figure>'
