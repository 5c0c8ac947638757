"""The rollout on the lab (issue 10): batches given as counts and percentages, and a failure
tolerance, with the real inventory, the real deploy and the real health gate; and (issue 11) the
fleet deployed in two shards, run by gitlab-ci-local as GitLab runs `parallel:` jobs.

LAB_STAGE 41: after the pipeline tests.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import lab_hosts
import pytest
from conftest import REPO, run_deploy
from lab_hosts import (
    MANAGED,
    SABOTAGE,
    block_runner_health_checks,
    ci_job,
    on_host,
    run_rollout,
    sha1_of,
)

from tools.rollout.hosts import parse_inventory_json, shard_of

pytestmark = pytest.mark.lab
LAB_STAGE = 41


def rollout(lab_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The rollout with short health gates (the lab answers at once)."""
    return run_rollout(dict(lab_env, HEALTH_ATTEMPTS="2", HEALTH_INTERVAL="1"), *args)


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


def test_canary_on_a_converged_proxy_passes_with_nothing_to_do(deployed, lab_env, proxies):
    """A converged host runs no operation that changes or reads anything: the rollout must still
    see it deployed (tasks/finish.py lists it in pyinfra's results), not "ran nothing on it"."""
    assert run_deploy(lab_env).returncode == 0
    canary = proxies[0].name
    done = rollout(lab_env, "canary", "--canary", canary)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{canary}: healthy" in done.stdout, done.stdout
    assert "ran nothing" not in done.stdout + done.stderr


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


def sharded_pipeline(tmp_path: Path, shards: int) -> Path:
    """A gitlab-ci-local that runs .gitlab-ci.yml with its shard count (`.shards`' `parallel: 1`,
    the one number) set to `shards`, nothing else changed; the copy lives in tmp_path."""
    text = (REPO / ".gitlab-ci.yml").read_text()
    assert text.count("\n  parallel: 1\n") == 1, "the shard count is no longer `parallel: 1`"
    pipeline = tmp_path / "sharded.gitlab-ci.yml"
    pipeline.write_text(text.replace("\n  parallel: 1\n", f"\n  parallel: {shards}\n"))
    wrapper = tmp_path / "gitlab-ci-local"
    relative = os.path.relpath(pipeline, REPO)  # gitlab-ci-local's --file is relative to its cwd
    real = lab_hosts.GITLAB_CI_LOCAL
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(str(real))} --file {relative} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def shards_of_proxies(lab_env: dict[str, str], total: int) -> dict[str, int]:
    """Proxy name -> its shard, from the real inventory (the lab's fake EC2 gives instance ids)."""
    listing = subprocess.run(
        [sys.executable, "-m", "inventories.aws", "--json"],
        cwd=REPO,
        env=lab_env,
        capture_output=True,
        text=True,
        check=True,
    )
    hosts = parse_inventory_json(listing.stdout)
    assert all(h.instance_id for h in hosts), hosts
    return {h.name: shard_of(h.instance_id, total) for h in hosts}


def test_fleet_in_two_shards_via_gitlab_ci_local_deploys_each_proxy_by_its_shard_only(
    drifted_fleet, lab_env, proxies, tmp_path, monkeypatch
):
    """deploy:canary, then deploy:fleet as two parallel jobs over the three proxies: each proxy
    but the canary is deployed by the one shard its instance id hashes to and by no other, every
    shard with a proxy checks the canary first, and a shard left without one says so."""
    monkeypatch.setattr(lab_hosts, "GITLAB_CI_LOCAL", sharded_pipeline(tmp_path, 2))
    expected = shards_of_proxies(lab_env, 2)
    assert sorted(expected) == sorted(n.name for n in proxies)

    canary = ci_job(lab_env, "deploy:canary", CANARY_HOST="proxy-1")
    assert canary.returncode == 0, canary.stdout[-3000:]
    fleet = ci_job(lab_env, "deploy:fleet", CANARY_HOST="proxy-1")
    assert fleet.returncode == 0, fleet.stdout[-3000:] + fleet.stderr[-2000:]

    # gitlab-ci-local prefixes each line of a job's output with the job's name
    lines = (fleet.stdout + fleet.stderr).splitlines()
    jobs = {
        i: "\n".join(x for x in lines if x.startswith(f"deploy:fleet: [{i}/2]")) for i in (1, 2)
    }
    for index, output in jobs.items():
        mine = [name for name in sorted(expected) if expected[name] == index]
        if not mine:  # possible: the lab's instance ids are new at each boot
            assert f"shard {index}/2: no hosts" in output, output
            continue
        assert f"shard {index}/2: {len(mine)} of 3 proxies" in output, output
        assert f"mod 2): {', '.join(mine)}" in output, output
        assert "canary proxy-1 is healthy" in output, output
    for node in proxies:
        deployed_by = [i for i, output in jobs.items() if f" {node.name}: deployed: " in output]
        assert deployed_by == ([] if node.name == "proxy-1" else [expected[node.name]]), node.name
    assert all(sha1_of(n.name, MANAGED) == drifted_fleet for n in proxies)
