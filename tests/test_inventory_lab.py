"""The EC2 inventory on the lab (issue 3): the real boto3 code over the fake EC2's HTTP API,
then pyinfra connecting to what it found, over SSH, as `admin`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.lab
LAB_STAGE = 5  # after the bare-lab checks, before the deploy


def pyinfra(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/aws.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_listing_finds_exactly_the_lab_proxies_with_their_addresses(lab_env, proxies):
    result = subprocess.run(
        [sys.executable, "-m", "inventories.aws", "--json"],
        cwd=REPO,
        env=lab_env,
        capture_output=True,
        text=True,
        check=True,
    )
    hosts = json.loads(result.stdout)
    assert [(h["name"], h["ssh_hostname"]) for h in hosts] == [(n.name, n.address) for n in proxies]
    assert all({"proxies", "env_lab"} <= set(h["groups"]) for h in hosts)
    assert all(h["data"]["ec2_backend_addresses"] == ["10.77.0.10"] for h in hosts)


def test_pyinfra_connects_to_every_proxy_as_admin(lab_env, proxies):
    result = pyinfra(lab_env, "--data", "_sudo=false", "exec", "--", "whoami")
    assert result.returncode == 0, result.stderr[-2000:]
    for node in proxies:
        assert f"[{node.name}] admin" in result.stderr + result.stdout, node.name


def test_limit_connects_to_that_host_alone(lab_env):
    result = pyinfra(lab_env, "--limit", "proxy-2", "exec", "--", "hostname")
    output = result.stderr + result.stdout
    assert result.returncode == 0, output[-2000:]
    assert "[proxy-2] Connected" in output
    assert "[proxy-1]" not in output and "[proxy-3]" not in output
