"""The canary check: per-model-version request counts and latencies from the transformers' Prometheus metrics
(``fashionrec_model_requests``, ``fashionrec_model_request_seconds``), compared between the canary and the stable
version over the canary window, and shoppers' engagement (``fashionrec_engagement_*``) where enough answers were
shown: a canary that shoppers click significantly less is not promoted (fashionrec.engagement.sequential; too few
answers is "not enough evidence", which blocks nothing). Pure functions: the targets only fetch the metrics text."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from fashionrec.engagement.sequential import CANDIDATE_WORSE, Arm, Comparison, SequentialPolicy, compare

REQUESTS_METRIC = "fashionrec_model_requests"
SECONDS_METRIC = "fashionrec_model_request_seconds"
ANSWERS_METRIC = "fashionrec_engagement_answers"
CLICKED_METRIC = "fashionrec_engagement_clicked_answers"


@dataclass
class Observation:
    """What one model version answered over a window: counts by outcome and the latency histogram of the ok ones."""

    ok: float = 0.0
    client_errors: float = 0.0
    server_errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # cumulative count per upper bound (le)
    seconds_sum: float = 0.0
    # When the oldest of its request counters was scraped (Unix seconds); None: read from the servers themselves.
    scraped_at: float | None = None
    answers: float = 0.0  # answers shown to shoppers (fashionrec.engagement.tally)
    clicked: float = 0.0  # of which clicked within the top 5

    @property
    def engagement(self) -> Arm:
        return Arm(self.answers, self.clicked)

    @property
    def requests(self) -> float:
        return self.ok + self.client_errors + self.server_errors

    @property
    def error_rate(self) -> float:
        """Share of requests that failed, client errors included: the probes are valid requests, and stable answers
        the same mix of real clients' requests, so a canary refusing them with 4xx is no better than one failing."""
        return (self.client_errors + self.server_errors) / self.requests if self.requests else 0.0

    def latency_quantile(self, q: float) -> float:
        """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the q-th request."""
        bounds = sorted(self.buckets)
        total = self.buckets.get(math.inf, 0.0)
        if not bounds or total <= 0:
            return math.nan
        rank, lower, below = q * total, 0.0, 0.0
        for upper in bounds:
            count = self.buckets[upper]
            if count >= rank:
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
            lower, below = upper, count
        return lower

    def minus(self, before: Observation) -> Observation:
        return Observation(
            self.ok - before.ok,
            self.client_errors - before.client_errors,
            self.server_errors - before.server_errors,
            {le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            self.seconds_sum - before.seconds_sum,
            self.scraped_at,
            self.answers - before.answers,
            self.clicked - before.clicked,
        )


def parse_observations(metrics_text: str) -> dict[str, Observation]:
    """Per model version, summed over every series (pods, revisions) in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, Observation] = defaultdict(Observation)
    for family in text_string_to_metric_families(metrics_text):
        # By sample name: the family's name and type differ between prometheus_client's output and a federation.
        for sample in family.samples:
            version = sample.labels.get("model_version")
            if version is None:
                continue
            seen = found[version]
            if sample.name == f"{REQUESTS_METRIC}_total":
                if sample.timestamp is not None:  # a federation's samples carry the time of their scrape
                    seen.scraped_at = min(float(sample.timestamp), seen.scraped_at or math.inf)
                outcome = sample.labels.get("outcome", "")
                if outcome == "ok":
                    seen.ok += sample.value
                elif outcome == "client_error":
                    seen.client_errors += sample.value
                else:
                    seen.server_errors += sample.value
            elif sample.name == f"{SECONDS_METRIC}_bucket":
                le = float(sample.labels["le"])
                seen.buckets[le] = seen.buckets.get(le, 0.0) + sample.value
            elif sample.name == f"{SECONDS_METRIC}_sum":
                seen.seconds_sum += sample.value
            elif sample.name == f"{ANSWERS_METRIC}_total":
                seen.answers += sample.value
            elif sample.name == f"{CLICKED_METRIC}_total":
                seen.clicked += sample.value
    return dict(found)


def window(before: dict[str, Observation], after: dict[str, Observation]) -> dict[str, Observation]:
    """What each version answered between two scrapes."""
    return {version: seen.minus(before.get(version, Observation())) for version, seen in after.items()}


@dataclass(frozen=True)
class CanaryPolicy:
    """When a canary may be promoted. The latency check compares p95 with the stable version's over the same
    window, with an absolute slack so that sub-millisecond noise on a quiet service cannot fail it."""

    min_requests: int = 5  # canary answers needed before judging
    max_error_rate: float = 0.01  # canary error share (4xx and 5xx) allowed above the stable version's ...
    # ... plus this many standard errors of stable's share on the canary's sample: a canary failing exactly as often
    # as stable (real clients' bad requests reach both) exceeds the limit by chance about 1% of the time (one-sided).
    error_rate_z: float = 2.33
    max_latency_ratio: float = 2.0  # canary p95 at most this times the stable p95 ...
    latency_slack_s: float = 0.05  # ... plus this
    engagement: SequentialPolicy = field(default_factory=SequentialPolicy)  # when shoppers' clicks decide


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str]
    canary: Observation
    stable: Observation
    engagement: Comparison | None = None

    def table(self, canary_version: str, stable_version: str) -> str:
        rows = [
            "| | version | requests | client errors | server errors | error rate | p50 ms | p95 ms | answers shown | CTR@5 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, version, seen in (("canary", canary_version, self.canary), ("stable", stable_version, self.stable)):
            p50, p95 = (seen.latency_quantile(q) * 1000 for q in (0.5, 0.95))
            rows.append(
                f"| {name} | `{version}` | {seen.requests:.0f} | {seen.client_errors:.0f} | {seen.server_errors:.0f} "
                f"| {seen.error_rate:.3f} "
                f"| {p50:.1f} | {p95:.1f} | {seen.answers:.0f} | {seen.engagement.rate:.3f} |"
            )
        return "\n".join(rows)


def judge(canary: Observation, stable: Observation, policy: CanaryPolicy) -> Verdict:
    """Promote only if the canary answered enough requests, with no more errors and not much slower than stable."""
    reasons: list[str] = []
    if canary.requests < policy.min_requests:
        reasons.append(f"the canary answered {canary.requests:.0f} requests, fewer than the {policy.min_requests} needed")
    spread = math.sqrt(stable.error_rate * (1 - stable.error_rate) / canary.requests) if canary.requests else 0.0
    allowed_errors = stable.error_rate + policy.max_error_rate + policy.error_rate_z * spread
    if canary.error_rate > allowed_errors:
        reasons.append(f"canary error rate {canary.error_rate:.3f} above {allowed_errors:.3f} (stable {stable.error_rate:.3f})")
    canary_p95, stable_p95 = canary.latency_quantile(0.95), stable.latency_quantile(0.95)
    if not math.isnan(canary_p95) and not math.isnan(stable_p95):
        allowed = stable_p95 * policy.max_latency_ratio + policy.latency_slack_s
        if canary_p95 > allowed:
            reasons.append(
                f"canary p95 {canary_p95 * 1000:.1f} ms above {allowed * 1000:.1f} ms (stable {stable_p95 * 1000:.1f} ms)"
            )
    elif math.isnan(canary_p95) and canary.requests >= policy.min_requests:
        reasons.append("the canary answered no request successfully")
    engagement = compare(stable.engagement, canary.engagement, policy.engagement)
    if engagement.decision == CANDIDATE_WORSE:
        reasons.append(f"shoppers engage less with the canary: {engagement.summary}")
    promote = not reasons
    if promote:
        reasons.append(
            f"canary: {canary.requests:.0f} requests, error rate {canary.error_rate:.3f}, p95 "
            f"{canary_p95 * 1000:.1f} ms; stable: error rate {stable.error_rate:.3f}, p95 {stable_p95 * 1000:.1f} ms"
        )
        reasons.append(f"engagement: {engagement.summary}")
    return Verdict(promote, reasons, canary, stable, engagement)
