"""What each request means for reliability, and the figures over many requests.

Definitions (docs/report.md explains them for readers):
- a status is a *success* when it is below 500 and not 499. 4xx are the client's business, not
  a backend failure: 404 (and the 404 of a blocked path), 405, 429 (rate limit) and 444 (name not
  served) count as successes. 499 is the exception: the client closed the connection before any
  answer, so it got nothing (a slow backend shows up as 499s); it counts as a failure.
- an *attempt* is one value of upstream_status; "-" (nothing recorded) is a failed attempt.
- *blocked* requests (scanner paths answered 404 by nginx) are counted and listed apart, and left
  out of every rate: they are not service traffic. The other requests are *served*.
- through the proxy: served requests whose final status is a success / served requests.
- backend alone: requests whose first attempt succeeded / requests that reached a backend (at
  least one attempt) - what clients would have seen without retries.
- recovered by retries: first attempt failed, a later attempt succeeded and so did the client.

Pure: `classify`, `normalise_route`, `choose_bucket` and `Aggregator` do no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from .parse import LogEntry, MalformedLine, parse_line

CLIENT_CLOSED = 499
# Adaptive time buckets of the timeline, in seconds: the smallest giving at most MAX_POINTS.
BUCKET_STEPS = (60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
MAX_POINTS = 240
MALFORMED_EXAMPLES = 5
# Final statuses of served requests, in report order; 1xx is shown only when there is one.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "499", "5xx")

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# A path segment that names one object: a number, a UUID, a long hex string (hashes, object ids),
# or a long token containing a digit (opaque ids). Words like "appointments" stay.
_ID_SEGMENT = re.compile(rf"\d+|{_UUID}|[0-9a-f]{{16,}}|(?=[^/]*\d)[A-Za-z0-9_.~-]{{20,}}", re.I)


def is_success(status: int | None) -> bool:
    """Below 500 and not 499 (see the module docstring); None (no status recorded) is not."""
    return status is not None and status < 500 and status != CLIENT_CLOSED


@lru_cache(maxsize=65536)
def normalise_route(path: str) -> str:
    """/pets/123 -> /pets/{id}; ids are numbers, UUIDs, long hex strings and long opaque tokens."""
    if not path:
        return "(no path)"
    return "/".join(
        "{id}" if segment and _ID_SEGMENT.fullmatch(segment) else segment
        for segment in path.split("/")
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request means for the figures."""

    blocked: bool
    attempts: int  # 0: nginx answered itself (blocked, 405, 429, 444...)
    client_ok: bool  # the final status is a success
    first_ok: bool | None  # None: no attempt
    last_ok: bool | None

    @property
    def reached_backend(self) -> bool:
        return self.attempts > 0

    @property
    def recovered(self) -> bool:
        """The first attempt failed; a retry succeeded and the client got that answer."""
        return (
            self.first_ok is False and self.attempts > 1 and bool(self.last_ok) and self.client_ok
        )


def classify(entry: LogEntry) -> Outcome:
    statuses = entry.upstream_statuses
    return Outcome(
        blocked=entry.blocked,
        attempts=len(statuses),
        client_ok=is_success(entry.status),
        first_ok=is_success(statuses[0]) if statuses else None,
        last_ok=is_success(statuses[-1]) if statuses else None,
    )


def choose_bucket(span_seconds: float, max_points: int = MAX_POINTS) -> int:
    """The smallest of BUCKET_STEPS that covers `span_seconds` in at most `max_points` buckets."""
    for step in BUCKET_STEPS:
        if span_seconds / step < max_points:
            return step
    return BUCKET_STEPS[-1]


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteRow:
    route: str
    requests: int  # served requests
    failed: int  # final status a failure (what clients saw)
    reached_backend: int
    first_attempt_failed: int


@dataclass(frozen=True, slots=True)
class BackendRow:
    address: str  # upstream_addr of the attempts
    attempts: int
    failed: int


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    start: datetime
    served: int
    client_ok: int
    reached_backend: int
    first_ok: int

    @property
    def through_proxy(self) -> float | None:
        return self.client_ok / self.served if self.served else None

    @property
    def backend_alone(self) -> float | None:
        return self.first_ok / self.reached_backend if self.reached_backend else None


@dataclass(frozen=True, slots=True)
class SourceTally:
    name: str
    requests: int = 0
    malformed: int = 0
    error: str | None = None  # why it could not be read (completely)


@dataclass(frozen=True)
class Report:
    """Every figure of the report; rendered as text, JSON and a PNG."""

    requests: int  # parsed lines (malformed ones excluded)
    blocked: int
    served: int
    answered_by_nginx: int  # served without any attempt
    reached_backend: int
    status_classes: dict[str, int]  # served requests by final status: 2xx 3xx 4xx 499 5xx
    client_ok: int
    first_ok: int
    recovered: int
    failed_after_retries: int  # first attempt failed, retried, still failed
    failed_not_retried: int  # first attempt failed, no other attempt (e.g. POST, budget)
    attempts: int  # all attempts of the requests that reached a backend
    attempts_histogram: dict[int, int]  # attempts per request -> requests
    failing_routes: list[RouteRow]
    backends: list[BackendRow]
    blocked_by_path: list[tuple[str, int]]
    blocked_by_source: list[tuple[str, int]]
    first_time: datetime | None
    last_time: datetime | None
    malformed: int
    malformed_examples: list[str]
    sources: list[SourceTally]
    bucket_seconds: int
    timeline: list[TimelinePoint]

    @property
    def through_proxy(self) -> float | None:
        return self.client_ok / self.served if self.served else None

    @property
    def backend_alone(self) -> float | None:
        return self.first_ok / self.reached_backend if self.reached_backend else None

    @property
    def first_attempt_failed(self) -> int:
        return self.reached_backend - self.first_ok

    @property
    def client_failed(self) -> int:
        return self.served - self.client_ok

    @property
    def mean_attempts(self) -> float | None:
        return self.attempts / self.reached_backend if self.reached_backend else None

    @property
    def errors(self) -> list[str]:
        return [f"{s.name}: {s.error}" for s in self.sources if s.error]


# --- aggregation ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Route:
    requests: int = 0
    failed: int = 0
    reached: int = 0
    first_failed: int = 0


@dataclass(slots=True)
class _Minute:
    served: int = 0
    client_ok: int = 0
    reached: int = 0
    first_ok: int = 0


@dataclass(slots=True)
class _Source:
    name: str
    requests: int = 0
    malformed: int = 0
    error: str | None = None


def _status_class(status: int) -> str:
    return "499" if status == CLIENT_CLOSED else f"{min(status // 100, 5)}xx"


@dataclass
class Aggregator:
    """Counts requests as they are read (streaming: memory grows with routes and minutes, not
    with requests). Feed it with `read_lines` per source, then call `report`."""

    requests: int = 0
    blocked: int = 0
    served: int = 0
    answered_by_nginx: int = 0
    reached: int = 0
    client_ok: int = 0
    first_ok: int = 0
    recovered: int = 0
    failed_after_retries: int = 0
    failed_not_retried: int = 0
    attempts: int = 0
    malformed: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    status_classes: Counter[str] = field(default_factory=Counter)
    histogram: Counter[int] = field(default_factory=Counter)
    routes: dict[str, _Route] = field(default_factory=dict)
    backend_attempts: Counter[str] = field(default_factory=Counter)
    backend_failed: Counter[str] = field(default_factory=Counter)
    blocked_paths: Counter[str] = field(default_factory=Counter)
    blocked_sources: Counter[str] = field(default_factory=Counter)
    minutes: dict[int, _Minute] = field(default_factory=dict)
    malformed_examples: list[str] = field(default_factory=list)
    sources: list[_Source] = field(default_factory=list)

    def add(self, entry: LogEntry) -> None:
        outcome = classify(entry)
        self.requests += 1
        if self.first_time is None or entry.time < self.first_time:
            self.first_time = entry.time
        if self.last_time is None or entry.time > self.last_time:
            self.last_time = entry.time
        if outcome.blocked:
            self.blocked += 1
            self.blocked_paths[entry.path or "(no path)"] += 1
            self.blocked_sources[entry.remote_addr or "(unknown)"] += 1
            return
        self.served += 1
        self.status_classes[_status_class(entry.status)] += 1
        self.client_ok += outcome.client_ok
        minute = self.minutes.setdefault(int(entry.time.timestamp()) // 60 * 60, _Minute())
        minute.served += 1
        minute.client_ok += outcome.client_ok
        route = self.routes.setdefault(normalise_route(entry.path), _Route())
        route.requests += 1
        route.failed += not outcome.client_ok
        if not outcome.reached_backend:
            self.answered_by_nginx += 1
            return
        self.reached += 1
        self.attempts += outcome.attempts
        self.histogram[outcome.attempts] += 1
        minute.reached += 1
        route.reached += 1
        if outcome.first_ok:
            self.first_ok += 1
            minute.first_ok += 1
        else:
            route.first_failed += 1
            if outcome.recovered:
                self.recovered += 1
            elif outcome.attempts > 1:
                self.failed_after_retries += 1
            else:
                self.failed_not_retried += 1
        if len(entry.upstream_addrs) == len(entry.upstream_statuses):
            for address, status in zip(entry.upstream_addrs, entry.upstream_statuses, strict=True):
                self.backend_attempts[address] += 1
                self.backend_failed[address] += not is_success(status)

    def start_source(self, name: str) -> None:
        self.sources.append(_Source(name))

    def source_failed(self, message: str) -> None:
        """The current source could not be read (completely); what was read still counts."""
        self.sources[-1].error = message

    def read_lines(self, lines: Iterable[bytes | str]) -> None:
        """Parse and add every line of the current source; count and skip malformed ones."""
        source = self.sources[-1]
        for number, raw in enumerate(lines, 1):
            # nginx's escape=json leaves bytes >= 0x80 as they came (a request line need not
            # be UTF-8): replace what does not decode rather than lose the line.
            line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            if not line.strip():
                continue
            try:
                entry = parse_line(line)
            except MalformedLine as e:
                self.malformed += 1
                source.malformed += 1
                if len(self.malformed_examples) < MALFORMED_EXAMPLES:
                    self.malformed_examples.append(f"{source.name}:{number}: {e}")
                continue
            self.add(entry)
            source.requests += 1

    def report(self, *, top: int = 10, bucket_seconds: int | None = None) -> Report:
        span = (
            (self.last_time - self.first_time).total_seconds()
            if self.first_time and self.last_time
            else 0.0
        )
        bucket = bucket_seconds or choose_bucket(span)
        failing = [
            RouteRow(name, r.requests, r.failed, r.reached, r.first_failed)
            for name, r in self.routes.items()
            if r.failed or r.first_failed
        ]
        failing.sort(key=lambda row: (-row.failed, -row.first_attempt_failed, row.route))
        backends = [
            BackendRow(address, count, self.backend_failed[address])
            for address, count in sorted(self.backend_attempts.items())
        ]
        return Report(
            requests=self.requests,
            blocked=self.blocked,
            served=self.served,
            answered_by_nginx=self.answered_by_nginx,
            reached_backend=self.reached,
            status_classes={
                k: self.status_classes[k]
                for k in STATUS_CLASSES
                if k != "1xx" or self.status_classes[k]
            },
            client_ok=self.client_ok,
            first_ok=self.first_ok,
            recovered=self.recovered,
            failed_after_retries=self.failed_after_retries,
            failed_not_retried=self.failed_not_retried,
            attempts=self.attempts,
            attempts_histogram=dict(sorted(self.histogram.items())),
            failing_routes=failing[:top],
            backends=backends,
            blocked_by_path=_top(self.blocked_paths, top),
            blocked_by_source=_top(self.blocked_sources, top),
            first_time=self.first_time,
            last_time=self.last_time,
            malformed=self.malformed,
            malformed_examples=list(self.malformed_examples),
            sources=[SourceTally(s.name, s.requests, s.malformed, s.error) for s in self.sources],
            bucket_seconds=bucket,
            timeline=self._timeline(bucket),
        )

    def _timeline(self, bucket: int) -> list[TimelinePoint]:
        """Every bucket from the first to the last served request, empty ones included (so a
        plot shows a gap rather than a line across a silent period)."""
        if not self.minutes:
            return []
        counts: dict[int, list[int]] = {}
        for start, m in self.minutes.items():
            c = counts.setdefault(start // bucket * bucket, [0, 0, 0, 0])
            c[0] += m.served
            c[1] += m.client_ok
            c[2] += m.reached
            c[3] += m.first_ok
        first, last = min(counts), max(counts)
        return [
            TimelinePoint(datetime.fromtimestamp(start, UTC), *counts.get(start, (0, 0, 0, 0)))
            for start in range(first, last + bucket, bucket)
        ]


def _top(counter: Counter[str], n: int) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]
