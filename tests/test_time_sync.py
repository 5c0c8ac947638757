"""Time sync with the Amazon Time Sync Service (issue 12): fast unit tests of tasks/time_sync.py,
its template and the `time_servers` setting. The lab test is in tests/test_time_sync_lab.py."""

from __future__ import annotations

from typing import Any

import pytest

from tasks import packages, time_sync
from tasks.activation import render
from tasks.settings import SettingsError, from_data


def _settings(**overrides: Any):
    return from_data(
        {"admin_cidrs": ["10.0.0.0/8"], "allowed_http_cidrs": ["0.0.0.0/0"], **overrides}
    )


def test_time_servers_default_to_the_amazon_time_sync_service() -> None:
    assert _settings().time_servers == ("169.254.169.123",)


def test_dropin_points_timesyncd_at_the_servers_in_order() -> None:
    text = render(
        "timesync/90-proxy.conf.j2", s=_settings(time_servers=["169.254.169.123", "Time.AWS.com"])
    )
    assert text.startswith("# Managed by the deploy (tasks/time_sync.py).")
    assert "\n[Time]\n" in text
    assert "\nNTP=169.254.169.123 time.aws.com\n" in text
    assert "None" not in text


@pytest.mark.parametrize(
    "servers",
    [["169.254.169.1234"], ["not a host"], "169.254.169.123", [123], ["a.b", "A.B"], ["-x.org"]],
)
def test_time_servers_refused_when_not_addresses_or_hostnames(servers: Any) -> None:
    with pytest.raises(SettingsError, match="time_servers"):
        _settings(time_servers=servers)


def test_time_servers_accept_ipv6_and_hostnames() -> None:
    servers = _settings(time_servers=["fd00:ec2::123", "time.aws.com"]).time_servers
    assert servers == ("fd00:ec2::123", "time.aws.com")


@pytest.mark.parametrize(("servers", "expected"), [(None, True), ([], False)])
def test_timesyncd_is_in_the_one_apt_transaction_unless_time_sync_is_off(
    servers: list[str] | None, expected: bool
) -> None:
    settings = _settings() if servers is None else _settings(time_servers=servers)
    assert ("systemd-timesyncd" in packages.needed(settings)) is expected


@pytest.mark.parametrize(
    ("installed", "expected"),
    [({"systemd": ["257"]}, None), ({"chrony": ["4.3"]}, "chrony"), ({"ntpsec": ["1"]}, "ntpsec")],
)
def test_other_time_daemon_found_when_installed(installed: dict, expected: str | None) -> None:
    assert time_sync.other_time_daemon(installed) == expected


def test_time_sync_owns_its_dropin_and_watches_its_unit() -> None:
    from tasks.activation import MANAGED_FILES
    from tasks.units import WATCHED_UNITS

    assert time_sync.DROPIN == "/etc/systemd/timesyncd.conf.d/90-proxy.conf"
    assert time_sync.DROPIN in MANAGED_FILES
    assert "systemd-timesyncd.service" in WATCHED_UNITS
