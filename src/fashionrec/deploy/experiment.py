"""An A/B experiment between the version served and a candidate, judged on shoppers' engagement.

The candidate answers a fixed ``share`` of the traffic through the rollout targets' canary (locally: the
transformer's canary snapshot; on KServe: ``canaryTrafficPercent``), while the per-version engagement counters
(answers shown, clicked within the top 5) are read every ``poll_s``. The sequential test
(fashionrec.engagement.sequential) is looked at every time, which its always-valid guarantee allows: the experiment
stops as soon as it decides, or at ``max_answers`` per version or ``max_seconds``. Then the candidate is promoted
(``promote`` and it won) or the canary is taken down, through the rollout code. The report is HTML: the two
versions, the lift and its always-valid interval, and how both moved over the looks.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fashionrec.charts import line_chart
from fashionrec.deploy.canary import Observation, parse_observations, window
from fashionrec.deploy.rollout import Servable, Target
from fashionrec.engagement.sequential import CANDIDATE_BETTER, UNDECIDED, Comparison, SequentialPolicy, compare


@dataclass(frozen=True)
class ExperimentSettings:
    share: float = 0.5  # of the traffic the candidate answers
    max_answers: int = 5000  # answers shown per version at most
    max_seconds: float = 3600.0
    poll_s: float = 10.0  # how often the counters are read (and the test looked at)
    policy: SequentialPolicy = field(default_factory=SequentialPolicy)


@dataclass(frozen=True)
class Look:
    seconds: float  # since the experiment started
    comparison: Comparison


@dataclass
class ExperimentResult:
    baseline_version: str
    candidate_version: str
    settings: ExperimentSettings
    looks: list[Look] = field(default_factory=list)
    promoted: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def final(self) -> Comparison | None:
        return self.looks[-1].comparison if self.looks else None

    @property
    def winner(self) -> str | None:
        final = self.final
        if final is None or final.decision == UNDECIDED:
            return None
        return self.candidate_version if final.decision == CANDIDATE_BETTER else self.baseline_version

    def html(self) -> str:
        final = self.final
        rows = ""
        if final is not None:
            for name, version, arm in (
                ("baseline", self.baseline_version, final.baseline),
                ("candidate", self.candidate_version, final.candidate),
            ):
                rows += (
                    f"<tr><td>{name}</td><td><code>{html.escape(version)}</code></td><td>{arm.answers:.0f}</td>"
                    f"<td>{arm.clicked:.0f}</td><td>{arm.rate:.3f}</td></tr>"
                )
        level = f"{1 - self.settings.policy.alpha:.0%}"
        lift = (
            f"<p>Lift in CTR@5: <b>{final.lift:+.4f}</b> ({final.relative_lift:+.1%} relative), {level} always-valid "
            f"interval [{final.low:+.4f}, {final.high:+.4f}]</p>"
            if final is not None
            else "<p>No look was taken.</p>"
        )
        charts = ""
        if len(self.looks) > 1:
            charts = line_chart(
                {
                    "baseline CTR@5": [look.comparison.baseline.rate for look in self.looks],
                    "candidate CTR@5": [look.comparison.candidate.rate for look in self.looks],
                },
                x_label="look",
            ) + line_chart(
                {
                    "lift, interval low": [max(look.comparison.low, -1.0) for look in self.looks],
                    "lift": [look.comparison.lift for look in self.looks],
                    "lift, interval high": [min(look.comparison.high, 1.0) for look in self.looks],
                },
                threshold=0.0,
                x_label="look",
                threshold_label="no difference",
            )
        decision = html.escape(final.summary if final is not None else UNDECIDED)
        reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in self.reasons)
        policy = self.settings.policy
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment {html.escape(self.candidate_version)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.2em .8em;text-align:left}}</style></head>
<body>
<h1>Experiment: <code>{html.escape(self.candidate_version)}</code> against <code>{html.escape(self.baseline_version)}</code></h1>
<p><b>{decision}</b></p>
<p>Winner: <b>{html.escape(self.winner or "none (not enough evidence)")}</b>; {"promoted" if self.promoted else "not promoted"}.</p>
<table><tr><th></th><th>model version</th><th>answers shown</th><th>clicked (top 5)</th><th>CTR@5</th></tr>{rows}</table>
{lift}
<p>The candidate answered {self.settings.share:.0%} of the traffic. The test is a mixture sequential probability ratio
test (alpha {policy.alpha}, mixture scale {policy.tau}, at least {policy.min_answers} answers per version before any
decision), looked at {len(self.looks)} times: its false-win rate stays within alpha however often it is looked at.</p>
{charts}
<ul>{reasons}</ul>
</body></html>
"""


def run_experiment(
    target: Target,
    candidate: Servable,
    settings: ExperimentSettings | None = None,
    traffic: Callable[[], None] | None = None,
    promote: bool = False,
    on_look: Callable[[Look], None] | None = None,
) -> ExperimentResult:
    """Run the experiment on ``target`` (which must serve a version already). ``traffic``, when given, is called
    between looks instead of waiting ``poll_s`` (simulated shoppers); real shoppers need no help. ``on_look`` sees
    every look (progress for people)."""
    settings = settings or ExperimentSettings()
    baseline = target.stable_version()
    if baseline is None:
        raise ValueError(f"{target.name} serves nothing yet: deploy a first version before experimenting")
    version = candidate.model_version
    if baseline == version:
        raise ValueError(f"{version} is already the version served: nothing to compare it with")
    result = ExperimentResult(baseline, version, settings)
    before = parse_observations(target.metrics_text())
    target.start_canary(candidate, settings.share)
    started = time.monotonic()
    try:
        while True:
            if traffic is not None:
                traffic()
            else:
                time.sleep(settings.poll_s)
            seen = window(before, parse_observations(target.metrics_text()))
            comparison = compare(
                seen.get(baseline, Observation()).engagement, seen.get(version, Observation()).engagement, settings.policy
            )
            elapsed = time.monotonic() - started
            result.looks.append(Look(elapsed, comparison))
            if on_look is not None:
                on_look(result.looks[-1])
            if comparison.decision != UNDECIDED:
                result.reasons.append(f"decided after {elapsed:.0f} s and {len(result.looks)} looks")
                break
            if min(comparison.baseline.answers, comparison.candidate.answers) >= settings.max_answers:
                result.reasons.append(f"stopped at {settings.max_answers} answers per version without a decision")
                break
            if elapsed >= settings.max_seconds:
                result.reasons.append(f"stopped after {settings.max_seconds:.0f} s without a decision")
                break
    except BaseException:
        target.rollback(candidate)
        raise
    if promote and result.winner == version:
        target.promote(candidate)
        result.promoted = True
        result.reasons.append(f"{version} promoted: it serves all traffic")
    else:
        target.rollback(candidate)
        result.reasons.append(f"the canary was taken down: {baseline} serves all traffic")
    return result
