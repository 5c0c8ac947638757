"""Makefile: the variables that reach shell command lines are checked by make itself, on their raw
text, before any recipe or $(shell) runs (issue 13, item 8). `make -n` runs nothing: a refusal
there is a refusal at parse time."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def injections(marker: Path) -> list[tuple[str, str]]:
    touch = f"touch {marker}"
    return [
        ("HOST", f"proxy-2;{touch}"),
        ("HOST", f"$(shell {touch})"),
        ("HOST", f"`{touch}`"),
        ("HOST", f"proxy-2 $({touch})"),
        ("HOST", "--inventory=evil.py"),
        ("HOST", "proxy-2\ntouch"),
        ("BATCH", f"2&&{touch}"),
        ("BATCHES", f"1,25%,100%|{touch}"),
        ("MAX_FAIL", f"10;{touch}"),
        ("SHARD", f"2/4$(shell {touch})"),
        ("INVENTORY", f"inventories/aws.py;{touch}"),
        ("INVENTORY", f"${{{touch}}}"),
        ("PROXIES", f"3;{touch}"),
    ]


@pytest.mark.parametrize("index", range(13))
def test_injection_refused_before_anything_runs(tmp_path: Path, index: int) -> None:
    marker = tmp_path / "pwned"
    name, value = injections(marker)[index]
    done = make("verify", f"{name}={value}")
    assert done.returncode != 0, done.stdout
    assert f"{name}='" in done.stderr and "refused: must be" in done.stderr, done.stderr
    assert not marker.exists()


@pytest.mark.parametrize("index", [1, 9, 11])
def test_injection_from_the_environment_refused_too(tmp_path: Path, index: int) -> None:
    marker = tmp_path / "pwned"
    name, value = injections(marker)[index]
    done = make("verify", env={name: value})
    assert done.returncode != 0 and "refused: must be" in done.stderr, done.stderr
    assert not marker.exists()


def test_valid_values_reach_the_rollout_command() -> None:
    done = make(
        "deploy",
        "HOST=proxy-a-1",
        "BATCHES=1,25%,100%",
        "MAX_FAIL=10",
        "SHARD=2/4",
        "INVENTORY=inventories/aws.py",
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    for part in (
        "--inventory inventories/aws.py",
        "--shard 2/4",
        "deploy --canary proxy-a-1",
        "--batches 1,25%,100%",
        "--max-fail-percent 10",
    ):
        assert part in line, line


def test_targets_without_these_variables_still_work() -> None:
    done = make("help")
    assert done.returncode == 0, done.stderr
