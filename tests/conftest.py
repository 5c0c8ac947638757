"""Shared fixtures. Lab tests share one lab for the whole session (brought up once, reused if up).

Lab test modules set `LAB_STAGE`: the lab is one shared, stateful thing, so its tests run in stage
order (the bare lab before the deploy, the deploy before hardening, `down` last) whatever their
file names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lab import config, core


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
