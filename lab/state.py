"""The lab's record of what it created: written as each thing is made, read by `down` to undo it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab import config

_held = 0  # how deep this process is inside `exclusive()`: `up` calls `down` on failure


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One `up` or `down` at a time on this machine, whoever runs it (make demo, a test session,
    a bench). Two at once would each save the record from their own copy, and the PIDs one of
    them recorded would be lost: its processes would outlive `down`. Reentrant in one process."""
    global _held
    if _held:
        _held += 1
        try:
            yield
        finally:
            _held -= 1
        return
    config.STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(config.STATE_DIR / "lab.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        _held = 1
        try:
            yield
        finally:
            _held = 0


def load() -> dict[str, Any]:
    """The recorded state, or an empty record when the lab was never brought up."""
    path = config.state_file()
    if not path.exists():
        return {"pids": {}, "leaders": {}}
    return json.loads(path.read_text())


def save(state: dict[str, Any]) -> None:
    path = config.state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def record_pid(state: dict[str, Any], name: str, pid: int) -> None:
    state["pids"][name] = pid
    save(state)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not alive for our purposes.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def stop_pid(pid: int, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """Stop one recorded process (and its process group): TERM, wait, then KILL."""
    if not pid_alive(pid):
        return
    try:
        os.killpg(pid, sig)  # every lab process is started as its own session leader
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
