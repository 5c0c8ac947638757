"""The health gate asks the load balancer too (issue 13, item 2), on the lab: the real rollout, the
real inventory, and the lab's load balancer (lab/lb.py, 10.77.0.40) whose real health checks the
fake AWS's DescribeTargetHealth reports (lab/honest_aws.py).

A proxy whose firewall drops the load balancer still answers the runner: the runner's probe
alone passes, the gate with the target groups fails naming the proxy and AWS's reason. The drop
is an nftables table of its own in the host (the deploy's own rule refuses a firewall without
lb_subnet_cidrs), removed afterwards, and the test waits until the load balancer sees the proxy
healthy again so later tests are unaffected.

LAB_STAGE 41: with the rollout's other lab tests, after the pipeline's.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_deploy
from lab_hosts import lb_sees, on_host, run_rollout

from lab import config, fakeaws

pytestmark = pytest.mark.lab
LAB_STAGE = 41

BLOCK = "inet lab_gate_test"  # the test's own table: the deploy's tables stay as they are
VICTIM = "proxy-2"


@pytest.fixture
def gate_env(deployed, lab_env, proxies):
    """The fleet converged and seen healthy by the load balancer; the rollout's environment with
    the target groups as CI passes them (`terraform output -json target_group_arns`)."""
    groups = fakeaws.elbv2_client().describe_target_groups()["TargetGroups"]
    arns = {
        g["TargetGroupName"].removeprefix(f"{config.LB_NAME}-"): g["TargetGroupArn"] for g in groups
    }
    assert sorted(arns) == ["a", "b"], arns
    for node in proxies:
        lb_sees(node.address, True)
    env = dict(lab_env, HEALTH_ATTEMPTS="4", HEALTH_INTERVAL="1")
    return env, json.dumps(arns)


def test_gate_with_the_target_groups_passes_after_a_normal_deploy(gate_env, proxies):
    env, arns = gate_env
    done = run_rollout(dict(env, ROLLOUT_TARGET_GROUP_ARNS=arns), "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    for node in proxies:
        line = next(x for x in done.stdout.splitlines() if x.startswith(f"{node.name}: "))
        assert line.startswith(f"{node.name}: healthy: "), line
        assert ": healthy" in line.split("load balancer: target group ")[1], line


def test_gate_fails_when_the_firewall_drops_the_load_balancer_but_the_probe_passes(
    gate_env, proxies
):
    env, arns = gate_env
    victim = next(n for n in proxies if n.name == VICTIM)
    on_host(
        VICTIM,
        f"nft add table {BLOCK} && nft 'add chain {BLOCK} in "
        "{ type filter hook input priority -10; }' && "
        f"nft add rule {BLOCK} in ip saddr {config.LB_ADDRESS} tcp dport 80 drop",
    )
    try:
        lb_sees(victim.address, False)
        probe_only = run_rollout(env, "verify")
        with_lb = run_rollout(dict(env, ROLLOUT_TARGET_GROUP_ARNS=arns), "verify")
        # A canary on the converged proxy: deployed with nothing to do, then gated. The target
        # groups by the load balancer's name this time, as CI's default ROLLOUT_LOAD_BALANCER.
        canary = run_rollout(
            dict(env, ROLLOUT_LOAD_BALANCER=config.LB_NAME), "canary", "--canary", VICTIM
        )
    finally:
        on_host(VICTIM, f"nft delete table {BLOCK} 2>/dev/null || true")
        lb_sees(victim.address, True)
        assert run_deploy(env, "--limit", VICTIM).returncode == 0  # converged, whatever happened

    # The runner's probe of the private address alone sees nothing wrong...
    assert probe_only.returncode == 0, probe_only.stdout + probe_only.stderr
    # ...the load balancer's view does, naming the proxy and AWS's reason.
    reason = "unhealthy (Target.FailedHealthChecks, Health checks failed)"
    assert with_lb.returncode == 1, with_lb.stdout + with_lb.stderr
    line = next(x for x in with_lb.stdout.splitlines() if x.startswith(f"{VICTIM}: "))
    assert line.startswith(f"{VICTIM}: UNHEALTHY: "), line
    assert "/readyz answered 200" in line and reason in line, line
    assert f"VERIFY FAILED: unhealthy: {VICTIM}" in with_lb.stdout
    others = [x for x in with_lb.stdout.splitlines() if x.startswith("proxy-") and VICTIM not in x]
    assert others and all(": healthy: " in x for x in others), with_lb.stdout
    # In a rollout, the same gate stops it at that proxy.
    assert canary.returncode == 1, canary.stdout + canary.stderr
    assert f"{VICTIM}: deployed: " in canary.stdout, canary.stdout + canary.stderr
    assert f"ROLLOUT ABORTED at {VICTIM}: health gate failed" in canary.stderr
    assert reason in canary.stderr
    assert f"target group(s) proxy-lab-a, proxy-lab-b of load balancer {config.LB_NAME}" in (
        canary.stdout
    )
