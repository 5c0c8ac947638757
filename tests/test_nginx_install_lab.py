"""nginx_source = "nginx.org" on the lab (issue 4): the lab cannot reach nginx.org, so this checks
what can be checked here: the repository and pin files are written for the host's distribution,
and without a verified signing key the run fails instead of trusting an unverified repository."""

from __future__ import annotations

import pytest
from conftest import run_deploy
from lab_hosts import on_host

pytestmark = pytest.mark.lab
LAB_STAGE = 15

LIST = "/etc/apt/sources.list.d/nginx-org.list"
PIN = "/etc/apt/preferences.d/90-nginx-org"
KEYRING = "/usr/share/keyrings/nginx-archive-keyring.asc"


def test_nginx_org_source_writes_repository_and_pin_and_refuses_without_verified_key(
    deployed, lab_env
):
    host = "proxy-3"  # Debian 12
    try:
        run = run_deploy(lab_env, "--limit", host, "--data", "nginx_source=nginx.org")
        assert run.returncode != 0  # nginx.org is out of the lab's reach: no key, no install
        assert "signing keys" in run.output
        listing = on_host(host, f"grep -v '^#' {LIST}").strip()
        assert listing == (
            f"deb [signed-by={KEYRING}] https://nginx.org/packages/debian bookworm nginx"
        )
        pin = on_host(host, f"grep -v '^#' {PIN}")
        assert "Pin: origin nginx.org" in pin and "Pin-Priority: 900" in pin
        assert on_host(host, f"test -e {KEYRING} && echo present || echo absent").strip() == (
            "absent"
        )
        assert on_host(host, "systemctl is-active nginx").strip() == "active"
    finally:
        on_host(host, f"rm -f {LIST} {PIN}")
        assert run_deploy(lab_env, "--limit", host).returncode == 0
