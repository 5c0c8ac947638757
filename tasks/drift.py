"""What a drift check found on each host, written for `tools/rollout/ drift` to report.

Owns: nothing on the hosts. Reads: the environment variable PROXY_DEPLOY_DRIFT_FILE.

`python -m tools.rollout drift` runs `pyinfra --dry --json` with PROXY_DEPLOY_DRIFT_FILE set to a
temporary file. pyinfra's plan says which operations would change which host; the tasks add,
through this module, what an operator needs to read: a unified diff for each managed file that
differs, one line for each live-state mismatch ("nginx: running configuration older than ..."),
and the checker's message when the repair would fail validation. One JSON object per line:

    {"host": "proxy-1", "kind": "checked"}
    {"host": "proxy-1", "kind": "file", "subject": PATH, "detail": DIFF, "operation": NAME}
    {"host": "proxy-1", "kind": "state", "subject": UNIT, "detail": LINE, "operation": NAME}
    {"host": "proxy-1", "kind": "invalid", "subject": LABEL, "detail": OUTPUT, "operation": NAME}

A host without its "checked" line was not reached. Without the variable (every real deploy)
nothing is written: state lines are logged instead, so a run says what it repairs.
"""

from __future__ import annotations

import difflib
import json
import os

from pyinfra import host, logger
from pyinfra.facts.files import FileContents

from tasks.facts import fact

DRIFT_FILE_ENV = "PROXY_DEPLOY_DRIFT_FILE"


def checking() -> bool:
    """Whether this run is a drift check (tools/rollout/ drift), not a deploy."""
    return bool(os.environ.get(DRIFT_FILE_ENV))


def checked() -> None:
    """Mark the current host as reached and planned."""
    _write({"host": host.name, "kind": "checked"})


def file_differs(path: str, desired: str, operation: str) -> None:
    """A managed file differs: record the unified diff live -> desired (drift checks only:
    reading the live content is one more round trip per drifted file)."""
    if not checking():
        return
    live = fact(FileContents, path=path)
    if live is None:
        detail = f"missing on the host (the deploy would create it, {len(desired)} bytes)"
    else:
        detail = unified_diff(path, "\n".join(live) + "\n", desired)
    _write(_record("file", path, detail, operation))


def state_differs(subject: str, detail: str, operation: str) -> None:
    """A live-state mismatch, in one line: what runs and what should."""
    if checking():
        _write(_record("state", subject, detail, operation))
    else:
        logger.info(f"[{host.name}] {subject}: {detail}")


def repair_invalid(subject: str, output: str, operation: str) -> None:
    """The repair would fail its validation (nginx -t, sshd -t, nft -c on a staged copy)."""
    _write(_record("invalid", subject, output.strip(), operation))


def unified_diff(path: str, live: str, desired: str) -> str:
    """`diff -u` of the live file against the desired one, labelled with the path."""
    lines = difflib.unified_diff(
        live.splitlines(keepends=True),
        desired.splitlines(keepends=True),
        fromfile=f"{path} (live)",
        tofile=f"{path} (desired)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _record(kind: str, subject: str, detail: str, operation: str) -> dict[str, str]:
    return {
        "host": host.name,
        "kind": kind,
        "subject": subject,
        "detail": detail,
        "operation": _running_operation() or operation,
    }


def _running_operation() -> str | None:
    """The name of the operation being prepared, when called from inside one: the report pairs
    records with pyinfra's plan by name."""
    op_hash = getattr(host, "current_op_hash", None)
    meta = host.state.op_meta.get(op_hash) if op_hash else None
    return sorted(meta.names)[0] if meta and meta.names else None


def _write(record: dict[str, str]) -> None:
    path = os.environ.get(DRIFT_FILE_ENV)
    if not path:
        return
    # One short append per record: lines from hosts prepared concurrently never interleave.
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
