"""What the lab tests share: commands on a lab host, the managed nginx.conf, GitLab CI jobs run
locally against the lab, the sabotage that makes a proxy fail the runner's health checks, and
waiting for the lab load balancer's own view of a proxy.

Not a test module: the lab test files import from it (pytest puts tests/ on the path).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import REPO

from lab import core, lb

PROXY_LOG = "/var/log/nginx/proxy_access.log"
MANAGED = "/etc/nginx/nginx.conf"  # the managed file the drift and pipeline tests edit
SABOTAGE = "inet lab_sabotage"  # an nftables table of the tests', never the deploy's
GITLAB_CI_LOCAL = REPO / "tools/gitlab-ci-local/node_modules/.bin/gitlab-ci-local"


def on_host(name: str, command: str) -> str:
    """The output of shell COMMAND run as root on lab host NAME."""
    return core.run_in(name, ["sh", "-c", command]).stdout


def sha1_of(name: str, path: str) -> str:
    """The SHA-1 of PATH on lab host NAME ("" when it is missing)."""
    return on_host(name, f"sha1sum {path} 2>/dev/null | cut -d' ' -f1").strip()


def ci_job(lab_env: dict[str, str], job: str, **variables: str) -> subprocess.CompletedProcess:
    """Run one job of .gitlab-ci.yml in this checkout, pointed at the lab."""
    if not GITLAB_CI_LOCAL.exists():
        pytest.fail("gitlab-ci-local is missing: `make test` installs it (make ci-local)")
    names = (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "EC2_INVENTORY_REGIONS",
        "ENVIRONMENT",
        "DEPLOY_SSH_KEY",
        "DEPLOY_SSH_KNOWN_HOSTS",
    )
    settings = {name: lab_env[name] for name in names}
    # The lab has no OIDC: a stand-in token; the lab's static test credentials come first in
    # boto3's chain. Health gates retry less than in production, to keep the tests short.
    settings |= {"AWS_ID_TOKEN": "lab-has-no-oidc", "HEALTH_ATTEMPTS": "2", "HEALTH_INTERVAL": "1"}
    settings |= variables
    command = [str(GITLAB_CI_LOCAL), "--force-shell-executor", "--no-color"]
    command += [f"--variable={key}={value}" for key, value in settings.items()]
    return subprocess.run(
        [*command, job], cwd=REPO, env=lab_env, capture_output=True, text=True, timeout=900
    )


def block_runner_health_checks(name: str) -> None:
    """NAME stops answering the runner's health checks (its own firewall is untouched)."""
    on_host(
        name,
        f"nft add table {SABOTAGE} && nft 'add chain {SABOTAGE} in "
        "{ type filter hook input priority -10; }' && "
        f"nft add rule {SABOTAGE} in ip saddr 10.77.0.1 tcp dport 80 drop",
    )


def run_rollout(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m tools.rollout ARGS` in this checkout with ENV, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tools.rollout", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def lb_sees(address: str, healthy: bool, timeout: float = 30.0) -> None:
    """Wait until the lab's load balancer has judged ADDRESS (two checks in a row)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lb.read_state().get("healthy", {}).get(address) is healthy:
            return
        time.sleep(0.5)
    raise AssertionError(f"the lab load balancer never saw {address} healthy={healthy}")
