"""One rollout procedure for every target (``local``: the processes of `fashionrec serve`; ``kserve``: an
InferenceService on a cluster):

1. ``start_canary``: the predictor serves the new encoder beside production's, then the new index answers a share of
   the traffic (on KServe: a transformer revision with ``canaryTrafficPercent``), and the target waits until ready.
2. Probe traffic (held-out catalogue photos and item ids) goes through the public endpoint while the per-version
   metrics are read before and after (fashionrec.deploy.canary). Where Prometheus scrapes them (a cluster), "after"
   is a scrape taken after the last probe: the check waits up to FRESH_SCRAPE_INTERVALS scrape intervals for one,
   and rolls back with that reason when none comes (a scrape read right after the probes would predate them).
3. ``promote`` (the new version takes all traffic, production's encoder is dropped) or ``rollback`` (everything as
   before). Any failure during 1-2 rolls back. The decision and the observed numbers are a Markdown report.

``switch`` is the same without the observation: following a decision already taken (``model rollback``, ``serve
--watch`` following the production alias).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from fashionrec.config import MODEL_NAME
from fashionrec.deploy.canary import CanaryPolicy, Observation, Verdict, judge, parse_observations, window
from fashionrec.serving.client import image_request, item_request
from fashionrec.serving.release import Deployment, Release

# What a target rolls out: a release, or a deployment's local artifacts (its model_version names the release).
Servable = Deployment | Release
# The transformers' per-version series, as Prometheus federates them (fashionrec.deploy.canary).
FEDERATE_MATCH = '{__name__=~"fashionrec_model_request.*|fashionrec_engagement_.*"}'
# How many scrape intervals the check waits for a scrape taken after its probes (Prometheus staggers its targets
# across an interval, so every pod's next scrape falls within one; the rest is slack for a slow scrape).
FRESH_SCRAPE_INTERVALS = 3.0


class Target(Protocol):
    """Where a release is rolled out. Every method raises on failure; ``rollback`` does every step it can."""

    name: str
    scrape_interval_s: float  # how often Prometheus scrapes the metrics it reads (0: it reads the servers directly)

    def stable_version(self) -> str | None:
        """The model version answering requests now (None: nothing is served yet)."""
        ...

    def start_canary(self, release: Servable, share: float) -> None: ...
    def metrics_text(self) -> str:
        """Prometheus text of the transformers' per-version metrics."""
        ...

    def endpoint(self) -> str:
        """Base URL that clients' requests (and the probes) go to."""
        ...

    def promote(self, release: Servable) -> None: ...
    def rollback(self, release: Servable) -> None: ...
    def first_deploy(self, release: Servable) -> None:
        """Serve ``release`` when nothing was served before (no canary possible)."""
        ...


@dataclass(frozen=True)
class RolloutSettings:
    canary_share: float = 0.2  # of the traffic the canary answers during the check
    max_probes: int = 200  # probe requests at most
    probe_timeout_s: float = 30.0
    policy: CanaryPolicy = field(default_factory=CanaryPolicy)


@dataclass(frozen=True)
class RolloutResult:
    promoted: bool
    model_version: str
    stable_version: str | None
    target: str
    reasons: list[str]
    verdict: Verdict | None = None

    @property
    def markdown(self) -> str:
        outcome = "promoted" if self.promoted else "rolled back: production untouched"
        lines = [
            f"# Rollout of `{self.model_version}` ({self.target}): {outcome}",
            "",
            f"Stable before: `{self.stable_version or 'nothing served'}`",
            "",
            *(f"- {reason}" for reason in self.reasons),
        ]
        if self.verdict is not None:
            lines += ["", self.verdict.table(self.model_version, self.stable_version or "")]
        return "\n".join(lines) + "\n"


def probe(endpoint: str, bodies: list[dict[str, Any]], canary_version: str, settings: RolloutSettings) -> tuple[int, int]:
    """Send probe requests round-robin until the canary answered ``min_requests`` of them (or ``max_probes``);
    returns (sent, answered by the canary)."""
    url = f"{endpoint.rstrip('/')}/v2/models/{MODEL_NAME}/infer"
    sent = by_canary = 0
    with httpx.Client(timeout=settings.probe_timeout_s) as client:
        for body in itertools.islice(itertools.cycle(bodies), settings.max_probes):
            response = client.post(url, json=body)
            sent += 1
            if response.status_code == 200 and response.json().get("model_version") == canary_version:
                by_canary += 1
            if by_canary >= settings.policy.min_requests and sent >= 2 * settings.policy.min_requests:
                break
    return sent, by_canary


class StaleMetrics(RuntimeError):
    """No scrape taken after the probes came in time: the canary cannot be judged."""


def federated_metrics(prometheus_url: str, timeout_s: float = 30.0) -> str:
    """The transformers' per-version series as Prometheus last scraped them, each sample with its scrape's time."""
    if not prometheus_url:
        raise ValueError("a canary check that reads Prometheus needs its URL (prometheus_url)")
    response = httpx.get(f"{prometheus_url.rstrip('/')}/federate", params={"match[]": FEDERATE_MATCH}, timeout=timeout_s)
    response.raise_for_status()
    return response.text


def fresh_observations(target: Target, versions: list[str], since: float) -> dict[str, Observation]:
    """The per-version metrics once a scrape taken after ``since`` (Unix seconds) holds every series of
    ``versions``; at once where the target reads its servers directly. StaleMetrics after FRESH_SCRAPE_INTERVALS."""
    timeout = FRESH_SCRAPE_INTERVALS * target.scrape_interval_s
    deadline = time.monotonic() + timeout
    while True:
        seen = parse_observations(target.metrics_text())
        if target.scrape_interval_s <= 0:
            return seen
        late = [v for v in versions if v not in seen or (seen[v].scraped_at or 0.0) <= since]
        if not late:
            return seen
        if time.monotonic() >= deadline:
            raise StaleMetrics(
                f"no scrape of {', '.join(late)} taken after the probes within {timeout:.0f} s (Prometheus scrapes every "
                f"{target.scrape_interval_s:g} s): the canary cannot be judged"
            )
        time.sleep(min(1.0, target.scrape_interval_s / 5))


def observe(target: Target, bodies: list[dict[str, Any]], version: str, stable: str, settings: RolloutSettings) -> Verdict:
    before = parse_observations(target.metrics_text())
    sent, by_canary = probe(target.endpoint(), bodies, version, settings)
    seen = window(before, fresh_observations(target, [version, stable], time.time()))
    verdict = judge(seen.get(version, Observation()), seen.get(stable, Observation()), settings.policy)
    verdict.reasons.insert(0, f"{sent} probe requests sent, {by_canary} answered by the canary")
    return verdict


def rollout(
    target: Target, release: Servable, probes: list[dict[str, Any]], settings: RolloutSettings | None = None
) -> RolloutResult:
    """Canary ``release`` beside what ``target`` serves, check it, then promote it or roll it back."""
    settings = settings or RolloutSettings()
    version = release.model_version
    stable = target.stable_version()
    if stable is None:
        target.first_deploy(release)
        return RolloutResult(True, version, None, target.name, ["nothing was served: the release is served directly"])
    if stable == version:
        return RolloutResult(True, version, stable, target.name, [f"{version} is already the version served"])
    try:
        target.start_canary(release, settings.canary_share)
        verdict = observe(target, probes, version, stable, settings)
    except Exception as exc:  # any failure of the canary: production must be left as it was
        problems = _rollback(target, release)
        reasons = [f"the canary failed: {type(exc).__name__}: {exc}", *problems]
        return RolloutResult(False, version, stable, target.name, reasons)
    if verdict.promote:
        target.promote(release)
        return RolloutResult(True, version, stable, target.name, verdict.reasons, verdict)
    return RolloutResult(False, version, stable, target.name, [*verdict.reasons, *_rollback(target, release)], verdict)


def _rollback(target: Target, release: Servable) -> list[str]:
    try:
        target.rollback(release)
    except Exception as exc:
        return [f"rollback incomplete: {type(exc).__name__}: {exc}"]
    return []


def switch(target: Target, release: Servable) -> str | None:
    """Serve ``release`` now, without a canary check (a decision already taken). Returns the version replaced,
    None if it was already served. On failure the target is rolled back and the error raised."""
    stable = target.stable_version()
    if stable is None:
        target.first_deploy(release)
        return None
    if stable == release.model_version:
        return None
    try:
        target.start_canary(release, 0.0)
        target.promote(release)
    except Exception:
        _rollback(target, release)
        raise
    return stable


def wait_for(check: Any, timeout_s: float, what: str, interval_s: float = 2.0) -> None:
    """Poll ``check()`` until it is true; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout_s:.0f} s")
        time.sleep(interval_s)


def probe_bodies(images: Iterator[bytes] | list[bytes], item_ids: list[int], top_k: int = 5) -> list[dict[str, Any]]:
    """Probe requests: one image query per photo, one item_id query per id, interleaved."""

    image_bodies = [image_request([image], top_k) for image in images]
    item_bodies = [item_request([item], top_k) for item in item_ids]
    mixed = [b for pair in itertools.zip_longest(image_bodies, item_bodies) for b in pair if b is not None]
    if not mixed:
        raise ValueError("no probe requests: give some photos or item ids")
    return mixed
