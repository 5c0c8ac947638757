"""Time sync on the lab (issue 12), on both Debian suites.

Runs with the other host controls (LAB_STAGE 21), after the `deployed` fixture converged every
proxy. A lab proxy is a container: the clock is the machine's, and systemd-timesyncd's own
ConditionVirtualization=!container skips it, so it reports "persisted, not running (container)";
on a VM or an EC2 instance it must be running, synchronised against `time_servers`.
"""

from __future__ import annotations

import pytest
from test_deploy import on_host

from tasks import time_sync

pytestmark = pytest.mark.lab
LAB_STAGE = 21


def test_timesyncd_is_configured_and_running_or_persisted(deployed, proxies):
    report = []
    for node in proxies:
        state = on_host(
            node.name,
            f"systemctl is-enabled {time_sync.UNIT}; systemctl is-active {time_sync.UNIT};"
            " systemd-detect-virt --container || true",
        ).split()
        dropin = on_host(node.name, f"cat {time_sync.DROPIN}")
        assert "\nNTP=169.254.169.123\n" in dropin, (node.name, dropin)
        assert state[0] == "enabled", (node.name, state)
        if state[2] == "none":
            assert state[1] == "active", (node.name, state)
            status = "running"
        else:  # skipped by its condition, not failed: the host is not left "degraded"
            failed = on_host(node.name, "systemctl --failed --no-legend --plain")
            assert "timesyncd" not in failed, (node.name, failed)
            status = "persisted, not running (container)"
        report.append(f"{node.name} ({node.suite}): systemd-timesyncd {status}")
    print("\n" + "\n".join(report))
