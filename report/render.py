"""The report as text (for people) and as one JSON object (for scripts): the same figures.

Rates are truncated, not rounded, so a rate below 100% never prints as 100%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .analyze import Report

BAR_WIDTH = 40
ROUTE_WIDTH = 48


def percent(rate: float | None) -> str:
    """0.99987 -> "99.987%", 0.8012 -> "80.12%", None -> "n/a" (truncated, never rounded up)."""
    if rate is None:
        return "n/a"
    value = rate * 100
    decimals = 3 if 99 <= value < 100 else 2
    scale = 10**decimals
    return f"{math.floor(value * scale + 1e-9) / scale:.{decimals}f}%"


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def duration(seconds: float) -> str:
    """3725 -> "1 h 2 min 5 s"."""
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    text = " ".join(f"{n} {unit}" for n, unit in parts if n)
    return text or "0 s"


def bucket_name(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _share(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f}%" if whole else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned first column, right-aligned others."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [
            str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def _clip(text: str, width: int = ROUTE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(label: str, value: str, note: str = "") -> str:
    return f"{label:<26}{value:>10}  {note}".rstrip()


def to_text(report: Report, target: float | None = None) -> str:
    """The report for people: one block of lines per section, each after a blank line."""
    out = ["Proxy reliability report", *_inputs_text(report)]
    out += _requests_text(report)
    out += _success_text(report, target)
    out += _retries_text(report)
    out += _failing_routes_text(report)
    out += _backends_text(report)
    out += _blocked_text(report)
    return "\n".join(out) + "\n"


def _inputs_text(r: Report) -> list[str]:
    """What the figures cover: time range, sources read (six named at most), sources not read
    and malformed lines."""
    out = []
    if r.first_time and r.last_time:
        span = (r.last_time - r.first_time).total_seconds()
        out.append(f"  time range   {iso(r.first_time)} .. {iso(r.last_time)} ({duration(span)})")
    else:
        out.append("  time range   - (no request)")
    read = [s for s in r.sources if not s.error]
    listed = ", ".join(f"{s.name} ({s.requests:,})" for s in read[:6])
    more = f", and {len(read) - 6} more" if len(read) > 6 else ""
    out.append(f"  sources      {len(read)} read{': ' + listed if read else ''}{more}")
    for error in r.errors:
        out.append(f"  NOT READ     {error}")
    first = f"; first: {r.malformed_examples[0]}" if r.malformed_examples else ""
    out.append(f"  malformed    {r.malformed:,} lines skipped{first}")
    return out


def _requests_text(r: Report) -> list[str]:
    """How the requests divide: blocked, served, and of those served who answered."""
    classes = " · ".join(f"{k} {v:,}" for k, v in r.status_classes.items())
    return [
        "",
        _row("Requests", f"{r.requests:,}"),
        _row("  blocked", f"{r.blocked:,}", "scanner paths answered 404 by nginx; in no rate"),
        _row("  served", f"{r.served:,}", f"final status {classes}"),
        _row(
            "    answered by nginx", f"{r.answered_by_nginx:,}", "no backend asked (405, 429, 444)"
        ),
        _row("    reached a backend", f"{r.reached_backend:,}"),
    ]


def _success_text(r: Report, target: float | None) -> list[str]:
    """The two success rates, and the verdict against the target when there is one."""
    out = [
        "",
        "Success rate",
        _row(
            "  through the proxy",
            percent(r.through_proxy),
            f"{r.client_ok:,} of {r.served:,} served requests ended < 500 (4xx count, 499 not)",
        ),
        _row(
            "  backend alone",
            percent(r.backend_alone),
            f"{r.first_ok:,} of {r.reached_backend:,} first attempts < 500 (= without retries)",
        ),
    ]
    if target is not None:
        met = r.through_proxy is not None and r.through_proxy >= target
        verdict = "n/a" if r.through_proxy is None else "met" if met else "NOT MET"
        out.append(_row("  target", f"{target * 100:g}%", verdict))
    return out


def _retries_text(r: Report) -> list[str]:
    """What became of failed first attempts, and the attempts per request as a histogram."""
    mean = f"{r.mean_attempts:.3f}" if r.mean_attempts is not None else "n/a"
    return [
        "",
        "Retries",
        _row("  first attempt failed", f"{r.first_attempt_failed:,}"),
        _row("    recovered by retries", f"{r.recovered:,}", "a later attempt succeeded"),
        _row("    failed after retries", f"{r.failed_after_retries:,}", "retried, still failed"),
        _row(
            "    not retried",
            f"{r.failed_not_retried:,}",
            "one attempt only: POST, a status not in retry_on, or the client left",
        ),
        _row("  attempts per request", mean, f"mean over {r.reached_backend:,} requests"),
        *_histogram_text(r),
    ]


def _histogram_text(r: Report) -> list[str]:
    """One bar per attempt count, the longest BAR_WIDTH long; any count above 0 gets a block."""
    out = []
    biggest = max(r.attempts_histogram.values(), default=0)
    for attempts, count in r.attempts_histogram.items():
        bar = "█" * max(1, round(count / biggest * BAR_WIDTH)) if count else ""
        share = _share(count, r.reached_backend)
        out.append(f"    {attempts:>2}  {bar:<{BAR_WIDTH}}  {count:>9,}  {share:>6}")
    return out


def _failing_routes_text(r: Report) -> list[str]:
    """The top failing routes as a table, or "none"."""
    out = ["", "Top failing routes (by failures clients saw, then by failed first attempts)"]
    if not r.failing_routes:
        return [*out, "  none"]
    rows = [
        (
            _clip(row.route),
            f"{row.requests:,}",
            f"{row.failed:,}",
            f"{row.first_attempt_failed:,}",
            _share(row.first_attempt_failed, row.reached_backend),
        )
        for row in r.failing_routes
    ]
    return out + _table(("ROUTE", "REQUESTS", "FAILED", "FIRST ATTEMPT FAILED", "(%)"), rows)


def _backends_text(r: Report) -> list[str]:
    """Attempts and failures per backend address; no section at all without a backend."""
    if not r.backends:
        return []
    rows = [
        (b.address, f"{b.attempts:,}", f"{b.failed:,}", _share(b.failed, b.attempts))
        for b in r.backends
    ]
    return ["", "Attempts by backend", *_table(("ADDRESS", "ATTEMPTS", "FAILED", "(%)"), rows)]


def _blocked_text(r: Report) -> list[str]:
    """The blocked count, then (when there are any) the top paths and source addresses."""
    out = ["", f"Blocked requests: {r.blocked:,}"]
    if r.blocked:
        out += _table(("BY PATH", "REQUESTS"), [(_clip(p), f"{n:,}") for p, n in r.blocked_by_path])
        out.append("")
        out += _table(
            ("BY SOURCE ADDRESS", "REQUESTS"), [(a, f"{n:,}") for a, n in r.blocked_by_source]
        )
    return out


def to_json(report: Report, target: float | None = None) -> dict[str, Any]:
    """Everything `to_text` shows, plus the timeline the PNG is drawn from."""
    r = report
    return {
        "time_range": _time_range_json(r),
        "sources": [
            {"name": s.name, "requests": s.requests, "malformed": s.malformed, "error": s.error}
            for s in r.sources
        ],
        "errors": r.errors,
        "malformed_lines": {"count": r.malformed, "examples": r.malformed_examples},
        "requests": {
            "total": r.requests,
            "blocked": r.blocked,
            "served": r.served,
            "answered_by_nginx": r.answered_by_nginx,
            "reached_backend": r.reached_backend,
        },
        "final_status": r.status_classes,
        "success_rate": {
            "through_proxy": r.through_proxy,
            "backend_alone": r.backend_alone,
            "target": target,
        },
        **_outcomes_json(r),
        "attempts": {
            "total": r.attempts,
            "mean": r.mean_attempts,
            "histogram": {str(k): v for k, v in r.attempts_histogram.items()},
        },
        "top_failing_routes": _failing_routes_json(r),
        "attempts_by_backend": [
            {"address": b.address, "attempts": b.attempts, "failed": b.failed} for b in r.backends
        ],
        "blocked": _blocked_json(r),
        "timeline": _timeline_json(r),
    }


def _time_range_json(r: Report) -> dict[str, Any]:
    """First and last request (ISO, UTC) and the seconds between; None without a request."""
    seconds = None
    if r.first_time and r.last_time:
        seconds = (r.last_time - r.first_time).total_seconds()
    return {"first": iso(r.first_time), "last": iso(r.last_time), "seconds": seconds}


def _outcomes_json(r: Report) -> dict[str, int]:
    """The request counts behind the two rates and the retries, as top-level keys."""
    return {
        "client_ok": r.client_ok,
        "client_failed": r.client_failed,
        "first_attempt_ok": r.first_ok,
        "first_attempt_failed": r.first_attempt_failed,
        "recovered_by_retries": r.recovered,
        "failed_after_retries": r.failed_after_retries,
        "failed_not_retried": r.failed_not_retried,
    }


def _failing_routes_json(r: Report) -> list[dict[str, Any]]:
    return [
        {
            "route": row.route,
            "requests": row.requests,
            "failed": row.failed,
            "reached_backend": row.reached_backend,
            "first_attempt_failed": row.first_attempt_failed,
        }
        for row in r.failing_routes
    ]


def _blocked_json(r: Report) -> dict[str, Any]:
    return {
        "total": r.blocked,
        "by_path": [{"path": p, "requests": n} for p, n in r.blocked_by_path],
        "by_source": [{"remote_addr": a, "requests": n} for a, n in r.blocked_by_source],
    }


def _timeline_json(r: Report) -> dict[str, Any]:
    """The points the PNG draws; a rate is None (not 0) for a bucket with nothing to rate."""
    return {
        "bucket_seconds": r.bucket_seconds,
        "points": [
            {
                "start": iso(p.start),
                "served": p.served,
                "client_ok": p.client_ok,
                "reached_backend": p.reached_backend,
                "first_attempt_ok": p.first_ok,
                "through_proxy": p.through_proxy,
                "backend_alone": p.backend_alone,
            }
            for p in r.timeline
        ],
    }
