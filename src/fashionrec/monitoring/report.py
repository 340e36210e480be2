"""`fashionrec monitor`: the request log against the production model's reference profile, window by window, as an
HTML drift report (plots, no reading required) and a decision: retrain or not, with the reasons.

The report is self-contained HTML with inline SVG (no plotting library, no remote asset): per-statistic distributions
of the reference and the latest window, the embedding test's p-value per window against its threshold, and
coverage and low-score share per window.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fashionrec.charts import line_chart
from fashionrec.config import LOG_RETENTION_DAYS, SNAPSHOT_INDEX_DIR
from fashionrec.data.changes import ChangeLog, added_since
from fashionrec.drift.detectors import MIN_WINDOW
from fashionrec.drift.live import ALPHA, WINDOW, Health, as_dict, health_of
from fashionrec.drift.profile import PROFILE_DIR, ReferenceProfile
from fashionrec.engagement.events import FeedbackEvent
from fashionrec.engagement.sequential import (
    CANDIDATE_BETTER,
    CANDIDATE_WORSE,
    UNDECIDED,
    Arm,
    Comparison,
    SequentialPolicy,
    compare,
)
from fashionrec.engagement.tally import by_answer_time, tally
from fashionrec.serving.release import fetch_serving, read_release
from fashionrec.storage import SkippedLines, compact_log, read_log_records, redact_urls
from fashionrec.training.registry import MlflowRegistry

REPORT_FILE = "drift_report.html"
DECISION_FILE = "decision.json"
NEW_ITEMS_SHARE = 0.2  # retrain once products added since training reach this share of the catalogue it learned
ENGAGEMENT_RECENT_S = 24 * 3600  # the production model's latest day of answers, against all its days before
logger = logging.getLogger(__name__)


MAX_WINDOWS = 50  # windows of WINDOW queries the monitoring step analyses at most: the latest ones
LOG_LINES = {"request_log": "the request log", "event_log": "the event log"}  # the logs whose bad lines are counted


@dataclass(frozen=True)
class ImageQuery:
    """One image query of the request log, as the drift analysis reads it."""

    time: float
    model_version: str
    embedding: np.ndarray
    stats: dict[str, float]
    hits: np.ndarray
    top1: float

    @classmethod
    def from_log_line(cls, line: str) -> ImageQuery | None:
        """The image query of a request-log line; None for an item query (the replay's, not the drift analysis').
        ValueError, TypeError or KeyError when the line is not one the live monitor writes."""
        row = json.loads(line)
        if not isinstance(row, dict):
            raise ValueError(f"a JSON {type(row).__name__}, not an object")
        if "embedding" not in row:
            return None
        stats = row["stats"]
        if not isinstance(stats, dict):
            raise ValueError("stats is not an object")
        embedding = np.asarray(row["embedding"], dtype=np.float32)
        if embedding.ndim != 1 or not len(embedding):
            raise ValueError(f"an embedding of shape {list(embedding.shape)}")
        return cls(float(row["time"]), str(row["model_version"]), embedding, {str(k): float(v) for k, v in stats.items()},
                   np.asarray(row["item_ids"], dtype=np.int64).reshape(-1), float(row["top1_score"]))  # fmt: skip


@dataclass(frozen=True)
class RequestLog:
    embeddings: np.ndarray
    stats: list[dict[str, float]]
    hits: list[np.ndarray]
    top1: np.ndarray
    model_versions: list[str]
    skipped: SkippedLines = field(default_factory=SkippedLines)  # lines that did not parse: passed over

    @classmethod
    def read_none(cls) -> RequestLog:
        return cls(np.empty((0, 0), dtype=np.float32), [], [], np.empty(0), [])

    @classmethod
    def read(
        cls, path: Path | str, model_version: str | None = None, since: float | None = None,
        latest: int | None = MAX_WINDOWS * WINDOW,
    ) -> RequestLog:  # fmt: skip
        """The log's image queries (those answered by ``model_version`` only, when given; logged at or after
        ``since`` only, when given), in order, the ``latest`` of them at most: a .jsonl file, or a folder of part
        files. Only that many are ever held; a line that does not parse is skipped and counted (``skipped``)."""
        skipped = SkippedLines()
        kept: deque[ImageQuery] = deque(maxlen=latest)
        for query in read_log_records(str(path), ImageQuery.from_log_line, skipped, since):
            if (model_version is None or query.model_version == model_version) and (since is None or query.time >= since):
                kept.append(query)
        width = kept[-1].embedding.shape[0] if kept else 0
        rows = []
        for query in kept:  # another model's width among them (a version label reused) cannot be stacked
            if query.embedding.shape[0] == width:
                rows.append(query)
            else:
                skipped.add(f"query at {query.time:.0f}", ValueError(f"an embedding of {query.embedding.shape[0]} values"))
        return cls(
            embeddings=np.asarray([row.embedding for row in rows], dtype=np.float32).reshape(len(rows), width),
            stats=[row.stats for row in rows],
            hits=[row.hits for row in rows],
            top1=np.asarray([row.top1 for row in rows], dtype=np.float64),
            model_versions=[row.model_version for row in rows],
            skipped=skipped,
        )


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reasons: list[str]
    windows: list[dict[str, object]] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)  # which fired: "drift", "catalogue growth", "engagement"
    engagement: str = ""  # the engagement comparison, in words ("" without events)
    skipped_lines: dict[str, int] = field(default_factory=dict)  # per log (LOG_LINES), lines that did not parse


def engagement_drop(
    events: Iterable[FeedbackEvent], version: str, now: float, recent_s: float = ENGAGEMENT_RECENT_S,
    policy: SequentialPolicy | None = None,
) -> Comparison | None:  # fmt: skip
    """CTR@5 of ``version``'s answers shown in the last ``recent_s`` against its answers before (the sequential test:
    "candidate worse" is a drop); None when either period has no answer."""
    before, recent = by_answer_time((e for e in events if e.model_version == version), now - recent_s)
    earlier, latest = tally(before).get(version), tally(recent).get(version)
    if earlier is None or latest is None:
        return None
    return compare(Arm(earlier.answers, earlier.clicked), Arm(latest.answers, latest.clicked), policy)


def analyse(profile: ReferenceProfile, log: RequestLog, window: int = WINDOW) -> list[Health]:
    """Health of consecutive windows of ``window`` queries (the last one may be shorter, down to the minimum)."""
    healths = []
    for start in range(0, len(log.top1), window):
        end = min(start + window, len(log.top1))
        if end - start < MIN_WINDOW:
            break
        healths.append(
            health_of(profile, log.embeddings[start:end], log.stats[start:end], log.hits[start:end], log.top1[start:end])
        )
    return healths


def drop_summary(engagement: Comparison) -> str:
    """The engagement comparison in the monitor's words: the recent answers against those before."""
    recent, before = engagement.candidate, engagement.baseline
    words = {CANDIDATE_WORSE: "fell", UNDECIDED: "not enough evidence of a change", CANDIDATE_BETTER: "rose"}
    change = words.get(engagement.decision, engagement.decision)
    if engagement.decision == UNDECIDED and min(recent.answers, before.answers) < engagement.policy.min_answers:
        change = f"not enough evidence (fewer than {engagement.policy.min_answers} answers in a period)"
    return (
        f"CTR@5 {recent.rate:.3f} on the {recent.answers:.0f} latest answers against {before.rate:.3f} on the "
        f"{before.answers:.0f} before: {change} (change {engagement.lift:+.3f}, {1 - engagement.policy.alpha:.0%} "
        f"always-valid interval [{engagement.low:+.3f}, {engagement.high:+.3f}])"
    )


def decide_retraining(
    healths: list[Health], new_items: int, catalogue_size: int, engagement: Comparison | None = None,
    skipped: Mapping[str, SkippedLines] | None = None,
) -> Decision:  # fmt: skip
    """Retrain when the latest window drifted, when enough products were added since the model was trained, or when
    shoppers engage significantly less with it than they did. ``skipped``: per log (LOG_LINES), its lines that did
    not parse, noted with the first of them."""
    reasons, signals = [], []
    if healths and healths[-1].decision.drifted:
        reasons += [f"the latest window drifted: {reason}" for reason in healths[-1].decision.reasons]
        signals.append("drift")
    if catalogue_size and new_items / catalogue_size >= NEW_ITEMS_SHARE:
        reasons.append(f"{new_items} products added since training ({new_items / catalogue_size:.0%} of {catalogue_size})")
        signals.append("catalogue growth")
    if engagement is not None and engagement.decision == CANDIDATE_WORSE:
        reasons.append(f"shoppers' engagement dropped: {drop_summary(engagement)}")
        signals.append("engagement")
    notes = [] if healths else [f"no drift test: fewer than {MIN_WINDOW} logged queries"]
    if engagement is None:
        notes.append("no engagement test: no feedback events of this model in both periods")
    elif engagement.decision != CANDIDATE_WORSE:
        notes.append(f"engagement held: {drop_summary(engagement)}")
    for log, lines in (skipped or {}).items():
        if lines.count:
            notes.append(f"skipped {lines.count} unreadable line(s) of {LOG_LINES[log]}: {'; '.join(lines.examples)}")
    summary = drop_summary(engagement) if engagement is not None else ""
    counts = {log: lines.count for log, lines in (skipped or {}).items()}
    return Decision(bool(reasons), reasons + notes, [as_dict(h) for h in healths], signals, summary, counts)


def write_report(profile: ReferenceProfile, log: RequestLog, healths: list[Health], decision: Decision, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DECISION_FILE).write_text(json.dumps(asdict(decision), indent=2), encoding="utf-8")
    (out_dir / REPORT_FILE).write_text(render(profile, log, healths, decision), encoding="utf-8")
    return out_dir / REPORT_FILE


def render(profile: ReferenceProfile, log: RequestLog, healths: list[Health], decision: Decision) -> str:
    latest = slice(max(0, len(log.top1) - WINDOW), len(log.top1))
    stats = "".join(
        _histogram(name, profile.image_stats[name], np.asarray([row[name] for row in log.stats[latest]], dtype=np.float64))
        for name in profile.image_stats
        if log.stats
    )
    p_values = [min(float(h.decision.results[0].p_value), 1.0) for h in healths]
    verdict = "Retrain" if decision.retrain else "No retraining needed"
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in decision.reasons) or "<li>nothing drifted</li>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>fashionrec drift report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} .plots{{display:flex;flex-wrap:wrap;gap:1em}}
h1 span{{color:{"#b00" if decision.retrain else "#070"}}}</style></head><body>
<h1>Drift report for model {html.escape(profile.model_version)}: <span>{verdict}</span></h1>
<ul>{reasons}</ul>
<p>{len(log.top1)} logged image queries in {len(healths)} windows of up to {WINDOW}; reference: {len(profile.embeddings)}
catalogue embeddings, {profile.catalogue_size} products; each test at α = {ALPHA} (image statistics Bonferroni-corrected).</p>
<h2>Embedding drift per window (MMD permutation test)</h2>
<div class="plots">{line_chart({"p-value": p_values}, threshold=ALPHA, log_scale=True)}</div>
<h2>Recommendations per window</h2>
<div class="plots">{line_chart({"coverage": [h.coverage for h in healths], "low-score share": [h.low_score_share for h in healths]})}</div>
<h2>Image statistics: reference (grey) and the latest window (red)</h2>
<div class="plots">{stats}</div>
</body></html>
"""


def _histogram(name: str, reference: np.ndarray, window: np.ndarray, width: int = 320, height: int = 160) -> str:
    """Two overlaid density histograms as SVG."""
    if not len(window):
        return ""
    low, high = float(min(reference.min(), window.min())), float(max(reference.max(), window.max()))
    edges = np.linspace(low, high if high > low else low + 1, 25)
    bars = []
    densities = [np.histogram(values, edges)[0] / max(len(values), 1) for values in (reference, window)]
    top = max(float(d.max()) for d in densities) or 1.0
    step = width / (len(edges) - 1)
    for density, colour in zip(densities, ("#999", "#d33"), strict=True):
        for i, value in enumerate(density):
            bar = height * float(value) / top
            bars.append(
                f'<rect x="{i * step:.1f}" y="{height - bar:.1f}" width="{step:.1f}" height="{bar:.1f}" fill="{colour}" fill-opacity="0.55"/>'
            )
    return (
        f'<figure><svg width="{width}" height="{height}" role="img" aria-label="{html.escape(name)}">{"".join(bars)}</svg>'
        f"<figcaption>{html.escape(name)}: {low:.3g} to {high:.3g}</figcaption></figure>"
    )


def fetch_profile(releases_uri: str, model_version: str, out_dir: Path) -> ReferenceProfile:
    """The reference profile of a published release (``<release>/serving/index/reference/``), copied locally."""

    return ReferenceProfile.load(fetch_serving(releases_uri, model_version, f"{SNAPSHOT_INDEX_DIR}/{PROFILE_DIR}", out_dir))


def production_version(registry_uri: str) -> str:
    """The model version holding the registry's production alias."""

    production = MlflowRegistry(registry_uri).production()
    if production is None:
        raise LookupError(f"no model holds the production alias in {redact_urls(registry_uri)}")
    return production.model_version


def read_events(event_log: str, skipped: SkippedLines, since: float | None = None) -> list[FeedbackEvent]:
    """The feedback events received at or after ``since`` (all without it); bad lines skipped and counted."""
    events = read_log_records(event_log, FeedbackEvent.from_log_line, skipped, since)
    return [event for event in events if since is None or event.received >= since]


def compact_logs(*locations: str, now: float | None = None) -> None:
    """Merge the finished days of each log folder into one part a day (fashionrec.storage.compact_log): what the
    next runs list and open stays proportional to the days kept, not to every flush of every replica. Lossless; a
    failure is logged, never the step's (the logs still read as they are)."""
    for location in locations:
        if not location:
            continue
        try:
            done = compact_log(location, now)
        except Exception:
            logger.exception("compacting %s failed; it is read as it is", redact_urls(location))
            continue
        if done.written:
            logger.info("compacted %d parts of %s into %d day parts", done.merged, redact_urls(location), done.written)


def run_monitoring_step(
    request_log: Path, releases_uri: str, model_version: str, registry_uri: str, new_items: int, out_dir: Path,
    event_log: str = "", catalog_changes: str = "", now: float | None = None,
    retention_days: float = LOG_RETENTION_DAYS,
) -> Decision:  # fmt: skip
    """The monitor component's body: the production release's profile against the request log, its engagement in
    the feedback events (``event_log``), and the products added since its release (``catalog_changes``, else the
    ``new_items`` given); report + decision. Of both logs only the parts of the last ``retention_days`` are read,
    and only the latest MAX_WINDOWS windows of queries are kept; unreadable lines are skipped and counted."""
    import tempfile

    now = time.time() if now is None else now
    since = now - retention_days * 86400
    version = model_version or production_version(registry_uri)
    if catalog_changes:
        release = read_release(releases_uri, version)
        if release is not None:
            new_items = max(new_items, len(added_since(ChangeLog(catalog_changes), release.created)))
    bad_events = SkippedLines()
    events = read_events(event_log, bad_events, since) if event_log else []
    engagement = engagement_drop(events, version, now) if events else None
    with tempfile.TemporaryDirectory(prefix="fashionrec-profile-") as tmp:
        profile = fetch_profile(releases_uri, version, Path(tmp) / "reference")
    log = RequestLog.read(request_log, version, since) if request_log.exists() else RequestLog.read_none()
    healths = analyse(profile, log)
    skipped = {"request_log": log.skipped, "event_log": bad_events}
    decision = decide_retraining(healths, new_items, profile.catalogue_size, engagement, skipped)
    write_report(profile, log, healths, decision, out_dir)
    return decision
