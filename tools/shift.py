"""Progressive traffic shift to a new proxy group, with automatic rollback (docs/shift.md).

    python -m tools.shift --to GROUP [--load-balancer NAME | --rule-arn ARN]
                          [--steps 5,25,50,100] [--interval 120] [--settle 10]
                          [--min-requests 200] [--max-wait 360] [--report shift-report]
    python -m tools.shift --to GROUP --rollback      new group to 0 now, nothing else

The load balancer's weighted listener rule (terraform/lb.tf, `aws_lb_listener_rule.weighted`)
forwards to one target group per proxy group. The shift moves the new group's share of the
traffic through the steps by ModifyRule. At each step it waits `--settle` seconds for the load
balancer to apply the weights, then `--interval` seconds, and compares the two groups over that
same window, from the proxies' own JSON access logs (read over SSH from the offset each log had
when the window opened: only the window's lines cross the network). The figures, for each group:

- client success: the share of served requests whose final status is a success (report/analyze:
  below 500 and not 499; blocked scanner paths are left out);
- first-attempt failure: the share of requests that reached a backend whose first attempt failed
  (what clients would see without the retries);
- p99 latency: the 99th percentile of nginx's request_time;
- answered without a backend: the share nginx answered itself (429 of a rate limit keyed on the
  load balancer, 405...), a success for the report but not what the old group does with the
  same traffic.

A step passes when the new group is not worse than the old one by more than a margin, on each
figure. Rates are compared with a noise allowance: a rate fails when it is worse by more than
`margin + Z x standard error of the difference` (Z = 3; the pooled standard error of a
two-proportion z-test), so a few hundred requests do not roll a healthy group back by chance, and
a broken one (80% success against 99.9%) still fails at once.
p99 fails when above `old p99 x ratio + slack`. A group with fewer than `--min-requests` in the
window is not judged: the window grows until `--max-wait`, then the shift rolls back (no
verdict without traffic). At 100% the old groups receive nothing: the baseline is then the old
groups' figures from the last step that had them.

A failed step, an error reading the logs, or an error of the load balancer's API after the first
change: the new group's weight goes back to 0 (the old groups get its share back), a report is
written, exit 1 (3 for an error). The weights are always read from the load balancer, never
assumed: a rerun after a kill resumes from the share it finds (that share is checked again over a
fresh window, then the next steps follow); `--rollback` puts the new group to 0 at once.
SIGINT/SIGTERM stop the shift where it is (weights left as they are) with the report written.

Exit codes: 0 the new group takes 100% (or already did; or --rollback done), 1 rolled back by a
failed step, 2 bad settings (nothing touched), 3 an error (rolled back when something had moved),
130 interrupted (weights left as they are: run again to resume, or --rollback).

Owns: the weights of the weighted rule during a shift. Leaves alone: which groups the rule
forwards to (Terraform), the proxies (deploy.py), what a log line means (report/).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_STEPS = (5, 25, 50, 100)
EXIT_OK, EXIT_ROLLED_BACK, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
GROUP_TAG = "ProxyGroup"  # terraform/lb.tf tags each target group with its proxy group's key
Z_NOISE = 3.0  # standard errors of the difference allowed on top of a rate margin


class ShiftError(Exception):
    """Something the shift cannot go on with; the message says what."""


class UsageError(ShiftError):
    """A bad option or environment variable, found before anything was changed."""


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """How much worse than the old group the new one may be, and when a window is enough."""

    min_requests: int = 200  # served requests per group in a window before a verdict
    success_margin: float = 0.005  # client success may be at most 0.5 points lower
    first_attempt_margin: float = 0.05  # first-attempt failure may be at most 5 points higher
    p99_ratio: float = 1.5  # p99 may be at most 1.5 x the old group's ...
    p99_slack: float = 0.05  # ... plus 50 ms (request_time has millisecond resolution)


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


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    to = args.to or environ.get("SHIFT_TO", "")
    if not to:
        raise UsageError("no new group: give --to GROUP (or SHIFT_TO), e.g. --to b")
    rule_arn = args.rule_arn or environ.get("SHIFT_RULE_ARN") or None
    lb = args.load_balancer or environ.get("SHIFT_LOAD_BALANCER") or None
    if not rule_arn and not lb:
        raise UsageError(
            "which rule? give --rule-arn ARN (terraform output weighted_rule_arn) or "
            "--load-balancer NAME (or SHIFT_RULE_ARN / SHIFT_LOAD_BALANCER)"
        )
    if rule_arn and not (rule_arn.startswith("arn:") and ":listener-rule/" in rule_arn):
        raise UsageError(f"--rule-arn {rule_arn!r}: not a listener rule ARN")
    interval = _positive("--interval", args.interval)
    max_wait = args.max_wait if args.max_wait is not None else 3 * interval
    if max_wait < interval:
        raise UsageError(f"--max-wait {max_wait}: must be at least --interval ({interval})")
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


# --- weights (pure) -------------------------------------------------------------------------------


def share_of(weights: Mapping[str, int], new: str) -> float:
    """The new group's share of the traffic in percent (0 when every weight is 0)."""
    total = sum(weights.values())
    return round(100.0 * weights[new] / total, 2) if total else 0.0


def plan_steps(steps: Sequence[int], current: float) -> list[float]:
    """The shares still to go through from the CURRENT share: a share between 0 and 100 found on
    the load balancer (a shift killed halfway, or weights set by hand) is checked again first."""
    if current >= 100:
        return []
    rest: list[float] = [s for s in steps if s > current]
    return [current, *rest] if current > 0 else rest


def weights_for(share: float, current: Mapping[str, int], new: str) -> dict[str, int]:
    """Weights (summing to 100) giving NEW `share` percent; the others share the rest in the
    proportions they have now (equally when they all have 0). Largest remainders round."""
    others = [g for g in current if g != new]
    if not others:
        raise ShiftError("the rule forwards to the new group only: nothing to shift from")
    new_weight = round(share)
    rest = 100 - new_weight
    base = {g: current[g] for g in others}
    if sum(base.values()) == 0:
        base = dict.fromkeys(others, 1)
    total = sum(base.values())
    exact = {g: rest * base[g] / total for g in others}
    out = {g: math.floor(v) for g, v in exact.items()}
    left = rest - sum(out.values())
    for g in sorted(others, key=lambda g: exact[g] - out[g], reverse=True)[:left]:
        out[g] += 1
    return {**out, new: new_weight}


# --- figures and verdict (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """What one logged request says for the shift."""

    client_ok: bool
    first_failed: bool | None  # None: never reached a backend
    seconds: float  # request_time


@dataclass(frozen=True)
class Figures:
    requests: int = 0  # served requests (blocked scanner paths left out)
    ok: int = 0
    reached_backend: int = 0
    first_failed: int = 0
    p99: float | None = None  # seconds

    @property
    def success(self) -> float | None:
        return self.ok / self.requests if self.requests else None

    @property
    def unproxied(self) -> float:
        """Share of the served requests that reached no backend (nginx answered itself)."""
        return (self.requests - self.reached_backend) / self.requests if self.requests else 0.0

    @property
    def first_failure(self) -> float | None:
        return self.first_failed / self.reached_backend if self.reached_backend else None

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "success_rate": self.success,
            "first_attempt_failure_rate": self.first_failure,
            "unproxied_rate": self.unproxied,
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q from 0 to 100) of VALUES; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def figures_of(samples: Iterable[Sample]) -> Figures:
    samples = list(samples)
    reached = [s for s in samples if s.first_failed is not None]
    return Figures(
        requests=len(samples),
        ok=sum(s.client_ok for s in samples),
        reached_backend=len(reached),
        first_failed=sum(bool(s.first_failed) for s in reached),
        p99=percentile([s.seconds for s in samples], 99),
    )


@dataclass(frozen=True)
class Verdict:
    outcome: str  # pass | fail | insufficient
    reasons: tuple[str, ...] = ()


def _rate_worse(
    what: str, new: float, n_new: int, old: float, n_old: int, margin: float, higher_is_worse: bool
) -> str | None:
    """A reason when NEW is worse than OLD by more than margin + Z standard errors."""
    worse_by = (new - old) if higher_is_worse else (old - new)
    pooled = (new * n_new + old * n_old) / (n_new + n_old)  # two-proportion z-test
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_new + 1 / n_old))
    allowed = margin + Z_NOISE * se
    if worse_by > allowed:
        return (
            f"{what} {new:.2%} against {old:.2%}: worse by {100 * worse_by:.2f} points, "
            f"allowed {100 * margin:.2f} + noise {100 * Z_NOISE * se:.2f}"
        )
    return None


def verdict(new: Figures, old: Figures, t: Thresholds) -> Verdict:
    """Is the new group, over one window, not worse than the old by more than the margins?"""
    short = [
        f"{name} group: {f.requests} requests, {t.min_requests} needed"
        for name, f in (("new", new), ("old", old))
        if f.requests < t.min_requests
    ]
    if short:
        return Verdict("insufficient", tuple(short))
    assert new.success is not None and old.success is not None
    reasons = [
        _rate_worse(
            "client success",
            new.success,
            new.requests,
            old.success,
            old.requests,
            t.success_margin,
            higher_is_worse=False,
        )
    ]
    if new.first_failure is not None and old.first_failure is not None:
        reasons.append(
            _rate_worse(
                "first-attempt failure",
                new.first_failure,
                new.reached_backend,
                old.first_failure,
                old.reached_backend,
                t.first_attempt_margin,
                higher_is_worse=True,
            )
        )
    # Requests nginx answered itself (429 of a rate limit keyed on the load balancer, 405, 444):
    # a success for the report, but the same traffic mix reaches the backend less often.
    reasons.append(
        _rate_worse(
            "answered without a backend",
            new.unproxied,
            new.requests,
            old.unproxied,
            old.requests,
            t.success_margin,
            higher_is_worse=True,
        )
    )
    if new.p99 is not None and old.p99 is not None:
        limit = old.p99 * t.p99_ratio + t.p99_slack
        if new.p99 > limit:
            reasons.append(
                f"p99 latency {1000 * new.p99:.0f} ms against {1000 * old.p99:.0f} ms: above "
                f"{1000 * limit:.0f} ms ({t.p99_ratio:g} x old + {1000 * t.p99_slack:.0f} ms)"
            )
    failed = tuple(r for r in reasons if r)
    return Verdict("fail" if failed else "pass", failed)


# --- the report (pure) ----------------------------------------------------------------------------


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


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f} ms"


def render_text(report: Report) -> str:
    """The report for a person: the outcome and its reason first, then every step."""
    t = report.thresholds
    weights = lambda w: " ".join(f"{g}={v}" for g, v in sorted(w.items()))  # noqa: E731
    lines = [
        f"Traffic shift to group {report.new_group} (from {', '.join(report.old_groups)}): "
        f"{report.outcome.upper()}",
    ]
    if report.reason:
        lines.append(f"reason: {report.reason}")
    lines += [
        f"rule: {report.rule_arn}",
        "proxies: "
        + "; ".join(f"{g}: {', '.join(h) or '-'}" for g, h in sorted(report.hosts.items())),
        f"weights: {weights(report.initial_weights)} -> {weights(report.final_weights)}",
        f"margins: success -{100 * t.success_margin:.2f} points, first-attempt failure "
        f"+{100 * t.first_attempt_margin:.2f} points (each + {Z_NOISE:g} standard errors), "
        f"p99 x{t.p99_ratio:g} + {1000 * t.p99_slack:.0f} ms; at least {t.min_requests} "
        "requests per group",
        "",
        f"{'step':>5}  {'window (UTC)':<24}  {'group':<7} {'requests':>8}  {'success':>8}  "
        f"{'1st fail':>8}  {'p99':>7}  verdict",
    ]
    for step in report.steps:
        window = (
            f"{step.window_start:%H:%M:%S}-{step.window_end:%H:%M:%S}"
            f" ({(step.window_end - step.window_start).total_seconds():.0f}s)"
        )
        for i, (label, fig) in enumerate(
            ((f"new {report.new_group}", step.new), ("old", step.old))
        ):
            head = f"{step.share:>4g}%  {window:<24}" if i == 0 else f"{'':>5}  {'':<24}"
            tail = (
                step.verdict.outcome.upper()
                if i == 0
                else ("" if step.baseline == "same window" else f"(baseline: {step.baseline})")
            )
            lines.append(
                f"{head}  {label:<7} {fig.requests:>8}  {_pct(fig.success):>8}  "
                f"{_pct(fig.first_failure):>8}  {_ms(fig.p99):>7}  {tail}".rstrip()
            )
        lines += [f"{'':>7}{reason}" for reason in step.verdict.reasons]
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


# --- the access logs ------------------------------------------------------------------------------


def sample_of(line: bytes | str) -> tuple[datetime, Sample] | None:
    """One access-log line -> (its time, its Sample); None for a blocked request or a line that
    is not a request (report.parse decides what a line means)."""
    from report.analyze import classify
    from report.parse import MalformedLine, parse_line

    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if not text.strip():
        return None
    try:
        entry = parse_line(text)
        seconds = float(json.loads(text).get("request_time") or 0.0)
    except (MalformedLine, ValueError, TypeError):
        return None
    outcome = classify(entry)
    if outcome.blocked:
        return None
    first_failed = None if outcome.first_ok is None else not outcome.first_ok
    return entry.time, Sample(outcome.client_ok, first_failed, seconds)


def in_window(lines: Iterable[bytes | str], start: datetime, end: datetime) -> list[Sample]:
    """Samples of the lines logged from START (included) to END (excluded); nginx logs whole
    seconds, so the bounds are whole seconds too."""
    out = []
    for line in lines:
        found = sample_of(line)
        if found and start <= found[0] < end:
            out.append(found[1])
    return out


class RemoteLog:
    """One proxy's access log over SSH (one connection for the whole shift): its size now, and
    the lines written since a given size (`tail -c +N`; a log that shrank was rotated: all of it).
    Connection as report.sources reaches the proxies (DEPLOY_SSH_KEY, DEPLOY_SSH_KNOWN_HOSTS,
    unknown host keys refused, EC2_INVENTORY_BASTION)."""

    def __init__(self, target: Any, auth: Any, log_path: str) -> None:
        self.name = target.name
        self.log_path = log_path
        self._target, self._auth = target, auth
        self._client: Any = None
        self._jump: Any = None

    def _connect(self) -> Any:
        import paramiko

        if self._client is not None:
            return self._client
        t, auth = self._target, self._auth
        where = f"{self.name} ({t.hostname}:{t.port})"

        def client() -> Any:
            c = paramiko.SSHClient()
            if auth.known_hosts is None:
                c.load_system_host_keys()
            else:
                c.load_host_keys(str(auth.known_hosts))
            c.set_missing_host_key_policy(paramiko.RejectPolicy())
            return c

        try:
            sock = None
            if t.jump is not None:
                self._jump = client()
                self._jump.load_system_host_keys()
                self._jump.connect(
                    t.jump.host,
                    t.jump.port,
                    username=t.jump.user,
                    key_filename=t.jump.key_file,
                    timeout=10,
                )
                transport = self._jump.get_transport()
                sock = transport.open_channel(
                    "direct-tcpip", (t.hostname, t.port), ("127.0.0.1", 0), 10
                )
            self._client = client()
            self._client.connect(
                t.hostname,
                t.port,
                username=t.user,
                pkey=auth.key,
                allow_agent=auth.key is None,
                look_for_keys=auth.key is None,
                timeout=10,
                banner_timeout=10,
                auth_timeout=10,
                sock=sock,
            )
        except (OSError, paramiko.SSHException) as e:
            self.close()
            raise ShiftError(f"cannot reach {where} over SSH: {e}") from None
        return self._client

    def _run(self, command: str) -> Iterable[bytes]:
        import paramiko

        try:
            channel = self._connect().get_transport().open_session(timeout=10)
            channel.settimeout(60)
            channel.exec_command(command)
            yield from channel.makefile("rb")
            status = channel.recv_exit_status()
            errors = channel.makefile_stderr("rb").read().decode("utf-8", "replace").strip()
        except (OSError, paramiko.SSHException) as e:
            raise ShiftError(f"{self.name}: `{command}` failed ({e})") from None
        if status != 0:
            raise ShiftError(f"{self.name}: `{command}` exited {status}: {errors or 'no message'}")

    def size(self) -> int:
        out = b"".join(self._run(f"sudo -n stat -c %s -- {shlex.quote(self.log_path)}"))
        return int(out.strip() or 0)

    def lines_since(self, offset: int) -> Iterable[bytes]:
        path = shlex.quote(self.log_path)
        size = self.size()
        start = offset + 1 if size >= offset else 1  # shrank: rotated, read the new file whole
        return self._run(f"sudo -n tail -c +{start} -- {path}")

    def close(self) -> None:
        for c in (self._client, self._jump):
            if c is not None:
                c.close()
        self._client = self._jump = None


# --- the load balancer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleGroups:
    """The weighted rule as the load balancer has it now."""

    rule_arn: str
    arn_of: dict[str, str]  # group -> target group ARN, in the rule's order
    weights: dict[str, int]  # group -> weight
    stickiness: dict[str, Any]


class Elb:
    """The few ELBv2 calls of a shift (boto3's default chain; AWS_ENDPOINT_URL honoured)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def find_rule(self, load_balancer: str) -> str:
        """The one rule of the load balancer that forwards to several target groups."""
        lbs = self.client.describe_load_balancers(Names=[load_balancer])["LoadBalancers"]
        found = []
        for listener in self._all(
            "describe_listeners", "Listeners", LoadBalancerArn=lbs[0]["LoadBalancerArn"]
        ):
            for rule in self._all("describe_rules", "Rules", ListenerArn=listener["ListenerArn"]):
                if not rule.get("IsDefault") and len(_forward(rule).get("TargetGroups", [])) > 1:
                    found.append(rule["RuleArn"])
        if len(found) != 1:
            raise UsageError(
                f"load balancer {load_balancer}: {len(found)} rules forward to several target "
                "groups (expected 1): give --rule-arn"
            )
        return found[0]

    def _all(self, method: str, key: str, **kwargs: Any) -> list[dict]:
        items, marker = [], None
        while True:
            page = getattr(self.client, method)(**kwargs, **({"Marker": marker} if marker else {}))
            items += page[key]
            marker = page.get("NextMarker")
            if not marker:
                return items

    def read(self, rule_arn: str) -> RuleGroups:
        rules = self.client.describe_rules(RuleArns=[rule_arn])["Rules"]
        forward = _forward(rules[0])
        arns = [tg["TargetGroupArn"] for tg in forward.get("TargetGroups", [])]
        if len(arns) < 2:
            raise UsageError(f"rule {rule_arn} forwards to {len(arns)} target group(s), not 2+")
        names = self.group_names(arns)
        return RuleGroups(
            rule_arn=rule_arn,
            arn_of={names[a]: a for a in arns},
            weights={
                names[tg["TargetGroupArn"]]: int(tg.get("Weight", 1))
                for tg in forward["TargetGroups"]
            },
            stickiness=forward.get("TargetGroupStickinessConfig") or {"Enabled": False},
        )

    def group_names(self, arns: Sequence[str]) -> dict[str, str]:
        """Target group ARN -> its proxy group (the ProxyGroup tag; else the target group name)."""
        tags = {
            d["ResourceArn"]: {t["Key"]: t["Value"] for t in d.get("Tags", [])}
            for d in self.client.describe_tags(ResourceArns=list(arns))["TagDescriptions"]
        }
        names = {}
        for arn in arns:
            names[arn] = tags.get(arn, {}).get(GROUP_TAG) or arn.split("/")[-2]
        if len(set(names.values())) != len(names):
            raise UsageError(f"two target groups of the rule have the same {GROUP_TAG}: {names}")
        return names

    def targets(self, target_group_arn: str) -> list[str]:
        """Instance ids (or IP addresses) registered in the target group."""
        health = self.client.describe_target_health(TargetGroupArn=target_group_arn)
        return [d["Target"]["Id"] for d in health["TargetHealthDescriptions"]]

    def set_weights(self, rule: RuleGroups, weights: Mapping[str, int]) -> None:
        self.client.modify_rule(
            RuleArn=rule.rule_arn,
            Actions=[
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": arn, "Weight": int(weights[g])}
                            for g, arn in rule.arn_of.items()
                        ],
                        "TargetGroupStickinessConfig": rule.stickiness,
                    },
                }
            ],
        )


def _forward(rule: Mapping[str, Any]) -> dict[str, Any]:
    for action in rule.get("Actions", []):
        if action.get("Type") == "forward":
            if action.get("ForwardConfig"):
                return action["ForwardConfig"]
            return {"TargetGroups": [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]}
    return {}


def elbv2_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "elbv2", config=Config(retries={"mode": "standard", "max_attempts": 8})
    )


# --- the shift ------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _now() -> datetime:
    return datetime.now(UTC)


def _whole_second(when: datetime, up: bool) -> datetime:
    """WHEN rounded to a whole second, up or down (nginx logs whole seconds)."""
    floor = when.replace(microsecond=0)
    return floor + timedelta(seconds=1) if up and floor != when else floor


@dataclass
class Fleet:
    """The proxies of each group, with their logs."""

    logs: dict[str, list[RemoteLog]]  # group -> logs of its proxies

    def marks(self) -> dict[str, int]:
        return {log.name: log.size() for logs in self.logs.values() for log in logs}

    def samples(
        self, group: str, marks: Mapping[str, int], start: datetime, end: datetime
    ) -> list[Sample]:
        out: list[Sample] = []
        for log in self.logs[group]:
            out += in_window(log.lines_since(marks[log.name]), start, end)
        return out

    def close(self) -> None:
        for logs in self.logs.values():
            for log in logs:
                log.close()


def load_fleet(elb: Elb, rule: RuleGroups, environ: Mapping[str, str], log_path: str) -> Fleet:
    """Each group's proxies: the target group's targets matched to the inventory's proxies by
    instance id (or private address); every log must answer before anything moves."""
    from inventories.errors import InventoryError
    from inventories.loader import load_inventory
    from inventories.settings import PROXY_GROUP, InventorySettings
    from report.sources import JumpHost, proxy_targets, ssh_auth_from_env
    from report.sources import UsageError as ReportUsage

    try:
        auth = ssh_auth_from_env(environ)
        settings = InventorySettings.from_environ(environ)
        inventory = load_inventory(settings)
    except ReportUsage as e:
        raise UsageError(str(e)) from None
    except InventoryError as e:
        raise UsageError(f"inventory: {e}") from None
    jump = None
    if settings.bastion is not None:
        b = settings.bastion
        jump = JumpHost(b.host, b.port, b.user, settings.bastion_key)
    hosts = [h for h in inventory.hosts if PROXY_GROUP in h.groups]
    by_key = {}
    for host in hosts:
        for key in ("ec2_instance_id", "ec2_private_ip", "ssh_hostname"):
            if host.data.get(key):
                by_key[str(host.data[key])] = host
    targets = {t.name: t for t in proxy_targets(hosts, group=PROXY_GROUP, jump=jump)}
    logs: dict[str, list[RemoteLog]] = {}
    for group, arn in rule.arn_of.items():
        members = [by_key.get(target) for target in elb.targets(arn)]
        if any(m is None for m in members):
            missing = [t for t, m in zip(elb.targets(arn), members, strict=True) if m is None]
            raise UsageError(
                f"target group of {group}: {', '.join(missing)} not among the inventory's "
                "proxies (check ENVIRONMENT and EC2_INVENTORY_*)"
            )
        logs[group] = [
            RemoteLog(targets[m.name], auth, log_path)
            for m in sorted(members, key=lambda m: m.name)
        ]
    return Fleet(logs)


@dataclass
class Shift:
    """One run: the settings, the load balancer, the proxies' logs; `run` does the steps."""

    settings: Settings
    elb: Elb
    rule: RuleGroups
    fleet: Fleet
    report: Report
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = _now
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
        self.say(f"shift: {self.new} at {share:g}%: weights {_fmt(weights)}")
        return weights

    def rollback(self, reason: str, outcome: str = "rolled-back") -> None:
        weights = self.set_share(0)
        self.report.outcome, self.report.reason = outcome, reason
        self.report.final_weights = weights
        self.say(f"shift: ROLLED BACK ({reason}): weights {_fmt(weights)}")

    def measure(self, share: float, weights: dict[str, int]) -> Step:
        s, t = self.settings, self.settings.thresholds
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
            new = figures_of(self.fleet.samples(self.new, marks, start, end))
            old = figures_of(
                [x for g in old_groups for x in self.fleet.samples(g, marks, start, end)]
            )
            baseline = "same window"
            if not old_groups:  # at 100%: the last step that had old traffic
                prior = next(
                    (st for st in reversed(self.report.steps) if st.baseline == "same window"), None
                )
                if prior is not None:
                    old, baseline = prior.old, f"step {prior.share:g}%"
                else:
                    old, baseline = Figures(), "none"
            v = verdict(new, old, t)
            if baseline == "none":
                v = Verdict("pass", ("no old group traffic to compare with: resumed at 100%",))
            self.say(
                f"shift: {share:g}% window {waited:.0f}s: new {new.requests} req "
                f"{_pct(new.success)}, old {old.requests} req {_pct(old.success)}: {v.outcome}"
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


def _fmt(weights: Mapping[str, int]) -> str:
    return " ".join(f"{g}={w}" for g, w in sorted(weights.items()))


# --- command line ---------------------------------------------------------------------------------


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


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    fleet = None
    shift = None
    try:
        settings = settings_from(args, environ)
        elb = Elb(elbv2_client())
        rule_arn = settings.rule_arn or elb.find_rule(settings.load_balancer or "")
        rule = elb.read(rule_arn)
        if settings.to not in rule.weights:
            raise UsageError(
                f"--to {settings.to}: not a group of the rule ({', '.join(rule.weights)})"
            )
        report = Report(
            rule_arn=rule_arn,
            new_group=settings.to,
            old_groups=[g for g in rule.weights if g != settings.to],
            hosts={},
            thresholds=settings.thresholds,
            started=_now(),
            initial_weights=dict(rule.weights),
        )
        if settings.rollback:
            shift = Shift(settings, elb, rule, Fleet({}), report)
            shift.rollback("asked for (--rollback)", outcome="rollback")
            report.finished = _now()
            write_report(report, settings.report)
            return EXIT_OK
        fleet = load_fleet(elb, rule, environ, settings.log_path)
        report.hosts = {g: [log.name for log in logs] for g, logs in fleet.logs.items()}
        if not fleet.logs[settings.to]:
            raise UsageError(f"group {settings.to} has no proxy registered in its target group")
        fleet.marks()  # every log answers before anything moves
    except ShiftError as e:
        print(f"shift: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # botocore: no credentials, no such load balancer...
        print(f"shift: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_USAGE
    shift = Shift(settings, elb, rule, fleet, report)
    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = shift.run()
    except Interrupted as e:
        report.outcome = "interrupted"
        report.reason = (
            f"{e} during the shift: weights left as they are; run again to resume, or --rollback"
        )
        report.final_weights = _try(lambda: elb.read(rule_arn).weights, {})
        code = EXIT_INTERRUPTED
    except Exception as e:
        report.reason = f"{type(e).__name__}: {e}"
        print(f"shift: error: {report.reason}", file=sys.stderr)
        report.outcome = "error"
        if shift.moved:
            try:
                shift.rollback(f"error: {report.reason}", outcome="error")
            except Exception as again:  # the API is down too: say so, loudly
                report.reason += f"; ROLLBACK FAILED: {again}: run --rollback"
        code = EXIT_ERROR
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if fleet is not None:
            fleet.close()
    report.finished = _now()
    write_report(report, settings.report)
    print(render_text(report), end="")
    return code


def _try(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception:
        return default


if __name__ == "__main__":
    sys.exit(main())
