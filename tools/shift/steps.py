"""The step loop of a shift: plan from the share found, set each share, measure it, roll back.

Owns: the order of a shift (the weights are always read from the load balancer, never assumed:
a rerun after a kill checks the share it finds again, then goes on), the window of each step
(settle, then `--interval`, growing up to `--max-wait` for traffic), the baseline at 100% (the
last step that had old traffic), and the rollback of a failed step. Leaves alone: the verdict
itself (tools/shift/judge.py), signals and exit on errors (tools/shift/cli.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tools.shift.elb import Elb, RuleGroups, share_of, weights_for
from tools.shift.errors import EXIT_OK, EXIT_ROLLED_BACK
from tools.shift.judge import Figures, Verdict, figures_of, verdict
from tools.shift.logs import Fleet
from tools.shift.report import Report, Step, fmt_weights, pct, write_report
from tools.shift.settings import Settings


def plan_steps(steps: Sequence[int], current: float) -> list[float]:
    """The shares still to go through from the CURRENT share: a share between 0 and 100 found on
    the load balancer (a shift killed halfway, or weights set by hand) is checked again first."""
    if current >= 100:
        return []
    rest: list[float] = [s for s in steps if s > current]
    return [current, *rest] if current > 0 else rest


def utc_now() -> datetime:
    return datetime.now(UTC)


def _whole_second(when: datetime, up: bool) -> datetime:
    """WHEN rounded to a whole second, up or down (nginx logs whole seconds)."""
    floor = when.replace(microsecond=0)
    return floor + timedelta(seconds=1) if up and floor != when else floor


@dataclass
class Shift:
    """One run: the settings, the load balancer, the proxies' logs; `run` does the steps."""

    settings: Settings
    elb: Elb
    rule: RuleGroups
    fleet: Fleet
    report: Report
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = utc_now
    say: Callable[[str], None] = print
    moved: bool = False

    @property
    def new(self) -> str:
        return self.settings.to

    def set_share(self, share: float) -> dict[str, int]:
        current = self.elb.read(self.rule.rule_arn).weights  # never assumed
        weights = weights_for(share, current, self.new)
        if weights != current:
            self.elb.set_weights(self.rule, weights)
            self.moved = True
        self.say(f"shift: {self.new} at {share:g}%: weights {fmt_weights(weights)}")
        return weights

    def rollback(self, reason: str, outcome: str = "rolled-back") -> None:
        weights = self.set_share(0)
        self.report.outcome, self.report.reason = outcome, reason
        self.report.final_weights = weights
        self.say(f"shift: ROLLED BACK ({reason}): weights {fmt_weights(weights)}")

    def _baseline(self) -> tuple[Figures, str]:
        """At 100% the old groups get nothing: their figures of the last step that had them."""
        prior = next(
            (st for st in reversed(self.report.steps) if st.baseline == "same window"), None
        )
        if prior is None:
            return Figures(), "none"
        return prior.old, f"step {prior.share:g}%"

    def _judge(
        self, old_groups: list[str], marks: Mapping[str, int], start: datetime, end: datetime
    ) -> tuple[Figures, Figures, str, Verdict]:
        """The window's figures of both sides, the baseline used, and the verdict."""
        new = figures_of(self.fleet.samples(self.new, marks, start, end))
        old = figures_of([x for g in old_groups for x in self.fleet.samples(g, marks, start, end)])
        baseline = "same window"
        if not old_groups:
            old, baseline = self._baseline()
        if baseline == "none":
            v = Verdict("pass", ("no old group traffic to compare with: resumed at 100%",))
        else:
            v = verdict(new, old, self.settings.thresholds)
        return new, old, baseline, v

    def measure(self, share: float, weights: dict[str, int]) -> Step:
        s = self.settings
        self.sleep(s.settle)
        marks = self.fleet.marks()
        start = _whole_second(self.now(), up=True)
        waited = 0.0
        step_wait = s.interval
        old_groups = [g for g in self.report.old_groups if weights.get(g, 0) > 0]
        while True:
            self.sleep(step_wait)
            waited += step_wait
            end = _whole_second(self.now(), up=False)
            new, old, baseline, v = self._judge(old_groups, marks, start, end)
            self.say(
                f"shift: {share:g}% window {waited:.0f}s: new {new.requests} req "
                f"{pct(new.success)}, old {old.requests} req {pct(old.success)}: {v.outcome}"
            )
            if v.outcome != "insufficient" or waited >= s.max_wait:
                return Step(share, weights, start, end, new, old, baseline, v)
            step_wait = min(s.interval, s.max_wait - waited)

    def run(self) -> int:
        current = share_of(self.rule.weights, self.new)
        plan = plan_steps(self.settings.steps, current)
        if not plan:
            self.report.outcome, self.report.reason = "completed", "already at 100%"
            self.report.final_weights = dict(self.rule.weights)
            self.say(f"shift: {self.new} already takes 100%: nothing to do")
            return EXIT_OK
        if current > 0:
            self.say(f"shift: found {self.new} at {current:g}%: checking it again, then {plan[1:]}")
        for share in plan:
            weights = self.set_share(share)
            step = self.measure(share, weights)
            self.report.steps.append(step)
            write_report(self.report, self.settings.report)
            if step.verdict.outcome == "insufficient":
                self.rollback(
                    f"step {share:g}%: not enough traffic in {self.settings.max_wait:g}s "
                    f"({'; '.join(step.verdict.reasons)})"
                )
                return EXIT_ROLLED_BACK
            if step.verdict.outcome == "fail":
                self.rollback(f"step {share:g}%: {'; '.join(step.verdict.reasons)}")
                return EXIT_ROLLED_BACK
        self.report.outcome = "completed"
        self.report.reason = f"every step passed: {self.new} takes 100%"
        self.report.final_weights = self.elb.read(self.rule.rule_arn).weights
        return EXIT_OK
