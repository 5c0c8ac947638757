"""Running commands on the machine, with errors that say what failed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class LabError(Exception):
    """A problem the person running the lab can fix; the message says how."""


def run(cmd: Sequence[str], check: bool = True, input: str | None = None) -> str:
    """Run CMD and return its standard output; raise LabError with its stderr on failure."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
        )
    return proc.stdout


def ok(cmd: Sequence[str]) -> bool:
    """True when CMD exits 0 (its output is discarded)."""
    return subprocess.run(list(cmd), capture_output=True).returncode == 0
