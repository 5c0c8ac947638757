"""tasks/checks.py: the parsers behind the duration and size checks.

Each check's verdicts on bad values are tested through the settings that use them
(tests/test_settings.py, BAD_VALUES): the message a user sees is what matters there.
"""

from __future__ import annotations

import pytest

from tasks.checks import parse_duration, parse_size
from tasks.settings import from_data

REQUIRED = {"admin_cidrs": ["10.77.0.1/32"], "allowed_http_cidrs": ["0.0.0.0/0"]}


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("10s", 10), ("2m", 120), ("1h", 3600)]
)
def test_duration_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_duration_of_a_setting_in_seconds() -> None:
    s = from_data({**REQUIRED, "proxy_connect_timeout": "500ms"})
    assert (parse_duration(s.proxy_connect_timeout), parse_duration(s.proxy_read_timeout)) == (
        0.5,
        10,
    )


@pytest.mark.parametrize(("text", "size"), [("512k", 524288), ("10m", 10485760), ("1024", 1024)])
def test_size_in_bytes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_size_of_a_setting_in_bytes() -> None:
    assert parse_size(from_data(REQUIRED).client_max_body_size) == 10 * 1024 * 1024


@pytest.mark.parametrize("text", ["10", "10 s", "1d", ""])
def test_duration_refuses_what_nginx_would_not_read(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
