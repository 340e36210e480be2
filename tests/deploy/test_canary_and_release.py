"""The canary verdict on Prometheus text, and releases that are published once and never overwritten."""

from pathlib import Path

import pytest

from fashionrec.deploy.canary import CanaryPolicy, Observation, judge, parse_observations, window
from fashionrec.deploy.step import parse_target


def exposition(version: str, ok: int, server_errors: int, fast: int, slow: int) -> str:
    """Two scraped pods' worth of the transformer's per-version series."""
    lines = [
        "# TYPE fashionrec_model_requests counter",
        f'fashionrec_model_requests_total{{model_version="{version}",outcome="ok"}} {ok}',
        f'fashionrec_model_requests_total{{model_version="{version}",outcome="server_error"}} {server_errors}',
        f'fashionrec_model_requests_total{{model_version="{version}",outcome="client_error"}} 3',
        "# TYPE fashionrec_model_request_seconds histogram",
        f'fashionrec_model_request_seconds_bucket{{model_version="{version}",le="0.01"}} {fast}',
        f'fashionrec_model_request_seconds_bucket{{model_version="{version}",le="0.1"}} {fast + slow}',
        f'fashionrec_model_request_seconds_bucket{{model_version="{version}",le="+Inf"}} {fast + slow}',
        f'fashionrec_model_request_seconds_count{{model_version="{version}"}} {fast + slow}',
        f'fashionrec_model_request_seconds_sum{{model_version="{version}"}} 0.5',
    ]
    return "\n".join(lines) + "\n"


def test_observations_are_summed_per_version_and_windowed() -> None:
    before = parse_observations(exposition("a", 10, 0, 10, 0))
    after = parse_observations(exposition("a", 30, 1, 28, 2) + exposition("b", 10, 0, 10, 0))
    seen = window(before, after)
    assert seen["a"].ok == 20 and seen["a"].server_errors == 1 and seen["a"].client_errors == 0
    assert seen["a"].error_rate == pytest.approx(1 / 21)
    assert seen["b"].requests == 13 and seen["b"].latency_quantile(0.5) == pytest.approx(0.005)
    assert 0.01 < seen["a"].latency_quantile(0.95) <= 0.1


def test_the_verdict_promotes_a_healthy_canary_and_says_why_it_refuses_another() -> None:
    healthy = parse_observations(exposition("new", 20, 0, 20, 0))["new"]
    stable = parse_observations(exposition("old", 80, 0, 80, 0))["old"]
    assert judge(healthy, stable, CanaryPolicy()).promote
    failing = parse_observations(exposition("new", 18, 2, 18, 0))["new"]
    verdict = judge(failing, stable, CanaryPolicy())
    assert not verdict.promote and "error rate 0.100" in verdict.reasons[0]
    slow = parse_observations(exposition("new", 20, 0, 0, 20))["new"]
    assert any("p95" in r for r in judge(slow, stable, CanaryPolicy(latency_slack_s=0.0)).reasons)
    assert "fewer than the 5 needed" in judge(Observation(ok=2), stable, CanaryPolicy()).reasons[0]
    assert verdict.table("new", "old").splitlines()[2].startswith("| canary | `new` | 23 | 2 | 0.100")


def test_deploy_targets_are_parsed_or_refused(tmp_path: Path) -> None:
    assert parse_target("kserve://fashionrec").name == "fashionrec" and parse_target("kserve://fashionrec").namespace == ""
    assert parse_target("kserve://team-a/fashionrec").namespace == "team-a"
    assert parse_target(f"local://{tmp_path}").work_dir == tmp_path
    assert parse_target("none").kind == "none"
    for bad in ("kserve://", "local://relative/dir", "http://x"):
        with pytest.raises(ValueError, match="deploy target"):
            parse_target(bad)
