"""The lockout guard (tasks/preflight.py) on the lab (issue 5): settings that would shut the
deploy's own address out of SSH are refused before any host is changed.

Runs after the first deploy (LAB_STAGE 20): the `deployed` fixture has converged every proxy.
"""

from __future__ import annotations

import pytest
from conftest import run_deploy
from test_lab import ssh

pytestmark = pytest.mark.lab
LAB_STAGE = 20


def test_settings_that_would_lock_the_deploy_out_are_refused_before_any_change(
    deployed, lab_env, proxies
):
    run = run_deploy(lab_env, "--data", 'admin_cidrs=["192.0.2.0/24"]')
    assert run.returncode != 0
    assert "refusing to run: this deploy connects from 10.77.0.1" in run.output
    assert run.changed() == {}
    assert all(ssh(n, "true").returncode == 0 for n in proxies)
