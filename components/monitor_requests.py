from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def monitor_requests(
    request_log: Input[Dataset],
    report: Output[HTML],
    decision: Output[Markdown],
    metrics: Output[Metrics],
    releases_uri: str,
    log_retention_days: float,  # no default here: KFP ships this function's source alone (the pipeline passes it)
    model_version: str = "",
    registry_uri: str = "",
    new_items: int = 0,
    event_log_uri: str = "",
    catalog_changes_uri: str = "",
) -> NamedTuple("MonitorOutputs", [("retrain", bool)]):  # type: ignore[valid-type]
    """Compare what the production model was asked with what it learned: the transformers' request log (JSONL part
    files, imported from object storage) against the reference profile of its release under ``releases_uri``
    (``model_version``, or the registry's production alias when empty). Writes the HTML drift report (plots per
    window and per image statistic), the decision with its reasons as Markdown, and per-signal metrics of the
    latest window; ``retrain`` is true when the latest window drifted, when products added since the release (read
    from the catalogue change log at ``catalog_changes_uri``, else ``new_items``) reach a fifth of the catalogue, or
    when shoppers' CTR@5 of the last day (the transformers' feedback events at ``event_log_uri``) fell significantly
    below the days before. The Markdown names the signals that fired. Both logs are read for their last
    ``log_retention_days`` only, their finished days compacted into one part a day in place, and lines that do not
    parse are skipped and counted (the metrics' skipped_lines_*)."""
    import shutil
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from fashionrec.monitoring.report import LOG_LINES, REPORT_FILE, compact_logs, run_monitoring_step

    compact_logs(request_log.uri, event_log_uri)  # the stored logs (request_log.path is the launcher's copy)
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_monitoring_step(
            Path(request_log.path), releases_uri, model_version, registry_uri, new_items, Path(tmp),
            event_log=event_log_uri, catalog_changes=catalog_changes_uri, retention_days=log_retention_days,
        )  # fmt: skip
        shutil.copy2(Path(tmp) / REPORT_FILE, report.path)
    lines = "\n".join(f"- {reason}" for reason in outcome.reasons) or "- nothing drifted"
    fired = f" (signals: {', '.join(outcome.signals)})" if outcome.signals else ""
    Path(decision.path).write_text(f"# {'Retrain' if outcome.retrain else 'No retraining needed'}{fired}\n\n{lines}\n")
    metrics.log_metric("retrain", float(outcome.retrain))
    for signal in ("drift", "catalogue growth", "engagement"):
        metrics.log_metric(f"signal_{signal.replace(' ', '_')}", float(signal in outcome.signals))
    metrics.log_metric("windows", float(len(outcome.windows)))
    for log in LOG_LINES:
        metrics.log_metric(f"skipped_lines_{log}", float(outcome.skipped_lines.get(log, 0)))
    if outcome.windows:
        latest = outcome.windows[-1]
        for name in ("coverage", "gini", "low_score_share"):
            metrics.log_metric(name, float(latest[name]))  # type: ignore[arg-type]
        for signal, result in latest["signals"].items():  # type: ignore[attr-defined]
            metrics.log_metric(f"p_value_{signal}", float(result["p_value"]))
    return namedtuple("MonitorOutputs", ["retrain"])(outcome.retrain)  # type: ignore[arg-type]
