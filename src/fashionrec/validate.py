"""The validate stage: per-image facts, a Great Expectations suite over them, a quarantine with reasons, reports
and a provenance manifest.

Invariant: every styles.csv row ends up exactly once in either the valid table or the quarantine (kind "row").
Images that no row names are reported too (kind "image"): nothing vanishes without a trace.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionrec.catalog import IMAGES_DIR, STYLES_FILE, image_path, read_styles
from fashionrec.config import LABEL_COLUMN, STYLES_COLUMNS
from fashionrec.imagefacts import CATALOGUE_FORMATS, compute_facts, near_duplicate_groups
from fashionrec.progress import console
from fashionrec.provenance import build_manifest, write_manifest

QUARANTINE_COLUMNS = ["kind", "line_number", "id", "reason", "value", "detail", "all_reasons"]
NORMALISED_MODES = ("L", "LA", "RGBA", "P", "PA", "CMYK", "YCbCr", "1", "RGBX", "La")


class ValidationFailed(RuntimeError):
    """Too little of the catalogue is usable: the pipeline stops here, with the numbers."""


@dataclass
class ValidationSettings:
    """Every threshold of the suite, with defaults measured on real Kaggle product photos (3,000 of them pass all
    checks) and on the synthetic catalogue. Override any of them from the pipeline's ``validation_settings``."""

    min_side: int = 32  # px; Kaggle small images are 60x80
    min_aspect: float = 0.5  # height / width
    max_aspect: float = 3.0
    min_brightness: float = 25.0  # mean grey level; real photos: >= 113
    max_saturated_fraction: float = 0.995  # share of pixels >= 250: blown out; real photos: <= 0.99
    blank_contrast: float = 1.0  # grey-level std below this: a uniform (blank) image
    min_contrast: float = 2.5  # grey-level std; real photos: >= 3.1 (white socks on white)
    min_sharpness: float = 10.0  # variance of the Laplacian; real photos: >= 32
    duplicate_radius: int = 12  # perceptual-hash bits (of 255); a re-encoded, brightened copy is within 12
    allow_format_mismatch: bool = False  # a PNG behind a .jpg name is usually a broken export
    min_class_count: int = 5  # classes with fewer valid items are reported ...
    exclude_rare_classes: bool = False  # ... and quarantined only when this is on
    label_vocabulary: list[str] = field(default_factory=list)  # allowed articleTypes; empty: any
    min_valid_fraction: float = 0.5  # below this the pipeline stops
    workers: int = 0  # processes for image facts; 0 = one per core

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None) -> ValidationSettings:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(overrides or {}) - set(known))
        if unknown:
            raise ValueError(f"unknown validation settings {unknown}; known: {sorted(known)}")
        return cls(**(overrides or {}))


@dataclass(frozen=True)
class Check:
    """One expectation over the facts table; rows that break it are quarantined with ``reason`` (or, when
    ``reason_column`` is set, with that column's value) and ``value_column`` as the measured value."""

    reason: str
    expectation: str
    kwargs: dict[str, Any]
    value_column: str | None = None
    reason_column: str | None = None


def build_checks(settings: ValidationSettings) -> list[Check]:
    """The suite, in precedence order: a row's reason is the first check it fails."""
    checks = [
        Check("id_not_integer", "ExpectColumnValuesToMatchRegex", {"column": "id", "regex": r"^\d+$"}, "id"),
        Check("duplicate_id", "ExpectColumnValuesToBeUnique", {"column": "id"}, "id"),
        Check("missing_label", "ExpectColumnValuesToNotBeNull", {"column": LABEL_COLUMN}),
    ]
    if settings.label_vocabulary:
        checks.append(
            Check(
                "label_not_in_vocabulary",
                "ExpectColumnValuesToBeInSet",
                {"column": LABEL_COLUMN, "value_set": settings.label_vocabulary},
                LABEL_COLUMN,
            )
        )
    checks += [
        Check(
            "image_status",
            "ExpectColumnValuesToBeInSet",
            {"column": "status", "value_set": ["ok"]},
            "file_bytes",
            reason_column="status",
        ),
    ]
    if not settings.allow_format_mismatch:
        checks.append(
            Check(
                "format_mismatch", "ExpectColumnValuesToBeInSet", {"column": "format_matches_name", "value_set": [True]}, "format"
            )
        )
    checks += [
        Check(
            "image_too_small", "ExpectColumnValuesToBeBetween", {"column": "min_side", "min_value": settings.min_side}, "min_side"
        ),
        Check(
            "bad_aspect_ratio",
            "ExpectColumnValuesToBeBetween",
            {"column": "aspect", "min_value": settings.min_aspect, "max_value": settings.max_aspect},
            "aspect",
        ),
        Check(
            "too_dark",
            "ExpectColumnValuesToBeBetween",
            {"column": "brightness", "min_value": settings.min_brightness},
            "brightness",
        ),
        Check(
            "over_exposed",
            "ExpectColumnValuesToBeBetween",
            {"column": "saturated_fraction", "max_value": settings.max_saturated_fraction},
            "saturated_fraction",
        ),
        Check(
            "blank_image",
            "ExpectColumnValuesToBeBetween",
            {"column": "contrast", "min_value": settings.blank_contrast},
            "contrast",
        ),
        Check(
            "low_contrast",
            "ExpectColumnValuesToBeBetween",
            {"column": "contrast", "min_value": settings.min_contrast},
            "contrast",
        ),
        Check(
            "blurry", "ExpectColumnValuesToBeBetween", {"column": "sharpness", "min_value": settings.min_sharpness}, "sharpness"
        ),
        Check(
            "conflicting_duplicate",
            "ExpectColumnValuesToBeInSet",
            {"column": "duplicate_conflict", "value_set": [False]},
            "duplicate_of",
        ),
    ]
    if settings.exclude_rare_classes:
        checks.append(
            Check(
                "rare_class",
                "ExpectColumnValuesToBeBetween",
                {"column": "class_count", "min_value": settings.min_class_count},
                "class_count",
            )
        )
    return checks


# Reported, never quarantined: optional attributes that are missing.
REPORT_ONLY_COLUMNS = ("gender", "masterCategory", "subCategory", "baseColour", "season", "year", "usage", "productDisplayName")


@dataclass
class ValidationResult:
    valid: pd.DataFrame  # styles columns + line_number + image (bytes) + image_sha256
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    rows_in: int
    gx_success: bool
    gx_results: list[dict[str, Any]]
    gx_validation: Any  # great_expectations ExpectationSuiteValidationResult, for Data Docs
    settings: ValidationSettings
    metrics: dict[str, float]
    rare_classes: dict[str, int]
    quarantined_images: dict[str, bytes] = field(default_factory=dict)  # id -> bytes, for the report's thumbnails

    @property
    def reasons(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.quarantine["reason"].value_counts().sort_index().items()}


def run_expectations(facts: pd.DataFrame, checks: list[Check]) -> tuple[dict[str, list[int]], Any]:
    """Validate the facts table with a Great Expectations suite; return failing row positions per check."""
    import great_expectations as gx  # heavy import (seconds): once, only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GX's own tqdm bars would interleave with ours; the image-facts bar already shows progress.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("catalog").add_dataframe_asset("image_facts").add_batch_definition_whole_dataframe("all")
    )
    suite = gx.ExpectationSuite(name="catalog_images")
    for check in checks:
        suite.add_expectation(
            getattr(gx.expectations, check.expectation)(**check.kwargs, meta={"reason": check.reason, "quarantine": True})
        )
    for column in REPORT_ONLY_COLUMNS:
        suite.add_expectation(
            gx.expectations.ExpectColumnValuesToNotBeNull(
                column=column, meta={"reason": f"missing_{column}", "quarantine": False}
            )
        )
    # dtype of the one numeric attribute: reported, since a wrong year does not make a photo unusable
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToMatchRegex(
            column="year", regex=r"^(?:19|20)\d{2}$", meta={"reason": "invalid_year", "quarantine": False}
        )
    )
    columns = sorted({str(c.kwargs["column"]) for c in checks} | set(REPORT_ONLY_COLUMNS))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": facts[columns].reset_index(drop=True)})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    failing: dict[str, list[int]] = {}
    for res in result.results:
        config = res.expectation_config
        assert config is not None and config.meta is not None
        failing[str(config.meta["reason"])] = [int(i) for i in res.result.get("unexpected_index_list") or []]
    return failing, result


def _duplicate_conflicts(facts: pd.DataFrame, radius: int) -> tuple[pd.Series, pd.Series, int]:
    """(conflict flag, description) per row for near-duplicate groups whose labels disagree; and how many rows
    are near-duplicates that agree (reported only)."""
    conflict = pd.Series(False, index=facts.index)
    described = pd.Series(None, index=facts.index, dtype="object")
    agreeing = 0
    for group in near_duplicate_groups(list(facts["phash"]), radius):
        labels = facts.iloc[group][LABEL_COLUMN]
        if labels.nunique(dropna=False) > 1:
            members = ", ".join(f"{facts.iloc[g]['id']} ({facts.iloc[g][LABEL_COLUMN]})" for g in group)
            for g in group:
                conflict.iloc[g] = True
                described.iloc[g] = f"near-duplicate images with different labels: {members}"
        else:
            agreeing += len(group)
    return conflict, described, agreeing


def validate_catalog(catalog_dir: Path, settings: ValidationSettings | None = None) -> ValidationResult:
    settings = settings or ValidationSettings()
    styles = read_styles(catalog_dir / STYLES_FILE)
    rows = styles.rows.reset_index(drop=True)
    for column in (LABEL_COLUMN, *REPORT_ONLY_COLUMNS):  # an empty field is a missing value
        rows[column] = rows[column].mask(rows[column].str.len() == 0)
    image_facts = compute_facts([image_path(catalog_dir, i) for i in rows["id"]], workers=settings.workers or None)
    facts = pd.concat([rows, image_facts], axis=1)
    facts["format_matches_name"] = facts["format"].isin(CATALOGUE_FORMATS) | (facts["status"] != "ok")
    facts["duplicate_conflict"], facts["duplicate_of"], agreeing_duplicates = _duplicate_conflicts(
        facts, settings.duplicate_radius
    )
    checks = build_checks(settings)
    usable = facts["status"].eq("ok") & facts[LABEL_COLUMN].notna()
    class_counts = facts.loc[usable, LABEL_COLUMN].value_counts()
    facts["class_count"] = facts[LABEL_COLUMN].map(class_counts).fillna(0).astype(int)
    failing, gx_validation = run_expectations(facts, checks)

    reasons_of: dict[int, list[Check]] = {}
    for check in checks:  # precedence: the first failing check names the row's reason
        for position in failing.get(check.reason, []):
            reasons_of.setdefault(position, []).append(check)
    quarantined: list[dict[str, Any]] = []
    images: dict[str, bytes] = {}
    for position, broken in sorted(reasons_of.items()):
        fact = facts.iloc[position]
        names = [str(fact[c.reason_column]) if c.reason_column else c.reason for c in broken]
        first = broken[0]
        value = fact[first.value_column] if first.value_column else None
        quarantined.append(
            {
                "kind": "row",
                "line_number": int(fact["line_number"]),
                "id": str(fact["id"]),
                "reason": names[0],
                "value": _plain(value),
                "detail": _detail(fact, names[0], settings),
                "all_reasons": ";".join(names),
            }
        )
        if fact["status"] == "ok":
            images[str(fact["id"])] = image_path(catalog_dir, str(fact["id"])).read_bytes()
    quarantined += [
        {
            "kind": "row",
            "line_number": m.line_number,
            "id": m.raw.split(",", 1)[0].strip() or None,
            "reason": "malformed_csv_row",
            "value": None,
            "detail": f"{m.reason}: {m.raw[:200]}",
            "all_reasons": "malformed_csv_row",
        }
        for m in styles.malformed
    ]
    known = set(rows["id"].astype(str))
    orphans = (
        sorted(p.name for p in (catalog_dir / IMAGES_DIR).glob("*") if p.is_file() and p.stem not in known)
        if (catalog_dir / IMAGES_DIR).is_dir()
        else []
    )
    quarantined += [
        {
            "kind": "image",
            "line_number": None,
            "id": Path(name).stem,
            "reason": "image_without_row",
            "value": None,
            "detail": f"{IMAGES_DIR}/{name} has no row in {STYLES_FILE}",
            "all_reasons": "image_without_row",
        }
        for name in orphans
    ]

    valid_facts = facts.drop(index=list(reasons_of))
    valid = valid_facts.loc[:, [*STYLES_COLUMNS, "line_number"]].copy()
    valid["image"] = [image_path(catalog_dir, i).read_bytes() for i in valid["id"]]
    valid["image_sha256"] = valid_facts["sha256"].to_numpy()
    valid["id"] = valid["id"].astype("int64")
    quarantine = pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS)
    rows_in = len(rows) + len(styles.malformed)
    valid_class_counts = valid[LABEL_COLUMN].value_counts()
    rare = {str(k): int(v) for k, v in valid_class_counts[valid_class_counts < settings.min_class_count].sort_index().items()}
    gx_results = _summarise(gx_validation)
    metrics: dict[str, float] = {
        "rows_in": rows_in,
        "rows_valid": len(valid),
        "rows_quarantined": int((quarantine["kind"] == "row").sum()),
        "images_without_row": len(orphans),
        "valid_fraction": len(valid) / rows_in if rows_in else 0.0,
        "classes": int(valid_class_counts.size),
        "rare_classes": len(rare),
        "near_duplicates_same_label": agreeing_duplicates,
    }
    metrics.update({f"quarantined_{k}": int(v) for k, v in quarantine["reason"].value_counts().sort_index().items()})
    modes = valid_facts["mode"].value_counts()
    metrics.update({f"normalised_from_{m}": int(modes[m]) for m in NORMALISED_MODES if m in modes})
    metrics.update({f"missing_{c}": int(facts[c].isna().sum()) for c in REPORT_ONLY_COLUMNS if facts[c].isna().any()})
    metrics["invalid_year"] = len(failing.get("invalid_year", []))
    return ValidationResult(
        valid=valid.reset_index(drop=True),
        quarantine=quarantine,
        rows_in=rows_in,
        gx_success=bool(all(r["success"] for r in gx_results if r["quarantine"])),
        gx_results=gx_results,
        gx_validation=gx_validation,
        settings=settings,
        metrics=metrics,
        rare_classes=rare,
        quarantined_images=images,
    )


def _summarise(gx_validation: Any) -> list[dict[str, Any]]:
    summary = []
    for res in gx_validation.results:
        config = res.expectation_config
        summary.append(
            {
                "reason": str(config.meta["reason"]),
                "quarantine": bool(config.meta["quarantine"]),
                "expectation": config.type,
                "column": str(config.kwargs.get("column")),
                "success": bool(res.success),
                "unexpected_count": int(res.result.get("unexpected_count") or 0),
            }
        )
    return summary


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _detail(fact: pd.Series, reason: str, settings: ValidationSettings) -> str:
    explain = {
        "image_too_small": f"shortest side {fact['min_side']:.0f} px < {settings.min_side}",
        "bad_aspect_ratio": f"height/width {fact['aspect']:.2f} outside [{settings.min_aspect}, {settings.max_aspect}]",
        "too_dark": f"mean grey level {fact['brightness']:.1f} < {settings.min_brightness}",
        "over_exposed": f"{fact['saturated_fraction']:.1%} of pixels blown out (> {settings.max_saturated_fraction:.1%})",
        "blank_image": f"grey-level std {fact['contrast']:.2f} < {settings.blank_contrast}: a uniform image",
        "low_contrast": f"grey-level std {fact['contrast']:.2f} < {settings.min_contrast}",
        "blurry": f"variance of the Laplacian {fact['sharpness']:.1f} < {settings.min_sharpness}",
        "format_mismatch": f"{fact['format']} data behind a .jpg name",
        "conflicting_duplicate": str(fact["duplicate_of"]),
        "rare_class": f"{fact['class_count']} items of {fact[LABEL_COLUMN]} < {settings.min_class_count}",
        "duplicate_id": f"id {fact['id']} appears more than once",
        "missing_label": f"no {LABEL_COLUMN}",
        "id_not_integer": f"id {fact['id']!r} is not an integer",
        "label_not_in_vocabulary": f"{fact[LABEL_COLUMN]!r} is not an allowed {LABEL_COLUMN}",
    }
    return explain.get(reason) or str(fact["error"] or reason)


def _thumbnail(data: bytes) -> str:
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" height="80">'


def render_report(result: ValidationResult) -> str:
    """A self-contained HTML page for the KFP UI: counts, reasons, the suite, and the quarantine with thumbnails."""
    m = result.metrics
    reasons = (
        "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in result.reasons.items())
        or "<tr><td colspan=2>none</td></tr>"
    )
    suite = "".join(
        f"<tr><td>{html.escape(r['reason'])}</td><td>{html.escape(r['expectation'])}</td><td>{html.escape(r['column'])}</td>"
        f"<td class={'ok' if r['success'] else ('bad' if r['quarantine'] else 'warn')}>{'pass' if r['success'] else 'fail'}</td>"
        f"<td>{r['unexpected_count']}</td><td>{'quarantine' if r['quarantine'] else 'report'}</td></tr>"
        for r in result.gx_results
    )
    rows = []
    for rec in result.quarantine.head(500).itertuples(index=False):
        thumb = _thumbnail(result.quarantined_images[str(rec.id)]) if str(rec.id) in result.quarantined_images else ""
        cells = [rec.kind, rec.line_number, rec.id, rec.reason, rec.value, rec.detail]
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in cells) + f"<td>{thumb}</td></tr>"
        )
    rare = ", ".join(f"{html.escape(k)} ({v})" for k, v in result.rare_classes.items()) or "none"
    settings = html.escape(json.dumps(asdict(result.settings)))
    more = f"<p>… and {len(result.quarantine) - 500} more in the quarantine artifact.</p>" if len(result.quarantine) > 500 else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Catalogue validation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
.ok{{color:#080}}.bad{{color:#b00;font-weight:bold}}.warn{{color:#a60}}.big{{font-size:1.3em}}</style></head><body>
<h1>Catalogue validation</h1>
<p class="big">{m["rows_in"]:.0f} rows in: <b>{m["rows_valid"]:.0f} valid</b>, <b>{m["rows_quarantined"]:.0f} quarantined</b>
({m["valid_fraction"]:.1%} valid); {m["images_without_row"]:.0f} images without a row.</p>
<h2>Quarantine reasons</h2><table><tr><th>reason</th><th>count</th></tr>{reasons}</table>
<p>Classes with fewer than {result.settings.min_class_count} valid items: {rare}
({"excluded" if result.settings.exclude_rare_classes else "kept for training"}).</p>
<h2>Great Expectations suite</h2><table><tr><th>reason</th><th>expectation</th><th>column</th><th>result</th><th>rows</th><th>action</th></tr>{suite}</table>
<h2>Quarantine</h2><table><tr><th>kind</th><th>line</th><th>id</th><th>reason</th><th>value</th><th>detail</th><th>image</th></tr>{"".join(rows)}</table>{more}
<h2>Settings</h2><pre>{settings}</pre></body></html>"""


def render_data_docs(result: ValidationResult) -> str:
    """Great Expectations' own Data Docs page for this validation run, as one HTML document."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return str(DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result.gx_validation)))


@dataclass(frozen=True)
class OutputPaths:
    valid: Path
    quarantine: Path
    report: Path
    data_docs: Path
    manifest: Path


def write_outputs(result: ValidationResult, catalog_dir: Path, paths: OutputPaths) -> dict[str, float]:
    """Write every output, then enforce the valid-fraction floor (so the report exists even when it fails)."""
    result.valid.to_parquet(paths.valid, index=False)
    result.quarantine.to_csv(paths.quarantine, index=False)
    paths.report.write_text(render_report(result), encoding="utf-8")
    paths.data_docs.write_text(render_data_docs(result), encoding="utf-8")
    manifest = build_manifest(
        result.valid, catalog_dir / STYLES_FILE, result.rows_in, int(result.metrics["rows_quarantined"]), asdict(result.settings)
    )
    write_manifest(manifest, paths.manifest)
    console.print(
        f"validation: {result.metrics['rows_valid']:.0f}/{result.rows_in} rows valid; quarantined: {result.reasons or 'none'}"
    )
    if result.metrics["valid_fraction"] < result.settings.min_valid_fraction:
        top = ", ".join(f"{k}: {v}" for k, v in sorted(result.reasons.items(), key=lambda kv: -kv[1])[:5])
        raise ValidationFailed(
            f"only {result.metrics['valid_fraction']:.1%} of {result.rows_in} rows are valid "
            f"(floor {result.settings.min_valid_fraction:.0%}); top reasons: {top}. See the validation report."
        )
    return result.metrics


def output_paths(out_dir: Path) -> OutputPaths:
    out_dir.mkdir(parents=True, exist_ok=True)
    return OutputPaths(
        out_dir / "valid.parquet",
        out_dir / "quarantine.csv",
        out_dir / "report.html",
        out_dir / "data_docs.html",
        out_dir / "dataset_manifest.json",
    )
