"""The rollout on the lab (issue 10): batches given as counts and percentages, and a failure
tolerance, with the real inventory, the real deploy and the real health gate.

LAB_STAGE 41: after the pipeline tests.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, run_deploy
from test_deploy import on_host, sha1_of
from test_pipeline_lab import MANAGED, SABOTAGE, block_runner_health_checks

pytestmark = pytest.mark.lab
LAB_STAGE = 41


def rollout(lab_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = dict(lab_env, HEALTH_ATTEMPTS="2", HEALTH_INTERVAL="1")  # short gates on the lab
    return subprocess.run(
        [sys.executable, "-m", "tools.rollout", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def drifted_fleet(deployed, lab_env, proxies):
    """Every proxy converged, then its nginx.conf edited by hand; the desired sha."""
    assert run_deploy(lab_env).returncode == 0
    wanted = sha1_of(proxies[0].name, MANAGED)
    for node in proxies:
        on_host(node.name, f"echo '# hand edit' >> {MANAGED}")
    yield wanted
    for node in proxies:
        on_host(node.name, f"nft delete table {SABOTAGE} 2>/dev/null || true")


def test_batches_of_one_then_half_then_all_deploy_three_proxies_one_by_one(
    drifted_fleet, lab_env, proxies
):
    done = rollout(lab_env, "deploy", "--batches", "1,50%,100%")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    # 50% of 3 proxies rounds down to 1; the last item (100%) takes what is left.
    for index, node in enumerate(proxies, 1):
        assert f"batch {index}/3: deploying {node.name}" in done.stdout, done.stdout
        assert f"{node.name}: healthy" in done.stdout
    assert all(sha1_of(n.name, MANAGED) == drifted_fleet for n in proxies)


def test_failure_within_tolerance_lets_the_rollout_finish_and_exit_nonzero(
    drifted_fleet, lab_env, proxies
):
    block_runner_health_checks("proxy-2")
    done = rollout(lab_env, "deploy", "--batches", "1,100%", "--max-fail-percent", "50")
    assert done.returncode == 1, done.stdout[-3000:]
    output = done.stdout + done.stderr
    assert "ROLLOUT FINISHED WITH FAILURES: 1 host(s) failed" in output, output[-3000:]
    assert "proxy-2: health gate failed" in output
    assert "proxy-3: healthy" in done.stdout  # the batch went on past proxy-2
    assert all(sha1_of(n.name, MANAGED) == drifted_fleet for n in proxies)
