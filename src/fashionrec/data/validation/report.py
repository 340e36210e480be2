"""The reports of a validation run (an HTML page with thumbnails of what was quarantined, Great Expectations' Data
Docs, the provenance manifest) and the valid-fraction floor that stops the pipeline."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fashionrec.config import (
    DATA_DOCS_FILE,
    DATASET_MANIFEST_FILE,
    QUARANTINE_FILE,
    REPORT_FILE,
    VALID_TABLE_FILE,
)
from fashionrec.console import console
from fashionrec.data.catalog import STYLES_FILE
from fashionrec.data.provenance import build_manifest, write_manifest
from fashionrec.data.validation.checks import ValidationSettings
from fashionrec.data.validation.quarantine import ValidationResult, validate_catalog


class ValidationFailed(RuntimeError):
    """Too little of the catalogue is usable: the pipeline stops here, with the numbers."""


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


# Data Docs as GX renders them load Bootstrap, jQuery, Vega and Font Awesome from CDNs: in an air-gapped cluster (and
# offline) the page shows unstyled. Those tags are dropped and GX's own stylesheet plus a small base one are inlined.
_REMOTE_ASSET = re.compile(
    r"<link[^>]+href=\"https?://[^>]*>|<script[^>]+src=\"https?://[^>]*>\s*</script>|<img[^>]+src=\"https?://[^>]*>",
    re.IGNORECASE,
)
_BASE_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#212529}.container-fluid{padding:1rem 2rem}
.row{display:flex;flex-wrap:wrap}.col-12{flex:0 0 100%}.col-md-3,.col-lg-3{flex:0 0 22%}.col-md-9,.col-lg-9{flex:0 0 75%}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #dee2e6;padding:.3rem .6rem;text-align:left}
.card{border:1px solid #dee2e6;border-radius:.3rem;margin:1rem 0;padding:.5rem 1rem}.card-header{font-weight:600}
.badge{display:inline-block;padding:.1rem .4rem;border-radius:.3rem;background:#6c757d;color:#fff;font-size:.8em}
.text-success,.fa-check-circle{color:#198754}.text-danger,.fa-times{color:#dc3545}.d-none,.collapse{display:none}
.navbar{background:#f8f9fa;padding:.5rem 2rem;border-bottom:1px solid #dee2e6}
.fa-check-circle::before{content:"\\2714"}.fa-times::before,.fa-times-circle::before{content:"\\2718";color:#dc3545}
.fa-exclamation-triangle::before{content:"!";color:#a60}
"""


def render_data_docs(result: ValidationResult, catalog_dir: Path) -> str:
    """Great Expectations' own Data Docs page for this validation run, as one self-contained HTML document (no asset
    from the network), naming its run (the catalogue and when) and data asset."""
    from datetime import UTC, datetime
    from importlib import resources

    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    validation = result.gx_validation
    validation.meta["run_id"] = {"run_name": f"validate {catalog_dir.name}", "run_time": datetime.now(UTC).isoformat()}
    validation.meta["batch_spec"] = {"data_asset_name": f"image facts of {catalog_dir.name}"}
    page = str(DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(validation)))
    gx_styles = resources.files("great_expectations.render.view").joinpath("static/styles/data_docs_default_styles.css")
    inline = f"<style>{_BASE_STYLE}{gx_styles.read_text(encoding='utf-8')}</style>"
    return _REMOTE_ASSET.sub("", page).replace("</head>", f"{inline}</head>", 1)


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
    paths.data_docs.write_text(render_data_docs(result, catalog_dir), encoding="utf-8")
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
        out_dir / VALID_TABLE_FILE,
        out_dir / QUARANTINE_FILE,
        out_dir / REPORT_FILE,
        out_dir / DATA_DOCS_FILE,
        out_dir / DATASET_MANIFEST_FILE,
    )


def run_validation_step(catalog_dir: Path, overrides: dict[str, Any], outputs: dict[str, Any]) -> None:
    """The validate components' body: validate ``catalog_dir``, write every output artifact and its metadata.
    ``outputs`` are the KFP output artifacts by name (valid_catalog, quarantine, report, data_docs,
    dataset_manifest, metrics): anything with ``.path`` and ``.metadata`` (and ``log_metric`` for metrics)."""

    result = validate_catalog(catalog_dir, ValidationSettings.from_overrides(overrides))
    for name, value in result.metrics.items():
        outputs["metrics"].log_metric(name, value)
    outputs["valid_catalog"].metadata.update({"rows": len(result.valid), "format": "parquet"})
    outputs["quarantine"].metadata.update({"rows": len(result.quarantine), "format": "csv"})
    names = ("valid_catalog", "quarantine", "report", "data_docs", "dataset_manifest")
    write_outputs(result, catalog_dir, OutputPaths(*(Path(outputs[n].path) for n in names)))
    manifest = json.loads(Path(outputs["dataset_manifest"].path).read_text(encoding="utf-8"))
    outputs["dataset_manifest"].metadata.update(
        {"dataset_digest": manifest["dataset_digest"], "styles_csv_sha256": manifest["styles_csv_sha256"]}
    )
