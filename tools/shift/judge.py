"""The judgement of one step: each group's figures over a window, and the verdict (pure).

Owns: what counts as worse (the margins, the noise allowance Z_NOISE, the minimum traffic) and
the figures compared: client success, first-attempt failure, answered without a backend, p99.
Leaves alone: what a log line means (tools/shift/logs.py, report/), what happens after a
verdict (tools/shift/steps.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z_NOISE = 3.0  # standard errors of the difference allowed on top of a rate margin


@dataclass(frozen=True)
class Thresholds:
    """How much worse than the old group the new one may be, and when a window is enough."""

    min_requests: int = 200  # served requests per group in a window before a verdict
    success_margin: float = 0.005  # client success may be at most 0.5 points lower
    first_attempt_margin: float = 0.05  # first-attempt failure may be at most 5 points higher
    p99_ratio: float = 1.5  # p99 may be at most 1.5 x the old group's ...
    p99_slack: float = 0.05  # ... plus 50 ms (request_time has millisecond resolution)


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


def _too_few(new: Figures, old: Figures, t: Thresholds) -> list[str]:
    """Why the window is not enough for a verdict (empty when it is)."""
    return [
        f"{name} group: {f.requests} requests, {t.min_requests} needed"
        for name, f in (("new", new), ("old", old))
        if f.requests < t.min_requests
    ]


def _rate_reasons(new: Figures, old: Figures, t: Thresholds) -> list[str | None]:
    """The rates compared with their noise allowance; None for each that is not worse."""
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
    return reasons


def _p99_reason(new: Figures, old: Figures, t: Thresholds) -> str | None:
    """A reason when the new group's p99 is above the old one's x ratio + slack."""
    if new.p99 is None or old.p99 is None:
        return None
    limit = old.p99 * t.p99_ratio + t.p99_slack
    if new.p99 <= limit:
        return None
    return (
        f"p99 latency {1000 * new.p99:.0f} ms against {1000 * old.p99:.0f} ms: above "
        f"{1000 * limit:.0f} ms ({t.p99_ratio:g} x old + {1000 * t.p99_slack:.0f} ms)"
    )


def verdict(new: Figures, old: Figures, t: Thresholds) -> Verdict:
    """Is the new group, over one window, not worse than the old by more than the margins?"""
    short = _too_few(new, old, t)
    if short:
        return Verdict("insufficient", tuple(short))
    reasons = [*_rate_reasons(new, old, t), _p99_reason(new, old, t)]
    failed = tuple(r for r in reasons if r)
    return Verdict("fail" if failed else "pass", failed)
