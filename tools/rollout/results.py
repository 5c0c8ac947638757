"""What a deploy did, per host, read from the JSON results of `pyinfra -y --json` only (never
from pyinfra's log), plus the readers of pyinfra's JSON that drift.py shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass


def find_json_object(stdout: str) -> dict | None:
    """pyinfra --json prints one JSON object on one line; ignore anything else a deploy printed."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and "plan" in value:
                return value
    return None


def host_list(entry: dict, key: str) -> list[str]:
    """A list of host names from pyinfra's JSON; anything else means we cannot read it."""
    value = entry.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} is not a list of host names")
    return value


def op_names(op: dict) -> set[str]:
    """Every name an operation is known by (a record's "operation" may use any of them)."""
    names = {n for n in op.get("names") or [] if isinstance(n, str)}
    if isinstance(op.get("name"), str):
        names.add(op["name"])
    return names


def op_name(op: dict) -> str:
    name = op.get("name")
    return name if isinstance(name, str) and name else str(op.get("op_hash", "?"))


@dataclass(frozen=True)
class HostRun:
    """What one deploy did on one host: operations changed / unchanged / failed, and whether
    the host counts as deployed (`failure` is None) or failed (the reason)."""

    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed_ops: tuple[str, ...] = ()
    failure: str | None = None

    def summary(self) -> str:
        text = f"{len(self.changed)} operation(s) changed, {len(self.unchanged)} unchanged"
        if self.changed:
            text += f" (changed: {', '.join(self.changed)})"
        return text


@dataclass(frozen=True)
class DeployRun:
    """One `pyinfra -y --json` over a batch: every host of the batch and, when its results
    could not say why the hosts failed, pyinfra's last log lines (shown to the human, never
    read for a decision)."""

    hosts: dict[str, HostRun]
    log_tail: tuple[str, ...] = ()


def parse_deploy_results(
    hosts: Sequence[str], returncode: int, stdout: str, log_tail: Sequence[str] = ()
) -> DeployRun:
    """Per host, from pyinfra's JSON results only. A host is deployed when the results mention
    it, it is not in "failed_hosts" and no operation lists it under "error"."""
    tail = tuple(log_tail)
    payload = find_json_object(stdout)
    results = payload.get("results") if payload else None
    if not isinstance(results, dict):
        reason = f"pyinfra exited {returncode} without results"
        return DeployRun({h: HostRun(failure=reason) for h in hosts}, tail)
    try:
        failed_hosts = set(host_list(results, "failed_hosts"))
        operations = results.get("operations") or []
        if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
            raise ValueError("'operations' is not a list of objects")
        lists = [
            (op_name(op), *(host_list(op, k) for k in ("success", "no_change", "error")))
            for op in operations
        ]
    except ValueError as e:
        reason = f"pyinfra's results are unreadable ({e}; exit {returncode})"
        return DeployRun({h: HostRun(failure=reason) for h in hosts}, tail)

    runs: dict[str, HostRun] = {}
    for host in hosts:
        changed = tuple(name for name, success, _, _ in lists if host in success)
        unchanged = tuple(name for name, _, no_change, _ in lists if host in no_change)
        failed_ops = tuple(name for name, _, _, error in lists if host in error)
        failure = None
        if failed_ops:
            failure = f"operation '{failed_ops[0]}' failed"
            if len(failed_ops) > 1:
                failure += " (then " + ", ".join(f"'{op}'" for op in failed_ops[1:]) + ")"
        elif host in failed_hosts:
            failure = (
                "pyinfra marked it failed before any operation ran on it "
                "(unreachable, or an error while preparing it: see pyinfra's output above)"
            )
        elif not (changed or unchanged):
            failure = "pyinfra ran nothing on it (is it in the inventory pyinfra loaded?)"
        runs[host] = HostRun(changed, unchanged, failed_ops, failure)
    if returncode != 0 and not any(run.failure for run in runs.values()):
        # pyinfra exits non-zero only when a host failed: results that say otherwise are wrong
        reason = f"pyinfra exited {returncode} although its results show no failure"
        runs = {h: HostRun(r.changed, r.unchanged, r.failed_ops, reason) for h, r in runs.items()}
        return DeployRun(runs, tail)
    return DeployRun(runs)  # the results name each failure: no log lines needed
