"""One line of the proxies' JSON access log -> one `LogEntry`, or `MalformedLine` saying why not.

The format is `log_format proxy_json` in templates/nginx/nginx.conf.j2 (escape=json): numbers
unquoted (`status`, `request_time`, `blocked`), everything that can be empty or a list a string.
`upstream_status` and `upstream_addr` hold one value per attempt, ", " between attempts of one
upstream group and " : " between groups (an internal redirect); an attempt nginx recorded no
status for (the client went away, or no answer at all) is "-". A request nginx answered itself
(blocked path, 405, 429, 444) has no upstream: "" with escape=json ("-" in nginx's default
escaping, accepted too). /healthz, /readyz and /nginx_status are not logged (`access_log off`).

Pure functions only: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

# ", " between attempts, " : " between upstream groups. Addresses contain ":" without spaces.
_LIST_SEPARATOR = re.compile(r"\s*,\s*|\s+:\s+")
_NO_VALUE = ("", "-")


class MalformedLine(ValueError):
    """A log line that is not one request of the proxy_json format; the message says why."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One logged request, with the fields the report uses."""

    time: datetime  # when nginx logged it (end of the request), in UTC
    status: int  # what the client got ($status)
    method: str
    path: str  # $uri: decoded, normalised, no query string
    remote_addr: str  # the client (after real_ip, when a trusted balancer is configured)
    upstream_statuses: tuple[int | None, ...]  # one per attempt; None: no status recorded ("-")
    upstream_addrs: tuple[str, ...]  # one per attempt, same order
    blocked: bool  # blocked_paths: refused by nginx with 404, never sent to a backend
    request_id: str = ""


# The caches: a log repeats the same few upstream values and, many times a second, the same time.
@lru_cache(maxsize=4096)
def split_upstream_list(value: str) -> tuple[str, ...]:
    """ "10.0.0.1:80, 10.0.0.2:80 : 10.0.0.3:80" -> the three values; "" or "-" -> ()."""
    value = value.strip()
    if value in _NO_VALUE:
        return ()
    return tuple(_LIST_SEPARATOR.split(value))


@lru_cache(maxsize=4096)
def parse_upstream_statuses(value: str) -> tuple[int | None, ...]:
    """ "502, 500, 200" -> (502, 500, 200); "504, -" -> (504, None); "" or "-" -> ().

    A lone "-" is ambiguous (no upstream in nginx's default escaping, or one attempt without a
    status): `parse_line` decides with upstream_addr. Raises ValueError on anything else.
    """
    if value.strip() == "-":
        return (None,)
    statuses: list[int | None] = []
    for part in split_upstream_list(value):
        if part == "-":
            statuses.append(None)
        elif len(part) == 3 and part.isdigit():
            statuses.append(int(part))
        else:
            raise ValueError(f"upstream_status {value!r}: {part!r} is not a status")
    return tuple(statuses)


@lru_cache(maxsize=4096)
def parse_time(value: str) -> datetime:
    """$time_iso8601 ("2025-11-28T02:48:00+00:00") -> an aware datetime in UTC.

    A time without an offset is taken as UTC. Raises ValueError.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _status(value: Any) -> int:
    # nginx writes a number; a log re-encoded on its way to S3 may carry "200".
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"status {value!r} is not a number")
    try:
        status = int(value)
    except ValueError:
        raise ValueError(f"status {value!r} is not a number") from None
    if not 100 <= status <= 999:
        raise ValueError(f"status {value!r} is not an HTTP status")
    return status


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # e.g. "upstream_status": 200 after a re-encoding
    raise ValueError(f"{key} {value!r} is not a string")


def _blocked(value: Any) -> bool:
    # Missing in logs written before the key existed: nothing was blocked then.
    if value in (None, 0, "0", "", False):
        return False
    if value in (1, "1", True):
        return True
    raise ValueError(f"blocked {value!r} is not 0 or 1")


def parse_line(line: str) -> LogEntry:
    """Parse one log line. Raises `MalformedLine` naming what is wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise MalformedLine(f"not JSON ({e})") from None
    if not isinstance(record, dict):
        raise MalformedLine(f"not a JSON object but {type(record).__name__}")
    for key in ("time", "status"):
        if key not in record:
            raise MalformedLine(f"no {key!r}")
    try:
        time_text = record["time"]
        if not isinstance(time_text, str):
            raise ValueError(f"time {time_text!r} is not a string")
        try:
            time = parse_time(time_text)
        except ValueError:
            raise ValueError(f"time {time_text!r} is not an ISO 8601 time") from None
        status = _status(record["status"])
        addrs = split_upstream_list(_text(record, "upstream_addr"))
        upstream = _text(record, "upstream_status")
        statuses = parse_upstream_statuses(upstream)
        if statuses == (None,) and upstream.strip() == "-" and not addrs:
            statuses = ()  # default escaping's "no upstream"
        path = _text(record, "path") or _text(record, "uri").partition("?")[0]
        return LogEntry(
            time=time,
            status=status,
            method=_text(record, "method"),
            path=path,
            remote_addr=_text(record, "remote_addr"),
            upstream_statuses=statuses,
            upstream_addrs=addrs,
            blocked=_blocked(record.get("blocked")),
            request_id=_text(record, "request_id"),
        )
    except ValueError as e:
        raise MalformedLine(str(e)) from None
