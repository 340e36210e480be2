"""The canary check reads shoppers' engagement from the transformer's own metrics: a canary shoppers click
significantly less is refused; too few answers shown decide nothing."""

from __future__ import annotations

import json

import numpy as np
from prometheus_client import generate_latest

from fashionrec.deploy.canary import CanaryPolicy, Observation, judge, parse_observations, window
from fashionrec.engagement.events import cloud_event
from fashionrec.serving.feedback import FeedbackCollector


def shoppers_of(collector: FeedbackCollector, version: str, answers: int, ctr: float, seed: int) -> None:
    """``answers`` answers of ``version`` shown, each clicked at rank 1..10 with probability ``ctr``."""
    rng = np.random.default_rng(seed)
    events = []
    for n in range(answers):
        request = f"{version}-r{n}"
        events += [cloud_event("impression", f"{request}-i{r}", request, version, r, r, "session1234") for r in range(1, 11)]
        if rng.random() < ctr:
            rank = int(rng.integers(1, 6))
            events.append(cloud_event("click", f"{request}-c", request, version, rank, rank, "session1234"))
    for start in range(0, len(events), 1000):
        collector.take(json.dumps(events[start : start + 1000]).encode())


def healthy(version: str) -> str:
    return "\n".join(
        [
            "# TYPE fashionrec_model_requests counter",
            f'fashionrec_model_requests_total{{model_version="{version}",outcome="ok"}} 500',
            "# TYPE fashionrec_model_request_seconds histogram",
            f'fashionrec_model_request_seconds_bucket{{model_version="{version}",le="0.01"}} 500',
            f'fashionrec_model_request_seconds_bucket{{model_version="{version}",le="+Inf"}} 500',
            f'fashionrec_model_request_seconds_sum{{model_version="{version}"}} 2.0',
            f'fashionrec_model_request_seconds_count{{model_version="{version}"}} 500',
        ]
    )


def observed(stable: str, canary: str, before: dict[str, Observation]) -> dict[str, Observation]:
    engagement = parse_observations(generate_latest().decode())
    seen = window(before, engagement)
    for version in (stable, canary):
        latency = parse_observations(healthy(version))[version]
        latency.answers, latency.clicked = seen[version].answers, seen[version].clicked
        seen[version] = latency
    return seen


def test_a_canary_that_shoppers_click_less_is_refused_and_a_thin_sample_decides_nothing() -> None:
    collector = FeedbackCollector(event_log=None)
    before = parse_observations(generate_latest().decode())
    shoppers_of(collector, "stable-a", 1200, ctr=0.30, seed=1)
    shoppers_of(collector, "canary-a", 1200, ctr=0.18, seed=2)
    seen = observed("stable-a", "canary-a", before)
    assert seen["canary-a"].answers == 1200
    verdict = judge(seen["canary-a"], seen["stable-a"], CanaryPolicy())
    assert not verdict.promote
    assert any("shoppers engage less with the canary" in reason for reason in verdict.reasons)
    assert "| 1200 |" in verdict.table("canary-a", "stable-a")

    before = parse_observations(generate_latest().decode())
    shoppers_of(collector, "stable-b", 100, ctr=0.30, seed=3)
    shoppers_of(collector, "canary-b", 100, ctr=0.05, seed=4)
    seen = observed("stable-b", "canary-b", before)
    verdict = judge(seen["canary-b"], seen["stable-b"], CanaryPolicy())
    assert verdict.promote
    assert any("not enough evidence: fewer than 300 answers" in reason for reason in verdict.reasons)
