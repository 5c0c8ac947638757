"""Security updates (tasks/updates.py): the first converge's one-off upgrade, fast unit tests.
On the lab: tests/test_updates_lab.py."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from tasks import updates
from tasks.facts import _LOOKED_FOR
from tasks.settings import SettingsError, from_data

REPO = Path(__file__).resolve().parent.parent


def _settings(**overrides: Any):
    return from_data(
        {"admin_cidrs": ["10.0.0.0/8"], "allowed_http_cidrs": ["0.0.0.0/0"], **overrides}
    )


def test_first_security_upgrade_is_on_by_default() -> None:
    assert _settings().first_security_upgrade is True


def test_first_security_upgrade_refused_when_not_a_bool() -> None:
    with pytest.raises(SettingsError, match="first_security_upgrade"):
        _settings(first_security_upgrade="yes")


def test_first_upgrade_marker_is_read_in_the_facts_bundle() -> None:
    assert updates.FIRST_UPGRADE_MARKER == "/var/lib/proxy-deploy/first-security-upgrade"
    assert updates.FIRST_UPGRADE_MARKER in _LOOKED_FOR


def test_first_upgrade_writes_the_marker_only_after_success_and_never_refreshes() -> None:
    command = updates.first_upgrade_command()
    upgrade, _, after = command.partition(" && ")
    assert upgrade.endswith("unattended-upgrade")  # its own config: the security origin only
    assert after.endswith(f"touch {updates.FIRST_UPGRADE_MARKER}")
    assert "update" not in command.replace("unattended-upgrade", "")  # no second list refresh
    assert ";" not in command and "||" not in command


def _calls_in_deploy() -> list[str]:
    tree = ast.parse((REPO / "deploy.py").read_text())
    return [
        ast.unparse(node.value.func)
        for node in tree.body
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    ]


def test_security_updates_run_after_the_packages_before_nginx_serves() -> None:
    calls = _calls_in_deploy()
    upgrade = calls.index("updates.security_updates")
    assert calls.index("packages.install_needed") < upgrade  # the refreshed lists, the package
    assert upgrade < calls.index("nginx_proxy.configure_proxy")
