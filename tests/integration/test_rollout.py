"""Rollouts on the real local chain (TorchServe + transformer processes), through the same code as on a cluster
(fashionrec.deploy.rollout): while clients query, a canary answers its share and is promoted, or fails and is rolled
back; no request fails and every answer comes from exactly one model. `serve --watch` follows the registry's alias."""

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_load import under_load

from fashionrec.config import INDEX_META_FILE, LOOPBACK
from fashionrec.deploy.canary import CanaryPolicy, parse_observations, window
from fashionrec.deploy.local_target import LocalServing, LocalTarget, served_versions, watch_tick
from fashionrec.deploy.rollout import RolloutSettings, probe, probe_bodies, rollout, switch
from fashionrec.local.deployment import production_deployment
from fashionrec.local.prometheus import LocalPrometheus, running_prometheus
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.client import image_request
from fashionrec.serving.processes import LIVE_CANARY, LIVE_DIR, LocalTorchServe, free_port, serve_locally
from fashionrec.serving.release import Deployment, publish
from fashionrec.training.registry import MlflowRegistry
from fashionrec.workdir import WorkDir

pytestmark = pytest.mark.integration
FAST = RolloutSettings(canary_share=0.5, max_probes=60)


@pytest.fixture(scope="module")
def target(stages: StageOutputs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    root = tmp_path_factory.mktemp("rollout")
    with serve_locally(stages.deployment, root) as (predictor, transformer):
        assert isinstance(predictor, LocalTorchServe)
        yield LocalTarget(LocalServing.of(predictor, transformer, root / LIVE_DIR), drain_s=0.2)


@pytest.fixture()
def probes(tiny_catalog: Path) -> list[dict[str, object]]:
    photos = [(tiny_catalog / "images" / f"{i}.jpg").read_bytes() for i in (10001, 10012, 10025)]
    return probe_bodies(photos, [10003, 10014])


def test_a_canary_answers_its_share_is_promoted_and_no_request_fails_or_mixes_models(
    target: LocalTarget, stages: StageOutputs, second_version: StageOutputs, tiny_catalog: Path, probes: list[dict[str, object]]
) -> None:
    old, new = stages.deployment.model_version, second_version.deployment.model_version
    body = image_request([(tiny_catalog / "images" / "10004.jpg").read_bytes()], top_k=3)
    results = []
    answers = under_load(
        target.endpoint(), [body], lambda: results.append(rollout(target, second_version.deployment, probes, FAST))
    )
    result = results[0]
    assert result.promoted, result.markdown
    assert result.verdict is not None and result.verdict.canary.requests >= FAST.policy.min_requests
    assert "| canary |" in result.markdown and f"`{new}`" in result.markdown
    assert answers and all(status == 200 for status, _ in answers), answers[:3]
    assert {version for _, version in answers} <= {old, new}  # each answer from one model
    assert target.stable_version() == new and served_versions(target.serving) == {new}
    assert not (target.serving.live_dir / LIVE_CANARY).exists()
    metrics = target.metrics_text()
    assert 'fashionrec_stale_embeddings_total{source="predictor"}' not in metrics
    # and back, by a decision already taken (`model rollback`, `serve --watch`): the same steps, no check
    replaced: list[str | None] = []
    answers = under_load(target.endpoint(), [body], lambda: replaced.append(switch(target, stages.deployment)))
    assert replaced == [new] and all(status == 200 for status, _ in answers)
    assert target.stable_version() == old and served_versions(target.serving) == {old}


def broken_index(second: StageOutputs, tmp_path: Path) -> Deployment:
    index = tmp_path / "broken-index"
    shutil.copytree(second.index_dir, index)
    (index / INDEX_META_FILE).write_text("{ not json")
    return Deployment(second.model_store, index, second.feature_repo)


@pytest.mark.parametrize("failure", ["bad index.json", "another version's Feast store", "too slow for the policy"])
def test_a_failing_canary_is_rolled_back_and_production_keeps_answering(
    target: LocalTarget,
    stages: StageOutputs,
    second_version: StageOutputs,
    tiny_catalog: Path,
    tmp_path: Path,
    probes: list[dict[str, object]],
    failure: str,
) -> None:
    old = stages.deployment.model_version
    assert target.stable_version() == old
    release, settings = second_version.deployment, FAST
    if failure == "bad index.json":
        release = broken_index(second_version, tmp_path)
    elif failure == "another version's Feast store":  # the transformer refuses to load a pair of two versions
        release = Deployment(second_version.model_store, second_version.index_dir, stages.feature_repo)
    else:  # a verdict against the canary: nothing can be this fast
        settings = RolloutSettings(canary_share=0.5, max_probes=60, policy=CanaryPolicy(max_latency_ratio=0, latency_slack_s=-1))
    body = image_request([(tiny_catalog / "images" / "10004.jpg").read_bytes()], top_k=3)
    results = []
    answers = under_load(target.endpoint(), [body], lambda: results.append(rollout(target, release, probes, settings)))
    result = results[0]
    assert not result.promoted and "rolled back" in result.markdown
    assert "rollback incomplete" not in result.markdown, result.markdown
    assert answers and all(status == 200 for status, _ in answers), answers[:3]
    if failure != "too slow for the policy":  # a judged canary did answer its share, and only then was removed
        assert {version for _, version in answers} == {old}
    assert target.stable_version() == old and served_versions(target.serving) == {old}
    assert not (target.serving.live_dir / LIVE_CANARY).exists()


def test_watch_follows_the_production_alias(
    target: LocalTarget, stages: StageOutputs, second_version: StageOutputs, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    registry = MlflowRegistry(uri)
    for run in (stages, second_version):
        card = json.loads((run.model_dir / "model.json").read_text())
        registry.log_and_register({"model": run.model_dir}, {"seed": 0}, {"precision_at_5": 0.5}, card)
        publish(run.deployment, WorkDir(workdir).releases)
    registry.promote(1)

    def production() -> Deployment:
        return production_deployment(workdir, uri)

    old, new = stages.deployment.model_version, second_version.deployment.model_version
    assert watch_tick(target, production) == ""  # the first is served
    registry.promote(2)
    assert watch_tick(target, production) == f"switched model_version {old} -> {new} with no request dropped"
    registry.rollback()  # `fashionrec model rollback`
    assert watch_tick(target, production).endswith(f"{new} -> {old} with no request dropped")
    assert target.stable_version() == old


SCRAPE_S = 4.0  # long beside the probes (well under a second here), as 30 s is beside a cluster's probes


def judged_on(prometheus: LocalPrometheus, target: LocalTarget) -> LocalTarget:
    """The same servers, with the canary check reading a Prometheus that scrapes them (as on a cluster)."""
    return LocalTarget(target.serving, drain_s=0.2, prometheus_url=prometheus.url, scrape_interval_s=prometheus.scrape_interval_s)


def next_scrape(target: LocalTarget, after: float) -> float:
    """Wait for Prometheus' next scrape of the transformer; returns its time."""
    deadline = time.monotonic() + 4 * SCRAPE_S
    while time.monotonic() < deadline:
        scraped = [seen.scraped_at or 0.0 for seen in parse_observations(target.metrics_text()).values()]
        if scraped and min(scraped) > after:
            return min(scraped)
        time.sleep(0.1)
    raise AssertionError("prometheus did not scrape the transformer")


def test_the_canary_is_judged_on_a_scrape_taken_after_its_probes(
    target: LocalTarget, stages: StageOutputs, second_version: StageOutputs, tmp_path: Path, probes: list[dict[str, object]]
) -> None:
    old, new = stages.deployment.model_version, second_version.deployment.model_version
    assert target.stable_version() == old
    host = target.serving.transformer_url.removeprefix("http://")
    with running_prometheus(tmp_path / "prometheus", [host], scrape_interval_s=SCRAPE_S) as prometheus:
        scraped = judged_on(prometheus, target)
        # The stale-scrape case: read, probe, read again right away (as the check did) and both reads are one scrape,
        # so the probes the servers answered are not in the window at all.
        probe(scraped.endpoint(), probes, old, RolloutSettings(max_probes=1))  # a series to be scraped
        last = next_scrape(scraped, 0.0)
        next_scrape(scraped, last)  # the probes below start right after a scrape: the next is SCRAPE_S away
        before = parse_observations(scraped.metrics_text())
        sent, _ = probe(scraped.endpoint(), probes, old, RolloutSettings(max_probes=10))
        stale = window(before, parse_observations(scraped.metrics_text()))
        assert sent == 10 and stale[old].requests == 0
        # The check waits for a scrape after its probes: the canary is judged on what it answered, and promoted.
        result = rollout(scraped, second_version.deployment, probes, FAST)
        assert result.promoted, result.markdown
        assert result.verdict is not None and result.verdict.canary.requests >= FAST.policy.min_requests
        assert target.stable_version() == new
        switch(target, stages.deployment)  # production back as the other tests expect it
    assert target.stable_version() == old


def test_no_fresh_scrape_rolls_the_canary_back_with_that_reason(
    target: LocalTarget, stages: StageOutputs, second_version: StageOutputs, tmp_path: Path, probes: list[dict[str, object]]
) -> None:
    old = stages.deployment.model_version
    # a Prometheus that never reaches the transformer: its scrape target is a port nothing listens on
    with running_prometheus(tmp_path / "prometheus", [f"{LOOPBACK}:{free_port()}"], scrape_interval_s=1.0) as prometheus:
        result = rollout(judged_on(prometheus, target), second_version.deployment, probes, FAST)
    assert not result.promoted and "StaleMetrics: no scrape of" in result.markdown, result.markdown
    assert "rollback incomplete" not in result.markdown
    assert target.stable_version() == old and served_versions(target.serving) == {old}
