"""The first converge's one-off security upgrade on the lab (issue 12), on both Debian suites.

After the `deployed` fixture converged every proxy: each has run unattended-upgrade once and
holds the marker, so later converges (tests/test_deploy_lab.py's second run) leave upgrades alone.
"""

from __future__ import annotations

import pytest

from lab.testinfra_host import lab_host
from tasks import updates

pytestmark = pytest.mark.lab
LAB_STAGE = 21

UPGRADE_LOG = "/var/log/unattended-upgrades/unattended-upgrades.log"


def test_first_converge_applied_security_updates_once(deployed, proxies):
    report = []
    for node in proxies:
        host = lab_host(node.name)
        assert host.file(updates.FIRST_UPGRADE_MARKER).exists, node.name
        log = host.file(UPGRADE_LOG)
        runs = log.content_string.count("Starting unattended upgrades script") if log.exists else 0
        assert runs >= 1, (node.name, runs)
        report.append(f"{node.name} ({node.suite}): first security upgrade done ({runs} run)")
    print("\n" + "\n".join(report))
