"""tools/shift/logs.py: an access-log line as a sample, and the lines of a window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tools.shift.judge import Sample
from tools.shift.logs import in_window, sample_of

LINE = {
    "time": "2026-11-29T14:40:03+00:00",
    "request_id": "x",
    "remote_addr": "10.77.0.40",
    "method": "GET",
    "uri": "/pets/1",
    "path": "/pets/1",
    "status": 200,
    "request_time": 0.012,
    "upstream_status": "502, 200",
    "upstream_addr": "10.77.0.10:8080, 10.77.0.10:8080",
    "blocked": 0,
}


def test_a_log_line_becomes_a_sample_with_the_reports_meaning():
    when, sample = sample_of(json.dumps(LINE).encode())
    assert when == datetime(2026, 11, 29, 14, 40, 3, tzinfo=UTC)
    assert sample == Sample(client_ok=True, first_failed=True, seconds=0.012)
    assert sample_of(json.dumps({**LINE, "blocked": 1, "status": 404})) is None
    assert sample_of(b"not json\n") is None and sample_of(b"\n") is None
    answered_by_nginx = sample_of(json.dumps({**LINE, "upstream_status": "", "upstream_addr": ""}))
    assert answered_by_nginx[1].first_failed is None


def test_window_takes_whole_seconds_from_start_to_before_end():
    start = datetime(2026, 11, 29, 14, 40, 3, tzinfo=UTC)
    lines = [
        json.dumps({**LINE, "time": (start + timedelta(seconds=s)).isoformat()})
        for s in (-1, 0, 1, 4, 5)
    ]
    assert len(in_window(lines, start, start + timedelta(seconds=5))) == 3
