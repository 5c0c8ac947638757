"""The first converge's one-off security upgrade on the lab (issue 12), on both Debian suites.

After the `deployed` fixture converged every proxy: each has run unattended-upgrade once and
holds the marker, so later converges (tests/test_deploy.py's second run) leave upgrades alone.
"""

from __future__ import annotations

import pytest
from test_deploy import on_host

from tasks import updates

pytestmark = pytest.mark.lab
LAB_STAGE = 21


def test_first_converge_applied_security_updates_once(deployed, proxies):
    report = []
    for node in proxies:
        out = on_host(
            node.name,
            f"test -f {updates.FIRST_UPGRADE_MARKER} && echo marker;"
            " grep -c 'Starting unattended upgrades script' "
            "/var/log/unattended-upgrades/unattended-upgrades.log || true",
        ).split()
        assert out[0] == "marker", (node.name, out)
        assert int(out[1]) >= 1, (node.name, out)
        report.append(f"{node.name} ({node.suite}): first security upgrade done ({out[1]} run)")
    print("\n" + "\n".join(report))
