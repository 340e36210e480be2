"""The checks: every threshold of the suite, the Great Expectations expectations built from them, and their run."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from fashionrec.config import LABEL_COLUMN


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


ID_KEY_COLUMN = "id_key"  # of the facts table: the id as compared (normal_id), so that 0123 and 123 are one product


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
        Check("duplicate_id", "ExpectColumnValuesToBeUnique", {"column": ID_KEY_COLUMN}, "id"),
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


def summarise(gx_validation: Any) -> list[dict[str, Any]]:
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
