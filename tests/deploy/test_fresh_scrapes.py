"""The canary check judges only a scrape taken after its probes: it waits for one, up to a few scrape intervals, and
gives up with that reason. A stand-in target serves the metrics text here (one layer under test); the same check
against a real Prometheus is in tests/integration/test_rollout.py."""

import time

import pytest

from fashionrec.deploy.rollout import FRESH_SCRAPE_INTERVALS, StaleMetrics, fresh_observations


def federated(version: str, ok: int, scraped_at: float) -> str:
    stamp = int(scraped_at * 1000)
    return (
        "# TYPE fashionrec_model_requests_total untyped\n"
        f'fashionrec_model_requests_total{{model_version="{version}",outcome="ok",instance="t:8080"}} {ok} {stamp}\n'
    )


class ScrapedTarget:
    """Metrics as a Prometheus with ``scrape_interval_s`` federates them: a new scrape each interval after ``first_fresh``."""

    name = "stand-in"

    def __init__(self, scrape_interval_s: float, first_fresh: float | None) -> None:
        self.scrape_interval_s = scrape_interval_s
        self.first_fresh = first_fresh  # monotonic time of the first scrape after the probes (None: never)
        self.started = time.time()
        self.reads = 0

    def metrics_text(self) -> str:
        self.reads += 1
        fresh = self.first_fresh is not None and time.monotonic() >= self.first_fresh
        scraped = time.time() if fresh else self.started - 1.0
        return federated("new", 12 if fresh else 2, scraped) + federated("old", 40 if fresh else 30, scraped)


def test_the_check_waits_for_a_scrape_taken_after_the_probes() -> None:
    target = ScrapedTarget(0.2, first_fresh=time.monotonic() + 0.3)
    seen = fresh_observations(target, ["new", "old"], since=time.time())  # type: ignore[arg-type]
    assert seen["new"].ok == 12 and seen["old"].ok == 40 and target.reads > 1
    # the old check read once, right away: the scrape before the probes, where the canary answered 2
    assert ScrapedTarget(0.2, first_fresh=None).metrics_text().count(" 2 ") == 1


def test_no_fresh_scrape_is_a_clear_failure_after_a_few_intervals() -> None:
    target = ScrapedTarget(0.2, first_fresh=None)
    started = time.monotonic()
    with pytest.raises(
        StaleMetrics, match=r"no scrape of new, old taken after the probes within 1 s \(Prometheus scrapes every 0.2 s\)"
    ):
        fresh_observations(target, ["new", "old"], since=time.time())  # type: ignore[arg-type]
    assert time.monotonic() - started >= FRESH_SCRAPE_INTERVALS * 0.2


def test_a_missing_version_is_waited_for_like_a_stale_one() -> None:
    class NoCanary(ScrapedTarget):
        def metrics_text(self) -> str:
            return federated("old", 40, time.time())

    with pytest.raises(StaleMetrics, match="no scrape of new taken"):
        fresh_observations(NoCanary(0.1, None), ["new", "old"], since=time.time() - 10)  # type: ignore[arg-type]


def test_metrics_read_from_the_servers_themselves_are_fresh_at_once() -> None:
    target = ScrapedTarget(0.0, first_fresh=None)
    assert fresh_observations(target, ["new", "old"], since=time.time())["new"].ok == 2 and target.reads == 1  # type: ignore[arg-type]
