"""The canary verdict on Prometheus text, and releases that are published once and never overwritten."""

from pathlib import Path

import pytest

from fashionrec.deploy.canary import CanaryPolicy, Observation, judge, parse_observations, window
from fashionrec.deploy.step import DeployRefused, deploy, parse_target
from fashionrec.serving.release import Deployment


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
    assert seen["b"].error_rate == pytest.approx(3 / 13)  # its 3 client errors count too
    assert seen["b"].requests == 13 and seen["b"].latency_quantile(0.5) == pytest.approx(0.005)
    assert 0.01 < seen["a"].latency_quantile(0.95) <= 0.1


def test_the_verdict_promotes_a_healthy_canary_and_says_why_it_refuses_another() -> None:
    healthy = parse_observations(exposition("new", 20, 0, 20, 0))["new"]
    stable = parse_observations(exposition("old", 80, 0, 80, 0))["old"]
    assert judge(healthy, stable, CanaryPolicy()).promote
    failing = parse_observations(exposition("new", 18, 2, 18, 0))["new"]
    verdict = judge(failing, stable, CanaryPolicy())
    assert not verdict.promote and "error rate 0.217 above 0.137" in verdict.reasons[0]  # 2 server + 3 client errors of 23
    slow = parse_observations(exposition("new", 20, 0, 0, 20))["new"]
    assert any("p95" in r for r in judge(slow, stable, CanaryPolicy(latency_slack_s=0.0)).reasons)
    assert "fewer than the 5 needed" in judge(Observation(ok=2), stable, CanaryPolicy()).reasons[0]
    assert verdict.table("new", "old").splitlines()[2].startswith("| canary | `new` | 23 | 3 | 2 | 0.217")


def test_a_canary_that_refuses_valid_requests_with_4xx_is_not_promoted() -> None:
    """A 400 to nine probes of ten and a 200 to one has no 5xx and a p95: it used to be promoted."""
    stable = Observation(ok=40, buckets={0.01: 40, float("inf"): 40})
    refusing = Observation(ok=1, client_errors=9, buckets={0.01: 1, float("inf"): 1})
    verdict = judge(refusing, stable, CanaryPolicy())
    assert not verdict.promote and "canary error rate 0.900 above 0.010" in verdict.reasons[0]
    # as many client errors as stable's (real clients' bad requests reach both): judged as stable
    both = Observation(ok=36, client_errors=4, buckets={0.01: 36, float("inf"): 36})
    assert judge(both, Observation(ok=72, client_errors=8, buckets={0.01: 72, float("inf"): 72}), CanaryPolicy()).promote


def test_federated_samples_say_when_they_were_scraped() -> None:
    text = "".join(
        f"{line} 1700000002500\n" if line.startswith("fashionrec_model_requests_total") else f"{line}\n"
        for line in exposition("a", 10, 0, 10, 0).splitlines()
    )
    assert parse_observations(text)["a"].scraped_at == pytest.approx(1700000002.5)
    assert parse_observations(exposition("a", 10, 0, 10, 0))["a"].scraped_at is None  # read from the server itself


def test_deploy_targets_are_parsed_or_refused(tmp_path: Path) -> None:
    assert parse_target("kserve://fashionrec").name == "fashionrec" and parse_target("kserve://fashionrec").namespace == ""
    assert parse_target("kserve://team-a/fashionrec").namespace == "team-a"
    assert parse_target(f"local://{tmp_path}").work_dir == tmp_path
    assert parse_target("none").kind == "none"
    for bad in ("kserve://", "local://relative/dir", "http://x"):
        with pytest.raises(ValueError, match="deploy target"):
            parse_target(bad)


def test_a_cluster_rollout_without_a_registry_is_refused_before_anything_is_published(tmp_path: Path) -> None:
    artifacts = Deployment(tmp_path / "model_store", tmp_path / "index", tmp_path / "feature_repo")  # never read
    releases = tmp_path / "releases"
    with pytest.raises(DeployRefused, match="no model registry"):
        deploy(artifacts, "kserve://team-a/fashionrec", str(releases), probes=[], registry_uri="")
    assert not releases.exists()
