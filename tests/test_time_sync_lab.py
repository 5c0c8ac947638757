"""Time sync on the lab (issue 12), on both Debian suites.

Runs with the other host controls (LAB_STAGE 21), after the `deployed` fixture converged every
proxy. A lab proxy is a container: the clock is the machine's, and systemd-timesyncd's own
ConditionVirtualization=!container skips it, so it reports "persisted, not running (container)";
on a VM or an EC2 instance it must be running, synchronised against `time_servers`.
"""

from __future__ import annotations

import pytest

from lab.testinfra_host import lab_host
from tasks import time_sync

pytestmark = pytest.mark.lab
LAB_STAGE = 21


def test_timesyncd_is_configured_and_running_or_persisted(deployed, proxies):
    report = []
    for node in proxies:
        host = lab_host(node.name)
        timesyncd = host.service(time_sync.UNIT)
        dropin = host.file(time_sync.DROPIN).content_string
        assert "\nNTP=169.254.169.123\n" in dropin, (node.name, dropin)
        # "enabled" exactly: `is_enabled` would also accept "static" or "enabled-runtime"
        assert timesyncd.systemd_properties["UnitFileState"] == "enabled", node.name
        if host.run("systemd-detect-virt --container").stdout.strip() == "none":
            assert timesyncd.is_running, node.name
            status = "running"
        else:  # skipped by its condition, not failed: the host is not left "degraded"
            failed = host.check_output("systemctl --failed --no-legend --plain")
            assert "timesyncd" not in failed, (node.name, failed)
            status = "persisted, not running (container)"
        report.append(f"{node.name} ({node.suite}): systemd-timesyncd {status}")
    print("\n" + "\n".join(report))
