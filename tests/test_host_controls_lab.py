"""Host controls (tasks/host_controls.py) and auditd (tasks/auditd.py) on the lab (issue 12), on
both Debian suites.

Runs after the first deploy (LAB_STAGE 21): the `deployed` fixture has converged every proxy.
Prints which host controls are active and which only persisted (a container shares the
machine's kernel).
"""

from __future__ import annotations

import pytest
from lab_hosts import on_host
from test_lab import ssh

pytestmark = pytest.mark.lab
LAB_STAGE = 21


def test_host_controls_are_active_or_persisted(deployed, proxies):
    """Active: what a new login or the package system shows. Persisted only: what the machine's
    kernel decides (a container cannot load or refuse modules)."""
    report = []
    for node in proxies:
        login = ssh(node, "umask; ulimit -Hc")
        assert login.returncode == 0, login.stderr
        umask, core_limit = login.stdout.split()
        assert "Authorised access only" in login.stderr  # sshd's Banner, before authentication
        # 0027, or 0007 where pam_umask's usergroups rule (USERGROUPS_ENAB) gives the group the
        # user's bits because the group is the user's own: nothing for others either way.
        assert umask in ("0027", "0007") and core_limit == "0", (node.name, login.stdout)
        restart = on_host(node.name, "grep -h 'nrconf{restart}' /etc/needrestart/conf.d/*.conf")
        assert "'a'" in restart, node.name
        blacklist = on_host(node.name, "cat /etc/modprobe.d/proxy-blacklist.conf")
        assert "\ninstall dccp /bin/false\n" in blacklist, node.name
        inside = on_host(node.name, "systemd-detect-virt --container || true").strip()
        modules = "persisted only (container)" if inside != "none" else "active"
        audit = on_host(
            node.name,
            "systemctl is-enabled auditd; systemctl is-active auditd;"
            " grep -c -- '-k ' /etc/audit/rules.d/90-proxy.rules",
        ).split()
        assert audit[0] == "enabled" and int(audit[2]) >= 10, (node.name, audit)
        if inside == "none":
            assert audit[1] == "active", node.name
        else:  # skipped by its condition, not failed: the host is not left "degraded"
            failed = on_host(node.name, "systemctl --failed --no-legend --plain")
            assert "audit" not in failed, (node.name, failed)
        auditd = "running" if audit[1] == "active" else "persisted and enabled, not running"
        report.append(
            f"{node.name} ({node.suite}): legal banner active, login umask {umask} active, core "
            f"limit 0 active, needrestart automatic active, module blacklist {modules}, "
            f"auditd {auditd}"
        )
    print("\n" + "\n".join(report))
