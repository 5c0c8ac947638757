"""The report of a shift: each step's window, figures and verdict, the outcome and its reason.

Owns: REPORT.txt (for a person: the outcome first, then every step) and REPORT.json (the same
figures, rates as fractions, windows in UTC), each replaced in one rename so a killed shift
leaves whole files. Leaves alone: how the figures are computed (tools/shift/judge.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.shift.judge import Z_NOISE, Figures, Thresholds, Verdict


@dataclass
class Step:
    share: float
    weights: dict[str, int]  # group -> weight, as set
    window_start: datetime
    window_end: datetime
    new: Figures
    old: Figures
    baseline: str  # "same window" or "step N%" (at 100% the old groups get nothing)
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "weights": self.weights,
            "window": {"start": _iso(self.window_start), "end": _iso(self.window_end)},
            "seconds": round((self.window_end - self.window_start).total_seconds()),
            "new": self.new.to_json(),
            "old": self.old.to_json(),
            "baseline": self.baseline,
            "verdict": self.verdict.outcome,
            "reasons": list(self.verdict.reasons),
        }


@dataclass
class Report:
    rule_arn: str
    new_group: str
    old_groups: list[str]
    hosts: dict[str, list[str]]  # group -> proxies read
    thresholds: Thresholds
    started: datetime
    initial_weights: dict[str, int]
    steps: list[Step] = field(default_factory=list)
    outcome: str = "running"  # completed | rolled-back | error | interrupted | rollback | running
    reason: str = ""
    final_weights: dict[str, int] = field(default_factory=dict)
    finished: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_arn": self.rule_arn,
            "new_group": self.new_group,
            "old_groups": self.old_groups,
            "hosts": self.hosts,
            "thresholds": asdict(self.thresholds) | {"z_noise": Z_NOISE},
            "started": _iso(self.started),
            "finished": _iso(self.finished) if self.finished else None,
            "outcome": self.outcome,
            "reason": self.reason,
            "initial_weights": self.initial_weights,
            "final_weights": self.final_weights,
            "steps": [s.to_json() for s in self.steps],
        }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def pct(value: float | None) -> str:
    """A rate as a percentage with two decimals; "-" for none."""
    return "-" if value is None else f"{100 * value:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f} ms"


def fmt_weights(weights: dict[str, int]) -> str:
    """{"b": 5, "a": 95} -> "a=95 b=5"."""
    return " ".join(f"{g}={w}" for g, w in sorted(weights.items()))


def _head(report: Report) -> list[str]:
    """The outcome, its reason, the rule, the proxies, the weights, the margins, the columns."""
    t = report.thresholds
    lines = [
        f"Traffic shift to group {report.new_group} (from {', '.join(report.old_groups)}): "
        f"{report.outcome.upper()}",
    ]
    if report.reason:
        lines.append(f"reason: {report.reason}")
    return [
        *lines,
        f"rule: {report.rule_arn}",
        "proxies: "
        + "; ".join(f"{g}: {', '.join(h) or '-'}" for g, h in sorted(report.hosts.items())),
        f"weights: {fmt_weights(report.initial_weights)} -> {fmt_weights(report.final_weights)}",
        f"margins: success -{100 * t.success_margin:.2f} points, first-attempt failure "
        f"+{100 * t.first_attempt_margin:.2f} points (each + {Z_NOISE:g} standard errors), "
        f"p99 x{t.p99_ratio:g} + {1000 * t.p99_slack:.0f} ms; at least {t.min_requests} "
        "requests per group",
        "",
        f"{'step':>5}  {'window (UTC)':<24}  {'group':<7} {'requests':>8}  {'success':>8}  "
        f"{'1st fail':>8}  {'p99':>7}  verdict",
    ]


def _step_rows(step: Step, new_group: str) -> list[str]:
    """Two rows (new group, old groups) and the verdict's reasons."""
    window = (
        f"{step.window_start:%H:%M:%S}-{step.window_end:%H:%M:%S}"
        f" ({(step.window_end - step.window_start).total_seconds():.0f}s)"
    )
    lines = []
    for i, (label, fig) in enumerate(((f"new {new_group}", step.new), ("old", step.old))):
        head = f"{step.share:>4g}%  {window:<24}" if i == 0 else f"{'':>5}  {'':<24}"
        tail = (
            step.verdict.outcome.upper()
            if i == 0
            else ("" if step.baseline == "same window" else f"(baseline: {step.baseline})")
        )
        lines.append(
            f"{head}  {label:<7} {fig.requests:>8}  {pct(fig.success):>8}  "
            f"{pct(fig.first_failure):>8}  {_ms(fig.p99):>7}  {tail}".rstrip()
        )
    return lines + [f"{'':>7}{reason}" for reason in step.verdict.reasons]


def render_text(report: Report) -> str:
    """The report for a person: the outcome and its reason first, then every step."""
    lines = _head(report)
    for step in report.steps:
        lines += _step_rows(step, report.new_group)
    return "\n".join(lines) + "\n"


def write_report(report: Report, path: Path) -> None:
    """PATH.txt and PATH.json, each replaced in one rename (a killed shift leaves whole files)."""
    for suffix, text in (
        (".txt", render_text(report)),
        (".json", json.dumps(report.to_json(), indent=2) + "\n"),
    ):
        target = path.with_name(path.name + suffix)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(target)
