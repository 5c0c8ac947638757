"""tasks/sysctl.py and the `sysctl_overrides` setting: pinned keys are refused at any other
value; the live values compare as the fact reports them. Fast unit tests; on the lab:
tests/test_drift_lab.py (a changed key repaired by one run)."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.hardening_defaults import SYSCTL_PINNED
from tasks.settings import SettingsError, from_data
from tasks.sysctl import _typed


def _settings(**overrides: Any):
    return from_data(
        {"admin_cidrs": ["10.0.0.0/8"], "allowed_http_cidrs": ["0.0.0.0/0"], **overrides}
    )


@pytest.mark.parametrize("key", sorted(SYSCTL_PINNED))
def test_sysctl_overrides_refuse_a_pinned_key_naming_key_value_and_reason(key: str) -> None:
    with pytest.raises(SettingsError) as refused:
        _settings(sysctl_overrides={key: 1})
    message = str(refused.value)
    assert f"{key} = 1 changes a pinned key: it stays {SYSCTL_PINNED[key]}" in message
    assert "rout" in message  # the reason: a proxy is not a router


@pytest.mark.parametrize("value", [0, "0"])
def test_sysctl_overrides_accept_a_pinned_key_at_its_pinned_value(value: Any) -> None:
    assert _settings(sysctl_overrides={"net.ipv4.ip_forward": value}).sysctl_overrides


def test_sysctl_values_compare_as_the_fact_reports_them():
    assert _typed("1") == 1
    assert _typed("32768 60999") == [32768, 60999]
    assert _typed("bbr") == "bbr"
