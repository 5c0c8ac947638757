"""Running pyinfra: the exact commands of a deploy and of a dry run (always with --limit), run
with pyinfra's log streamed to our stderr, and their machine-readable output handed to
results.py and drift.py."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from tools.rollout.drift import DRIFT_FILE_ENV, DryRun, parse_dry_run
from tools.rollout.errors import RolloutError
from tools.rollout.hosts import Host
from tools.rollout.results import DeployRun, parse_deploy_results
from tools.rollout.settings import Settings

STDERR_TAIL_LINES = 5  # pyinfra's last log lines, repeated for the human when it gave no results


def run_streaming(
    cmd: Sequence[str], extra_env: Mapping[str, str] | None = None
) -> tuple[int, str, list[str]]:
    """Run `cmd`; its stderr (pyinfra's log) goes on to ours as it comes. Returns the exit code,
    stdout, and the last lines of stderr (for the human: never read for a decision)."""
    env = {**os.environ, "PYINFRA_PROGRESS": "off", **(extra_env or {})}
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout_parts: list[str] = []
    reader = threading.Thread(target=lambda: stdout_parts.append(proc.stdout.read()), daemon=True)
    reader.start()
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.strip():
            tail.append(line.rstrip("\n"))
    reader.join()
    return proc.wait(), "".join(stdout_parts), list(tail)


def _refuse_no_limit(limits: Sequence[str]) -> None:
    # pyinfra without --limit targets every host of the inventory: never what a batch or a shard
    # means, so an empty list is a bug here, not a request for the whole fleet.
    if not limits:
        raise RolloutError("refusing to run pyinfra without --limit (it would target every host)")


def deploy_command(settings: Settings, hosts: Sequence[str]) -> list[str]:
    _refuse_no_limit(hosts)
    limits = [arg for h in hosts for arg in ("--limit", h)]
    return [*settings.pyinfra, "-y", "--json", settings.inventory, settings.deploy_file, *limits]


def dry_run_command(settings: Settings, limits: Sequence[str]) -> list[str]:
    # No -y here: with -y pyinfra skips change detection and every host looks in step.
    _refuse_no_limit(limits)
    args = [arg for name in limits for arg in ("--limit", name)]
    return [*settings.pyinfra, "--dry", "--json", settings.inventory, settings.deploy_file, *args]


def pyinfra_deploy(settings: Settings, hosts: Sequence[Host]) -> DeployRun:
    names = [h.name for h in hosts]
    rc, stdout, tail = run_streaming(deploy_command(settings, names))
    return parse_deploy_results(names, rc, stdout, tail)


def pyinfra_dry_run(settings: Settings, hosts: Sequence[Host], limits: Sequence[str]) -> DryRun:
    """The dry run, with PROXY_DEPLOY_DRIFT_FILE pointing at a fresh temporary file the deploy
    appends its records to; the file is removed once read."""
    fd, path = tempfile.mkstemp(prefix="drift-", suffix=".jsonl")
    os.close(fd)
    try:
        rc, stdout, _ = run_streaming(dry_run_command(settings, limits), {DRIFT_FILE_ENV: path})
        drift_text = Path(path).read_text(encoding="utf-8", errors="replace")
    finally:
        Path(path).unlink(missing_ok=True)
    return parse_dry_run([h.name for h in hosts], rc, stdout, drift_text)
