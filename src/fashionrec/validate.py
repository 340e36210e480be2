"""The validate stage: per-image facts, a Great Expectations suite over them, and a quarantine with reasons.

Every input row ends up exactly once in either the valid table or the quarantine table.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fashionrec.catalog import image_path, read_styles
from fashionrec.config import LABEL_COLUMN, STYLES_COLUMNS
from fashionrec.imaging import ImageDecodeError, decode_image
from fashionrec.progress import progress_bar

MIN_SIDE = 16
QUARANTINE_COLUMNS = ["line_number", "id", "reason", "detail"]


@dataclass(frozen=True)
class Check:
    """One named expectation over the facts table and the quarantine reason for rows that break it."""

    reason: str
    expectation: str
    kwargs: dict[str, object]


CHECKS: tuple[Check, ...] = (
    Check("id_not_integer", "ExpectColumnValuesToMatchRegex", {"column": "id", "regex": r"^\d+$"}),
    Check("duplicate_id", "ExpectColumnValuesToBeUnique", {"column": "id"}),
    Check("missing_label", "ExpectColumnValuesToNotBeNull", {"column": LABEL_COLUMN}),
    Check("missing_image", "ExpectColumnValuesToBeInSet", {"column": "has_image", "value_set": [True]}),
    Check("undecodable_image", "ExpectColumnValuesToBeInSet", {"column": "decodes", "value_set": [True]}),
    Check("image_too_small", "ExpectColumnValuesToBeBetween", {"column": "min_side", "min_value": MIN_SIDE}),
)


@dataclass
class ValidationResult:
    valid: pd.DataFrame  # styles columns + line_number + image (bytes) + image_sha256
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    rows_in: int
    gx_success: bool
    gx_results: list[dict[str, object]]

    @property
    def reasons(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.quarantine["reason"].value_counts().sort_index().items()}


def image_facts(catalog_dir: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """One row of facts per catalogue row: does the image exist, decode, how big is it; plus its bytes and digest."""
    facts = []
    with progress_bar() as bar:
        task = bar.add_task("image facts", total=len(rows), status="")
        for item_id in rows["id"]:
            path = image_path(catalog_dir, item_id)
            fact: dict[str, object] = {
                "has_image": path.is_file(),
                "decodes": False,
                "min_side": 0,
                "mode": None,
                "image": None,
                "image_sha256": None,
                "decode_error": None,
            }
            if fact["has_image"]:
                data = path.read_bytes()
                fact["image"] = data
                fact["image_sha256"] = hashlib.sha256(data).hexdigest()
                try:
                    image = decode_image(data)
                    fact["decodes"] = True
                    fact["min_side"] = min(image.size)
                    fact["mode"] = image.mode
                except ImageDecodeError as exc:
                    fact["decode_error"] = str(exc)
            facts.append(fact)
            bar.advance(task)
    return pd.DataFrame(facts, index=rows.index)


def run_expectations(facts: pd.DataFrame) -> tuple[dict[str, list[int]], bool, list[dict[str, object]]]:
    """Validate the facts table with a Great Expectations suite; return failing row indexes per reason."""
    import great_expectations as gx  # heavy import (seconds): only when validating

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GX's own tqdm bars would interleave with ours; the image-facts bar already shows progress.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("catalog").add_dataframe_asset("image_facts").add_batch_definition_whole_dataframe("all")
    )
    suite = gx.ExpectationSuite(name="catalog_images")
    for check in CHECKS:
        expectation_type = getattr(gx.expectations, check.expectation)
        suite.add_expectation(expectation_type(**check.kwargs, meta={"reason": check.reason}))
    columns = ["id", LABEL_COLUMN, "has_image", "decodes", "min_side"]
    batch = batch_definition.get_batch(batch_parameters={"dataframe": facts[columns].reset_index(drop=True)})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    failing: dict[str, list[int]] = {}
    summary: list[dict[str, object]] = []
    for res in result.results:
        config = res.expectation_config
        assert config is not None and config.meta is not None
        reason = str(config.meta["reason"])
        indexes = [int(i) for i in res.result.get("unexpected_index_list") or []]
        failing[reason] = indexes
        summary.append(
            {
                "reason": reason,
                "expectation": config.type,
                "success": bool(res.success),
                "unexpected_count": len(indexes),
            }
        )
    return failing, bool(result.success), summary


def validate_catalog(catalog_dir: Path) -> ValidationResult:
    styles = read_styles(catalog_dir / "styles.csv")
    rows = styles.rows.reset_index(drop=True)
    rows.loc[rows[LABEL_COLUMN].str.len() == 0, LABEL_COLUMN] = pd.NA
    facts = pd.concat([rows, image_facts(catalog_dir, rows)], axis=1)
    failing, gx_success, summary = run_expectations(facts)
    reason_of: dict[int, str] = {}
    for check in CHECKS:  # the first failing check, in CHECKS order, names the row's reason
        for index in failing.get(check.reason, []):
            reason_of.setdefault(index, check.reason)
    quarantined: list[dict[str, object]] = []
    for i, reason in sorted(reason_of.items()):
        fact = facts.iloc[i]
        quarantined.append(
            {
                "line_number": int(str(fact["line_number"])),
                "id": str(fact["id"]),
                "reason": reason,
                "detail": _detail(fact, reason),
            }
        )
    quarantined += [
        {"line_number": m.line_number, "id": None, "reason": "malformed_csv_row", "detail": f"{m.reason}: {m.raw[:200]}"}
        for m in styles.malformed
    ]
    valid = facts.drop(index=list(reason_of)).loc[:, [*STYLES_COLUMNS, "line_number", "image", "image_sha256"]]
    valid["id"] = valid["id"].astype("int64")
    return ValidationResult(
        valid=valid.reset_index(drop=True),
        quarantine=pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS),
        rows_in=len(rows) + len(styles.malformed),
        gx_success=gx_success,
        gx_results=summary,
    )


def _detail(fact: pd.Series, reason: str) -> str:
    if reason == "undecodable_image":
        return str(fact["decode_error"])
    if reason == "image_too_small":
        return f"shortest side {fact['min_side']} px < {MIN_SIDE}"
    if reason == "missing_image":
        return f"images/{fact['id']}.jpg not found"
    return f"{reason}: id={fact['id']!r}"


def write_report(result: ValidationResult, path: Path) -> None:
    """A self-contained HTML page for the KFP UI: counts, GX expectations and the quarantine table."""
    rows = "".join(
        f"<tr><td>{html.escape(str(r['expectation']))}</td><td>{html.escape(str(r['reason']))}</td>"
        f"<td class={'ok' if r['success'] else 'bad'}>{'pass' if r['success'] else 'fail'}</td><td>{r['unexpected_count']}</td></tr>"
        for r in result.gx_results
    )
    quarantine = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in rec) + "</tr>"
        for rec in result.quarantine.itertuples(index=False)
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Catalogue validation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
.ok{{color:#080}}.bad{{color:#b00;font-weight:bold}}</style></head><body>
<h1>Catalogue validation</h1>
<p>{result.rows_in} rows in, <b>{len(result.valid)}</b> valid, <b>{len(result.quarantine)}</b> quarantined.</p>
<h2>Great Expectations suite</h2><table><tr><th>expectation</th><th>reason</th><th>result</th><th>failing rows</th></tr>{rows}</table>
<h2>Quarantine</h2><table><tr>{"".join(f"<th>{c}</th>" for c in QUARANTINE_COLUMNS)}</tr>{quarantine}</table>
</body></html>"""
    path.write_text(page, encoding="utf-8")


def write_outputs(result: ValidationResult, valid_path: Path, quarantine_path: Path, report_path: Path) -> dict[str, float]:
    """Write the valid table (parquet), the quarantine (CSV) and the HTML report; return the metrics."""
    result.valid.to_parquet(valid_path, index=False)
    result.quarantine.to_csv(quarantine_path, index=False)
    write_report(result, report_path)
    metrics: dict[str, float] = {
        "rows_in": result.rows_in,
        "rows_valid": len(result.valid),
        "rows_quarantined": len(result.quarantine),
    }
    metrics.update({f"quarantined_{k}": v for k, v in result.reasons.items()})
    return metrics


def dumps_metrics(metrics: dict[str, float]) -> str:
    return json.dumps(metrics, indent=2, sort_keys=True)
