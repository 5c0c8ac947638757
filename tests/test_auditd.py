"""Audit rules (issue 12, tasks/auditd.py): what they watch, the package only when enabled,
skipped (not failed) in a container. Fast unit tests; on the lab:
tests/test_host_controls_lab.py."""

from __future__ import annotations

from typing import Any

import pytest

from tasks import packages
from tasks.activation import template_text
from tasks.settings import from_data


def _settings(**overrides: Any):
    return from_data(
        {"admin_cidrs": ["10.0.0.0/8"], "allowed_http_cidrs": ["0.0.0.0/0"], **overrides}
    )


def test_audit_rules_watch_what_matters_on_a_proxy() -> None:
    rules = template_text("audit/90-proxy.rules")
    for path, key in (
        ("/etc/ssh/sshd_config", "sshd"),
        ("/etc/sudoers", "sudoers"),
        ("/etc/sudoers.d/", "sudoers"),
        ("/etc/shadow", "identity"),
        ("/etc/nginx/", "nginx"),
        ("/etc/nftables.conf", "firewall"),
    ):
        assert f"\n-w {path} -p wa -k {key}\n" in rules
    assert "-S init_module,finit_module,delete_module -k modules" in rules
    assert "\n-e 2" not in rules  # immutable rules would need a reboot for every change
    assert "\n-D" not in rules  # Debian's audit.rules deletes first; a second -D would drop it


@pytest.mark.parametrize(("enabled", "expected"), [(True, True), (False, False)])
def test_auditd_is_in_the_one_apt_transaction_only_when_enabled(
    enabled: bool, expected: bool
) -> None:
    assert ("auditd" in packages.needed(_settings(auditd_enabled=enabled))) is expected


def test_auditd_is_skipped_not_failed_in_a_container() -> None:
    from tasks import auditd

    assert auditd.DROPINS == (
        "/etc/systemd/system/auditd.service.d/proxy-not-in-container.conf",
        "/etc/systemd/system/audit-rules.service.d/proxy-not-in-container.conf",
    )
    dropin = template_text("audit/not-in-container.conf")
    assert "\n[Unit]\nConditionVirtualization=!container\n" in dropin
