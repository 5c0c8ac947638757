"""The command line of a shift: `python -m tools.shift` (usage in tools/shift/__init__.py).

Owns: the options and their help, the order of a run (settings, rule, report, proxies' logs,
then the steps), the exit codes, and SIGINT/SIGTERM (the shift stops where it is, weights left
as they are, report written). Errors before anything moved exit 2; an error after the first
change rolls the new group back to 0 and exits 3.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tools.shift.elb import Elb, RuleGroups, elbv2_client
from tools.shift.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ShiftError,
    UsageError,
)
from tools.shift.judge import Thresholds
from tools.shift.logs import Fleet, load_fleet
from tools.shift.report import Report, render_text, write_report
from tools.shift.settings import DEFAULT_STEPS, Settings, settings_from
from tools.shift.steps import Shift, utc_now


class Interrupted(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.shift",
        description="Move the load balancer's traffic to a new proxy group in steps, judging "
        "each step from the proxies' access logs; roll back by itself on a bad step.",
        epilog="Exit codes: 0 done, 1 rolled back, 2 bad settings, 3 error, 130 interrupted. "
        "docs/shift.md",
    )
    p.add_argument("--to", help="the new proxy group (its ProxyGroup tag), e.g. b; env SHIFT_TO")
    p.add_argument("--rule-arn", help="the weighted listener rule; env SHIFT_RULE_ARN")
    p.add_argument(
        "--load-balancer",
        help="or the load balancer's name: its one weighted rule; env SHIFT_LOAD_BALANCER",
    )
    p.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)), help="default 5,25,50,100")
    p.add_argument("--interval", type=float, default=120.0, help="seconds judged per step (120)")
    p.add_argument(
        "--settle", type=float, default=10.0, help="seconds for the weights to apply (10)"
    )
    p.add_argument(
        "--max-wait",
        type=float,
        help="longest window waiting for --min-requests, seconds (default 3 x --interval)",
    )
    d = Thresholds()
    p.add_argument("--min-requests", type=int, default=d.min_requests)
    p.add_argument("--success-margin", type=float, default=d.success_margin)
    p.add_argument("--first-attempt-margin", type=float, default=d.first_attempt_margin)
    p.add_argument("--p99-ratio", type=float, default=d.p99_ratio)
    p.add_argument("--p99-slack", type=float, default=d.p99_slack, help="seconds (0.05)")
    p.add_argument(
        "--report", default="shift-report", help="writes REPORT.txt and REPORT.json (shift-report)"
    )
    p.add_argument("--log-path", help="the access log on the proxies (the access_log setting)")
    p.add_argument("--rollback", action="store_true", help="put the new group to 0 now and stop")
    return p


def _prepare(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[Settings, Elb, RuleGroups, Report]:
    """The settings, the rule as the load balancer has it, and the report to fill."""
    settings = settings_from(args, environ)
    elb = Elb(elbv2_client())
    rule_arn = settings.rule_arn or elb.find_rule(settings.load_balancer or "")
    rule = elb.read(rule_arn)
    if settings.to not in rule.weights:
        raise UsageError(f"--to {settings.to}: not a group of the rule ({', '.join(rule.weights)})")
    report = Report(
        rule_arn=rule_arn,
        new_group=settings.to,
        old_groups=[g for g in rule.weights if g != settings.to],
        hosts={},
        thresholds=settings.thresholds,
        started=utc_now(),
        initial_weights=dict(rule.weights),
    )
    return settings, elb, rule, report


def _rollback_now(settings: Settings, elb: Elb, rule: RuleGroups, report: Report) -> int:
    """--rollback: the new group to 0, the report written, nothing judged."""
    shift = Shift(settings, elb, rule, Fleet({}), report)
    shift.rollback("asked for (--rollback)", outcome="rollback")
    report.finished = utc_now()
    write_report(report, settings.report)
    return EXIT_OK


def _open_fleet(
    settings: Settings, elb: Elb, rule: RuleGroups, report: Report, environ: Mapping[str, str]
) -> Fleet:
    """Each group's proxies' logs; every log answers before anything moves."""
    fleet = load_fleet(elb, rule, environ, settings.log_path)
    report.hosts = {g: [log.name for log in logs] for g, logs in fleet.logs.items()}
    if not fleet.logs[settings.to]:
        raise UsageError(f"group {settings.to} has no proxy registered in its target group")
    fleet.marks()  # every log answers before anything moves
    return fleet


def _fail(shift: Shift, error: Exception) -> int:
    """An error during the shift: roll back when something had moved; say so when that fails."""
    report = shift.report
    report.reason = f"{type(error).__name__}: {error}"
    print(f"shift: error: {report.reason}", file=sys.stderr)
    report.outcome = "error"
    if shift.moved:
        try:
            shift.rollback(f"error: {report.reason}", outcome="error")
        except Exception as again:  # the API is down too: say so, loudly
            report.reason += f"; ROLLBACK FAILED: {again}: run --rollback"
    return EXIT_ERROR


def _run(shift: Shift) -> int:
    """The steps, SIGINT/SIGTERM stopping them where they are (weights left as they are)."""
    report = shift.report
    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return shift.run()
    except Interrupted as e:
        report.outcome = "interrupted"
        report.reason = (
            f"{e} during the shift: weights left as they are; run again to resume, or --rollback"
        )
        report.final_weights = _try(lambda: shift.elb.read(shift.rule.rule_arn).weights, {})
        return EXIT_INTERRUPTED
    except Exception as e:
        return _fail(shift, e)
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        settings, elb, rule, report = _prepare(args, environ)
        if settings.rollback:
            return _rollback_now(settings, elb, rule, report)
        fleet = _open_fleet(settings, elb, rule, report, environ)
    except ShiftError as e:
        print(f"shift: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # botocore: no credentials, no such load balancer...
        print(f"shift: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        code = _run(Shift(settings, elb, rule, fleet, report))
    finally:
        fleet.close()
    report.finished = utc_now()
    write_report(report, settings.report)
    print(render_text(report), end="")
    return code


def _try(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception:
        return default
