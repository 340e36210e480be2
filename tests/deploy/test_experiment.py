"""The experiment loop over a target (a fake one here: the rollout targets have their own tests; the integration
test runs the same loop on the real servers): it stops when the test decides, promotes only a winner when asked,
takes the canary down otherwise, and its report says what it found."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from fashionrec.deploy.experiment import ExperimentSettings, run_experiment
from fashionrec.engagement.sequential import SequentialPolicy
from fashionrec.serving.release import Deployment


@dataclass
class ShopTarget:
    """Serves ``stable``; a canary answers ``share`` of the answers; shoppers click at each version's CTR."""

    ctr: dict[str, float]
    stable: str = "v1"
    name: str = "shop"
    scrape_interval_s: float = 0.0
    canary: str | None = None
    share: float = 0.0
    answers: dict[str, int] = field(default_factory=dict)
    clicked: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def stable_version(self) -> str | None:
        return self.stable

    def start_canary(self, release: object, share: float) -> None:
        self.canary, self.share = release.model_version, share  # type: ignore[attr-defined]
        self.calls.append("start_canary")

    def promote(self, release: object) -> None:
        self.stable, self.canary = release.model_version, None  # type: ignore[attr-defined]
        self.calls.append("promote")

    def rollback(self, release: object) -> None:
        self.canary = None
        self.calls.append("rollback")

    def endpoint(self) -> str:
        return "http://shop"

    def first_deploy(self, release: object) -> None:
        raise AssertionError("not expected")

    def shop(self, answers: int = 200) -> None:
        for _ in range(answers):
            version = self.canary if self.canary and self.rng.random() < self.share else self.stable
            self.answers[version] = self.answers.get(version, 0) + 1
            self.clicked[version] = self.clicked.get(version, 0) + int(self.rng.random() < self.ctr[version])

    def metrics_text(self) -> str:
        lines = ["# TYPE fashionrec_engagement_answers counter", "# TYPE fashionrec_engagement_clicked_answers counter"]
        for version, count in self.answers.items():
            lines.append(f'fashionrec_engagement_answers_total{{model_version="{version}"}} {count}')
            lines.append(f'fashionrec_engagement_clicked_answers_total{{model_version="{version}"}} {self.clicked[version]}')
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Candidate:
    """What the loop reads of a release: its model version (the fake target needs nothing else)."""

    model_version: str


def candidate(version: str) -> Deployment:
    return Candidate(version)  # type: ignore[return-value]


SETTINGS = ExperimentSettings(share=0.5, max_answers=3000, policy=SequentialPolicy(alpha=0.05, min_answers=300))


def test_a_better_candidate_wins_and_is_promoted_with_the_lift_in_the_report() -> None:
    shop = ShopTarget({"v1": 0.20, "v2": 0.30})
    shop.shop(500)  # traffic before the experiment is not counted
    result = run_experiment(shop, candidate("v2"), SETTINGS, traffic=shop.shop, promote=True)
    assert result.winner == "v2" and result.promoted and shop.calls == ["start_canary", "promote"]
    assert shop.stable == "v2"
    final = result.final
    assert final is not None and 0 < final.low < final.lift < final.high
    assert final.baseline.answers < 3000  # it stopped as soon as it could tell
    page = result.html()
    assert "candidate better" in page and "<svg" in page and "promoted" in page


def test_without_a_difference_it_stops_at_the_sample_limit_and_takes_the_canary_down() -> None:
    shop = ShopTarget({"v1": 0.25, "v2": 0.25}, rng=np.random.default_rng(7))
    result = run_experiment(shop, candidate("v2"), SETTINGS, traffic=shop.shop, promote=True)
    assert result.winner is None and not result.promoted
    assert shop.calls == ["start_canary", "rollback"] and shop.stable == "v1"
    assert "not enough evidence" not in result.reasons[0] and "3000 answers" in result.reasons[0]


def test_a_failure_mid_experiment_takes_the_canary_down() -> None:
    shop = ShopTarget({"v1": 0.25, "v2": 0.25})

    def broken() -> None:
        raise ConnectionError("shoppers went away")

    with pytest.raises(ConnectionError):
        run_experiment(shop, candidate("v2"), SETTINGS, traffic=broken)
    assert shop.calls == ["start_canary", "rollback"]
