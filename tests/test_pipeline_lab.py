"""The GitLab CI jobs (issue 6), run for real on the lab with gitlab-ci-local's shell executor:
the same `make` targets, the real inventory over the fake EC2, the real deploy over SSH.

LAB_STAGE 40: after the deploy and hardening tests, with the fleet converged.
The module deploys once (`fleet_sha`); the tests run in file order and each leaves the fleet
converged (and asserts it), except the last, which leaves drift on purpose.
"""

from __future__ import annotations

import json

import pytest
from conftest import REPO, run_deploy
from lab_hosts import (
    MANAGED,
    SABOTAGE,
    block_runner_health_checks,
    ci_job,
    lb_sees,
    on_host,
    sha1_of,
)

from lab import config, core

pytestmark = pytest.mark.lab
LAB_STAGE = 40


def drift_everywhere(proxies) -> None:
    for node in proxies:
        on_host(node.name, f"echo '# hand edit' >> {MANAGED}")


def managed_shas(proxies: list[config.Node]) -> dict[str, str]:
    """Each proxy's sha of MANAGED."""
    return {node.name: sha1_of(node.name, MANAGED) for node in proxies}


@pytest.fixture(scope="module")
def fleet_sha(deployed, lab_env, lab) -> str:
    """Deploys once for the module: every proxy as the deploy wants it; the sha of MANAGED.

    The earlier stages leave the fleet in their own states (one host deployed with other data
    and back, ...), so the module starts from a converge of its own."""
    assert run_deploy(lab_env).returncode == 0
    first_proxy = next(n for n in core.members_of(lab) if n.role == "reverse-proxy")
    return sha1_of(first_proxy.name, MANAGED)


@pytest.fixture
def converged(fleet_sha, lab_env, proxies):
    """Every proxy as the deploy wants it before the test; the sha of MANAGED.

    The tests leave the fleet converged (and assert it) except the last, so this deploys again
    only when a proxy's MANAGED differs (a test failed midway, or ran alone after one that
    leaves drift): every test still starts from a converged fleet, without a deploy per test."""
    if set(managed_shas(proxies).values()) != {fleet_sha}:
        assert run_deploy(lab_env).returncode == 0
        assert set(managed_shas(proxies).values()) == {fleet_sha}
    yield fleet_sha
    for node in proxies:
        on_host(node.name, f"nft delete table {SABOTAGE} 2>/dev/null || true")


def test_canary_job_changes_one_host_and_fleet_job_the_rest(converged, lab_env, proxies):
    drift_everywhere(proxies)
    canary = ci_job(lab_env, "deploy:canary", CANARY_HOST="proxy-2")
    assert canary.returncode == 0, canary.stdout[-3000:]
    repaired = {n.name: sha1_of(n.name, MANAGED) == converged for n in proxies}
    assert repaired == {"proxy-1": False, "proxy-2": True, "proxy-3": False}
    fleet = ci_job(lab_env, "deploy:fleet", CANARY_HOST="proxy-2")
    assert fleet.returncode == 0, fleet.stdout[-3000:]
    assert all(sha1_of(n.name, MANAGED) == converged for n in proxies)


def test_verify_job_checks_every_proxy(converged, lab_env, proxies):
    for node in proxies:  # an earlier test may have restarted one: the balancer's checks agree
        lb_sees(node.address, True)
    verify = ci_job(lab_env, "verify")
    assert verify.returncode == 0, verify.stdout[-3000:]
    assert all(n.name in verify.stdout for n in proxies)
    # CI's default ROLLOUT_LOAD_BALANCER (proxy-$ENVIRONMENT, the lab's proxy-lab): the gate also
    # read the load balancer's own view of each proxy, in the target group it is registered in
    assert "target group(s) proxy-lab-a, proxy-lab-b of load balancer proxy-lab" in verify.stdout
    for group, count in (("proxy-lab-a", 2), ("proxy-lab-b", 1)):
        seen = f"load balancer: target group {group}: healthy"
        assert verify.stdout.count(seen) == count, verify.stdout[-3000:]


def test_drift_job_fails_naming_the_drifted_host_and_repair_job_fixes_it(
    converged, lab_env, proxies
):
    on_host("proxy-3", f"echo '# hand edit' >> {MANAGED}")
    detect = ci_job(lab_env, "drift:detect", CI_PIPELINE_SOURCE="schedule")
    assert detect.returncode != 0
    report = (REPO / "drift-report.txt").read_text()
    assert "RESULT: DRIFTED - 1 of 3 hosts" in report, report
    drifted = json.loads((REPO / "drift-report.json").read_text())["drifted"]
    assert list(drifted) == ["proxy-3"]
    assert any("nginx configuration" in str(op) for op in drifted["proxy-3"]), drifted
    repair = ci_job(lab_env, "drift:repair", CI_PIPELINE_SOURCE="web", DRIFT_REPAIR="true")
    assert repair.returncode == 0, repair.stdout[-3000:]
    assert sha1_of("proxy-3", MANAGED) == converged
    again = ci_job(lab_env, "drift:detect", CI_PIPELINE_SOURCE="schedule")
    assert again.returncode == 0, again.stdout[-3000:]


def test_unhealthy_host_stops_the_fleet_and_later_hosts_stay_untouched(converged, lab_env, proxies):
    drift_everywhere(proxies)
    block_runner_health_checks("proxy-2")
    fleet = ci_job(lab_env, "deploy:fleet", CANARY_HOST="proxy-1")
    assert fleet.returncode != 0
    assert "proxy-2" in fleet.stdout
    assert sha1_of("proxy-2", MANAGED) == converged  # deployed, then failed its gate
    assert sha1_of("proxy-3", MANAGED) != converged  # never reached
    assert core.can_connect("loadgen", "10.77.0.103", 80)
