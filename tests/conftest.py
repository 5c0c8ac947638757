"""Shared fixtures. Lab tests share one lab for the whole session (brought up once, reused if up).

Lab test modules set `LAB_STAGE`: the lab is one shared, stateful thing, so its tests run in stage
order (the bare lab before the deploy, the deploy before hardening, `down` last) whatever their
file names.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import config, core

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def stage(item: pytest.Item) -> int:
        return getattr(item.module, "LAB_STAGE", -1) if item.get_closest_marker("lab") else -1

    items.sort(key=stage)


@pytest.fixture(scope="session")
def lab() -> Iterator[dict]:
    """The running lab (proxy-1, proxy-2 on Debian 13, proxy-3 on Debian 12); its state."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    yield core.up(3, dict(config.DEFAULT_SUITES))


@pytest.fixture(scope="session")
def lab_env(lab: dict) -> dict[str, str]:
    """os.environ plus what `python -m lab env` exports: for pyinfra and the inventory."""
    env = dict(os.environ)
    env.update(core.env_vars())
    env.pop("CI", None)  # the inventory's cache rules differ under CI; the lab is not CI
    return env


@pytest.fixture
def proxies(lab: dict) -> list[config.Node]:
    return [n for n in core.members_of(lab) if n.role == "reverse-proxy"]


@dataclass
class DeployRun:
    """One real `pyinfra inventories/aws.py deploy.py` run against the lab, and what it did."""

    returncode: int
    stdout: str
    stderr: str
    results: dict | None

    def changed(self) -> dict[str, list[str]]:
        """Operation name -> hosts it changed (empty when the run changed nothing)."""
        if not self.results:
            return {}
        return {op["name"]: op["success"] for op in self.results["operations"] if op["success"]}

    def changed_hosts(self) -> set[str]:
        return {h for hosts in self.changed().values() for h in hosts}

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_deploy(env: dict[str, str], *args: str, deploy: str = "deploy.py") -> DeployRun:
    """Run the real deploy through the real inventory (fake EC2) over SSH; parse its JSON result."""
    proc = subprocess.run(
        [str(REPO / ".venv/bin/pyinfra"), "-y", "--json", "inventories/aws.py", deploy, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        results = json.loads(proc.stdout)["results"]
    except (ValueError, KeyError):
        results = None
    return DeployRun(proc.returncode, proc.stdout, proc.stderr, results)


@pytest.fixture(scope="session")
def deployed(lab_env: dict[str, str]) -> DeployRun:
    """The fleet after one full deploy (the first converge of the session)."""
    first = run_deploy(lab_env)
    assert first.returncode == 0, first.output[-3000:]
    return first
