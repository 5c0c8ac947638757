"""The options of a shift, each checked before the load balancer is asked anything.

Owns: `Settings` (from the command line, else the SHIFT_* environment variables), the step
list, and the refusal of a bad value with the option's name (exit 2, nothing touched). Leaves
alone: the option parser itself (tools/shift/cli.py) and the margins' defaults
(tools/shift/judge.py `Thresholds`).
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.shift.errors import UsageError
from tools.shift.judge import Thresholds

DEFAULT_STEPS = (5, 25, 50, 100)


@dataclass(frozen=True)
class Settings:
    """Every option, checked (`settings_from`) before the load balancer is asked anything."""

    to: str
    rule_arn: str | None
    load_balancer: str | None
    steps: tuple[int, ...]
    interval: float
    settle: float
    max_wait: float
    thresholds: Thresholds
    report: Path
    log_path: str
    rollback: bool


def parse_steps(text: str) -> tuple[int, ...]:
    """ "5,25,50,100" -> (5, 25, 50, 100): whole percentages, rising, ending at 100."""
    items = [item.strip().removesuffix("%") for item in text.split(",")]
    if not all(item.isdigit() for item in items):
        raise UsageError(f"--steps {text!r}: expected whole percentages, e.g. 5,25,50,100")
    steps = tuple(int(item) for item in items)
    if any(not 1 <= s <= 100 for s in steps):
        raise UsageError(f"--steps {text!r}: each step must be from 1 to 100")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise UsageError(f"--steps {text!r}: steps must rise")
    if steps[-1] != 100:
        raise UsageError(f"--steps {text!r}: the last step must be 100 (the whole shift)")
    return steps


def _positive(name: str, value: float, *, zero_ok: bool = False) -> float:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise UsageError(f"{name} {value}: expected a number {'>= 0' if zero_ok else '> 0'}")
    return value


def _rule(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(rule ARN, load balancer name): at least one, and an ARN that names a listener rule."""
    rule_arn = args.rule_arn or environ.get("SHIFT_RULE_ARN") or None
    lb = args.load_balancer or environ.get("SHIFT_LOAD_BALANCER") or None
    if not rule_arn and not lb:
        raise UsageError(
            "which rule? give --rule-arn ARN (terraform output weighted_rule_arn) or "
            "--load-balancer NAME (or SHIFT_RULE_ARN / SHIFT_LOAD_BALANCER)"
        )
    if rule_arn and not (rule_arn.startswith("arn:") and ":listener-rule/" in rule_arn):
        raise UsageError(f"--rule-arn {rule_arn!r}: not a listener rule ARN")
    return rule_arn, lb


def _check_margins(args: argparse.Namespace) -> None:
    """The minimum traffic and the margins, each within its range."""
    if args.min_requests < 1:
        raise UsageError(f"--min-requests {args.min_requests}: expected 1 or more")
    for name, value in (
        ("--success-margin", args.success_margin),
        ("--first-attempt-margin", args.first_attempt_margin),
    ):
        if not 0 <= value < 1:
            raise UsageError(f"{name} {value}: expected a share from 0 to below 1, e.g. 0.005")
    if args.p99_ratio < 1:
        raise UsageError(f"--p99-ratio {args.p99_ratio}: expected 1 or more")


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    to = args.to or environ.get("SHIFT_TO", "")
    if not to:
        raise UsageError("no new group: give --to GROUP (or SHIFT_TO), e.g. --to b")
    rule_arn, lb = _rule(args, environ)
    interval = _positive("--interval", args.interval)
    max_wait = args.max_wait if args.max_wait is not None else 3 * interval
    if max_wait < interval:
        raise UsageError(f"--max-wait {max_wait}: must be at least --interval ({interval})")
    _check_margins(args)
    report = Path(args.report)
    if not report.parent.is_dir():
        raise UsageError(f"--report {args.report!r}: directory {str(report.parent)!r} missing")
    return Settings(
        to=to,
        rule_arn=rule_arn,
        load_balancer=lb,
        steps=parse_steps(args.steps),
        interval=interval,
        settle=_positive("--settle", args.settle, zero_ok=True),
        max_wait=max_wait,
        thresholds=Thresholds(
            min_requests=args.min_requests,
            success_margin=args.success_margin,
            first_attempt_margin=args.first_attempt_margin,
            p99_ratio=args.p99_ratio,
            p99_slack=_positive("--p99-slack", args.p99_slack, zero_ok=True),
        ),
        report=report,
        log_path=args.log_path or _deploy_default("access_log"),
        rollback=args.rollback,
    )


def _deploy_default(name: str) -> Any:
    from report.__main__ import deploy_default

    return deploy_default(name)
