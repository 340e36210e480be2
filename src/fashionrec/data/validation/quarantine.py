"""The quarantine: per-image facts and the checks decide, row by row, what is valid and what is quarantined, why.

Invariant: every styles.csv row ends up exactly once in either the valid table or the quarantine (kind "row").
Images that no row names are reported too (kind "image"): nothing vanishes without a trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionrec.config import LABEL_COLUMN, STYLES_COLUMNS
from fashionrec.data.catalog import IMAGES_DIR, STYLES_FILE, image_path, normal_id, read_styles
from fashionrec.data.imagefacts import CATALOGUE_FORMATS, compute_facts, near_duplicate_groups
from fashionrec.data.validation.checks import (
    ID_KEY_COLUMN,
    REPORT_ONLY_COLUMNS,
    Check,
    ValidationSettings,
    build_checks,
    run_expectations,
    summarise,
)

QUARANTINE_COLUMNS = ["kind", "line_number", "id", "reason", "value", "detail", "all_reasons"]
NORMALISED_MODES = ("L", "LA", "RGBA", "P", "PA", "CMYK", "YCbCr", "1", "RGBX", "La")


@dataclass
class ValidationResult:
    valid: pd.DataFrame  # styles columns + line_number + image (bytes) + image_sha256 + image_phash
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


def _duplicate_conflicts(facts: pd.DataFrame, radius: int) -> tuple[pd.Series, pd.Series, int, int]:
    """For groups of near-identical images whose labels disagree: quarantine the rows whose label differs from a
    clear majority of the group (more than half of it); without one, every row of the group. Returns the conflict
    flag and its description per row, how many rows are near-duplicates that agree (reported only), and how many
    rows of conflicting groups were kept because they are the majority."""
    conflict = pd.Series(False, index=facts.index)
    described = pd.Series(None, index=facts.index, dtype="object")
    agreeing = majority_kept = 0
    for group in near_duplicate_groups(list(facts["phash"]), radius):
        labels = facts.iloc[group][LABEL_COLUMN]
        counts = labels.value_counts(dropna=False)
        if len(counts) == 1:
            agreeing += len(group)
            continue
        top_label, top_count = counts.index[0], int(counts.iloc[0])
        majority = top_count * 2 > len(group)
        members = ", ".join(f"{facts.iloc[g]['id']} ({facts.iloc[g][LABEL_COLUMN]})" for g in group)
        for g in group:
            if majority and facts.iloc[g][LABEL_COLUMN] == top_label:
                majority_kept += 1
                continue
            conflict.iloc[g] = True
            described.iloc[g] = (
                f"labelled {facts.iloc[g][LABEL_COLUMN]}, unlike {top_count} of {len(group)} near-identical images "
                f"labelled {top_label}: {members}"
                if majority
                else f"near-duplicate images with different labels and no majority: {members}"
            )
    return conflict, described, agreeing, majority_kept


def validate_catalog(catalog_dir: Path, settings: ValidationSettings | None = None) -> ValidationResult:
    settings = settings or ValidationSettings()
    styles = read_styles(catalog_dir / STYLES_FILE)
    rows = styles.rows.reset_index(drop=True)
    for column in (LABEL_COLUMN, *REPORT_ONLY_COLUMNS):  # an empty field is a missing value
        rows[column] = rows[column].mask(rows[column].str.len() == 0)
    rows[ID_KEY_COLUMN] = rows["id"].map(normal_id)
    image_facts = compute_facts([image_path(catalog_dir, i) for i in rows["id"]], workers=settings.workers or None)
    facts = pd.concat([rows, image_facts], axis=1)
    facts["format_matches_name"] = facts["format"].isin(CATALOGUE_FORMATS) | (facts["status"] != "ok")
    facts["duplicate_conflict"], facts["duplicate_of"], agreeing_duplicates, majority_kept = _duplicate_conflicts(
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
    valid["image_phash"] = valid_facts["phash"].to_numpy()  # the held-out split keeps near-duplicates together
    valid["id"] = valid["id"].astype("int64")
    quarantine = pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS)
    rows_in = len(rows) + len(styles.malformed)
    valid_class_counts = valid[LABEL_COLUMN].value_counts()
    rare = {str(k): int(v) for k, v in valid_class_counts[valid_class_counts < settings.min_class_count].sort_index().items()}
    gx_results = summarise(gx_validation)
    metrics: dict[str, float] = {
        "rows_in": rows_in,
        "rows_valid": len(valid),
        "rows_quarantined": int((quarantine["kind"] == "row").sum()),
        "images_without_row": len(orphans),
        "valid_fraction": len(valid) / rows_in if rows_in else 0.0,
        "classes": int(valid_class_counts.size),
        "rare_classes": len(rare),
        "near_duplicates_same_label": agreeing_duplicates,
        "near_duplicates_majority_kept": majority_kept,
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
