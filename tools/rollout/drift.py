"""Drift: what `pyinfra --dry --json` plans combined with the records the deploy writes to
PROXY_DEPLOY_DRIFT_FILE (tasks/drift.py), the text report and drift-report.json, reading that
JSON back, and joining the shards' reports into the whole fleet's."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tools.rollout.errors import EXIT_DRIFT, EXIT_ERROR, EXIT_OK, RolloutError
from tools.rollout.results import find_json_object, host_list, op_name, op_names
from tools.rollout.settings import Shard

DRIFT_FILE_ENV = "PROXY_DEPLOY_DRIFT_FILE"
DIFF_LINES_SHOWN = 60  # per record in the text report; drift-report.json keeps everything

RECORD_KINDS = ("checked", "file", "state", "invalid")
DRIFT_FIELDS = ("kind", "subject", "detail", "operation")


@dataclass(frozen=True)
class DriftEntry:
    """One thing that differs on a host. `kind` is a record's kind ("file", "state",
    "invalid"), or "operation" for an operation of the plan that no record explains."""

    kind: str
    subject: str
    detail: str
    operation: str

    def as_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "operation": self.operation,
        }


@dataclass
class DriftRecords:
    """What the deploy wrote to PROXY_DEPLOY_DRIFT_FILE."""

    checked: set[str] = field(default_factory=set)
    entries: dict[str, list[DriftEntry]] = field(default_factory=dict)  # host -> records
    problems: list[str] = field(default_factory=list)  # unreadable lines


def parse_drift_records(text: str) -> DriftRecords:
    """One JSON object per line: {"host", "kind"[, "subject", "detail", "operation"]}. A line we
    cannot read is a problem reported as an error, never skipped quietly."""
    records = DriftRecords()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            records.problems.append(f"{DRIFT_FILE_ENV} line {number}: not JSON ({e.msg})")
            continue
        host = value.get("host") if isinstance(value, dict) else None
        kind = value.get("kind") if isinstance(value, dict) else None
        if not isinstance(host, str) or kind not in RECORD_KINDS:
            records.problems.append(
                f'{DRIFT_FILE_ENV} line {number}: expected an object with a "host" and a '
                f'"kind" among {", ".join(RECORD_KINDS)}: {line.strip()[:200]}'
            )
            continue
        if kind == "checked":
            records.checked.add(host)
            continue
        texts = [value.get(key) for key in ("subject", "detail", "operation")]
        subject, detail, operation = (t if isinstance(t, str) else "" for t in texts)
        records.entries.setdefault(host, []).append(DriftEntry(kind, subject, detail, operation))
    return records


@dataclass
class DryRun:
    """The result of a drift check over some hosts."""

    hosts: list[str]
    drift: dict[str, list[DriftEntry]] = field(default_factory=dict)  # host -> what differs
    not_checked: dict[str, str] = field(default_factory=dict)  # host -> why
    error: str | None = None  # the dry run itself failed or its output was unreadable

    @property
    def drifted(self) -> list[str]:
        return [h for h in self.hosts if self.drift.get(h)]

    @property
    def in_step(self) -> list[str]:
        if self.error:
            return []
        return [h for h in self.hosts if not self.drift.get(h) and h not in self.not_checked]

    @property
    def repair_would_fail(self) -> list[str]:
        return [h for h in self.drifted if any(e.kind == "invalid" for e in self.drift[h])]


def planned_changes(plan: list) -> dict[str, list[tuple[str, set[str]]]]:
    """host -> the operations (name, all its names) that list it in "hosts_with_change".
    "hosts_with_conditional_change" (operations behind `_if=`) is deliberately not read."""
    changes: dict[str, list[tuple[str, set[str]]]] = {}
    for op in plan:
        if not isinstance(op, dict):
            raise ValueError("an operation of the plan is not an object")
        for host in host_list(op, "hosts_with_change"):
            changes.setdefault(host, []).append((op_name(op), op_names(op)))
    return changes


def _explained(names: set[str], recorded: set[str]) -> bool:
    """Whether a record explains an operation: its `operation` is the operation's name or a
    part of it (a task records "Reload nginx" for "Reload nginx until it runs ...", and pyinfra
    prefixes names with the deploy's: "Configure nginx ... | Reload nginx ...")."""
    return any(text in name for text in recorded for name in names)


def parse_dry_run(hosts: Sequence[str], returncode: int, stdout: str, drift_text: str) -> DryRun:
    """Combine pyinfra's plan and the deploy's records. A host drifted when it has a record or
    an operation would change it; an operation no record explains is reported by its name."""
    result = DryRun(hosts=list(hosts))
    records = parse_drift_records(drift_text)
    errors = list(records.problems)
    payload = find_json_object(stdout)
    plan = payload.get("plan") if payload else None
    changes: dict[str, list[tuple[str, set[str]]]] = {}
    if not isinstance(plan, list):
        errors.insert(0, f"pyinfra exited {returncode} without its JSON plan")
    else:
        try:
            changes = planned_changes(plan)
        except ValueError as e:
            errors.insert(0, f"pyinfra's plan is unreadable ({e})")
    for host in hosts:
        entries = list(records.entries.get(host, []))
        recorded = {e.operation for e in entries if e.operation}
        for name, names in changes.get(host, []):
            if not _explained(names | {name}, recorded):
                detail = "would change something (no detail recorded)"
                entries.append(DriftEntry("operation", name, detail, name))
        if entries:
            result.drift[host] = entries
        if host not in records.checked:
            result.not_checked[host] = (
                "the deploy did not plan it (unreachable, or it failed before planning: see "
                "pyinfra's output above)"
            )
    if records.checked.isdisjoint(hosts) and isinstance(plan, list) and result.hosts:
        errors.append(
            f"no host was marked as checked in {DRIFT_FILE_ENV}: does this deploy.py write its "
            "drift records (tasks/drift.py)?"
        )
    if returncode != 0 and not errors and not result.not_checked:
        errors.append(f"pyinfra exited {returncode} (see its output above)")
    result.error = "; ".join(errors) or None
    return result


def _indented(text: str, prefix: str = "    ") -> list[str]:
    lines = text.rstrip("\n").splitlines() or ["(empty)"]
    if len(lines) > DIFF_LINES_SHOWN:
        hidden = len(lines) - DIFF_LINES_SHOWN
        lines = [*lines[:DIFF_LINES_SHOWN], f"... {hidden} more line(s) in drift-report.json"]
    return [prefix + line for line in lines]


def describe_entry(entry: DriftEntry) -> list[str]:
    """An entry as report lines: what differs first, then the evidence, indented."""
    if entry.kind == "invalid":
        return [f"  REPAIR WOULD FAIL VALIDATION ({entry.subject}):", *_indented(entry.detail)]
    if entry.kind == "operation":
        return [f"  operation '{entry.operation}' {entry.detail}"]
    if "\n" in entry.detail.rstrip("\n"):  # a diff: "differs", then the diff itself
        return [f"  {entry.kind} {entry.subject}: differs", *_indented(entry.detail)]
    return [f"  {entry.kind} {entry.subject}: {entry.detail.strip() or 'differs'}"]


def format_drift_report(
    dry: DryRun,
    *,
    title: str,
    command: Sequence[str] | None,
    now: datetime | None = None,
    shard: Shard | None = None,
    sources: Sequence[str] = (),
) -> str:
    """The text report. `command` is the dry run's (None for a report joined from `sources`,
    the shards' reports); `shard` adds which share of the proxies the report covers."""
    now = now or datetime.now(UTC)
    out = [f"{title} ({now:%Y-%m-%d %H:%M} UTC)"]
    if command is not None:
        out.append(f"Command: {DRIFT_FILE_ENV}=<temporary file> {shlex.join(command)}")
    if sources:
        out.append(f"Joined from: {', '.join(sources)}")
    if shard is not None:
        out.append(
            f"Shard: {shard} of the proxies (by EC2 instance id); `make drift-join` joins the "
            "shards' reports"
        )
    out += [f"Hosts: {len(dry.hosts)} ({', '.join(dry.hosts)})", ""]
    out += _result_lines(dry)
    for host in dry.drifted:
        entries = dry.drift[host]
        loud = " - REPAIR WOULD FAIL VALIDATION" if host in dry.repair_would_fail else ""
        out += ["", f"{host}: {len(entries)} difference(s){loud}"]
        for entry in entries:
            out += describe_entry(entry)
    out += _closing_lines(dry)
    return "\n".join(out) + "\n"


def _result_lines(dry: DryRun) -> list[str]:
    """The verdict, and the loud warning when a repair would fail validation."""
    drifted = dry.drifted
    if drifted:
        out = [
            f"RESULT: DRIFTED - {len(drifted)} of {len(dry.hosts)} hosts would be changed "
            "by the deploy."
        ]
    elif dry.error or dry.not_checked:
        out = ["RESULT: NOT CHECKED - the dry run did not cover every host (see below)."]
    else:
        out = ["RESULT: IN STEP - no host would be changed by the deploy."]
    if dry.repair_would_fail:
        out.append(
            f"REPAIR WOULD FAIL VALIDATION on {', '.join(dry.repair_would_fail)}: "
            "the desired configuration is refused by its checker; fix it before repairing."
        )
    return out


def _closing_lines(dry: DryRun) -> list[str]:
    """After the differences: hosts not checked, the dry run's error, hosts in step, and how
    to repair."""
    out: list[str] = []
    if dry.not_checked:
        out += ["", "Not checked:"]
        out += [f"  {h}: {why}" for h, why in dry.not_checked.items()]
    if dry.error:
        out += ["", f"The dry run failed: {dry.error}"]
    if dry.in_step:
        out += ["", f"In step: {', '.join(dry.in_step)}"]
    if dry.drifted:
        out += [
            "",
            "To repair: `make drift-repair` (or the drift:repair job) re-runs the deploy on the",
            "drifted hosts, in batches with the health gate, then checks them again.",
        ]
    return out


def drift_json(dry: DryRun, shard: Shard | None = None) -> dict:
    status = "drifted" if dry.drifted else ("error" if dry.error or dry.not_checked else "clean")
    return {
        "status": status,
        "hosts": dry.hosts,
        "drifted": {h: [e.as_json() for e in dry.drift[h]] for h in dry.drifted},
        "not_checked": dry.not_checked,
        "error": dry.error,
        "shard": {"index": shard.index, "total": shard.total} if shard else None,
    }


def _str_dict(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{what} is not an object of strings")
    return value


def dry_run_from_json(doc: object) -> tuple[DryRun, Shard | None]:
    """A drift-report.json read back (what `drift_json` wrote); ValueError when it is not one."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    hosts = doc.get("hosts")
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise ValueError('"hosts" is not a list of host names')
    drifted = doc.get("drifted") or {}
    if not isinstance(drifted, dict):
        raise ValueError('"drifted" is not an object')
    drift: dict[str, list[DriftEntry]] = {}
    for host, entries in drifted.items():
        if not isinstance(entries, list):
            raise ValueError(f'"drifted" of {host} is not a list')
        for entry in entries:
            fields = _str_dict(entry, f"a drift entry of {host}")
            drift.setdefault(host, []).append(
                DriftEntry(*(fields.get(k, "") for k in DRIFT_FIELDS))
            )
    not_checked = _str_dict(doc.get("not_checked") or {}, '"not_checked"')
    error = doc.get("error")
    if error is not None and not isinstance(error, str):
        raise ValueError('"error" is not a string')
    shard = None
    if doc.get("shard") is not None:
        raw = doc["shard"]
        index, total = (raw.get(k) if isinstance(raw, dict) else None for k in ("index", "total"))
        if not (isinstance(index, int) and isinstance(total, int) and 1 <= index <= total):
            raise ValueError(f'"shard" is not {{"index": I, "total": N}}: {raw!r}')
        shard = Shard(index, total)
    return DryRun(list(hosts), drift, dict(not_checked), error), shard


def drift_exit(dry: DryRun) -> int:
    if dry.drifted:
        return EXIT_DRIFT
    if dry.error or dry.not_checked:
        return EXIT_ERROR
    return EXIT_OK


SHARD_REPORT_GLOB = "{stem}-shard-*-of-*.json"


def read_shard_report(path: Path) -> tuple[DryRun, Shard]:
    try:
        dry, shard = dry_run_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise RolloutError(f"{path}: not a readable drift report ({e})") from None
    if shard is None:
        raise RolloutError(f'{path}: not a shard\'s drift report (its "shard" is null)')
    return dry, shard


def join_drift_reports(reports: Sequence[tuple[DryRun, Shard]]) -> tuple[DryRun, int, list[int]]:
    """The shards' dry runs as one over the whole fleet (hosts in name order, the inventory's),
    its shard count, and the shards without a report (in the joined run's error)."""
    totals = sorted({shard.total for _, shard in reports})
    if len(totals) != 1:
        raise RolloutError(
            "the reports come from different shard counts ("
            + ", ".join(str(shard) for _, shard in reports)
            + "): remove the ones left over from an earlier run"
        )
    total = totals[0]
    joined = DryRun(hosts=[])
    errors = []
    seen: set[int] = set()
    for dry, shard in sorted(reports, key=lambda r: r[1].index):
        if shard.index in seen:
            raise RolloutError(f"two reports of shard {shard}")
        seen.add(shard.index)
        joined.hosts += dry.hosts
        joined.drift.update(dry.drift)
        joined.not_checked.update(dry.not_checked)
        if dry.error:
            errors.append(f"shard {shard}: {dry.error}")
    missing = [i for i in range(1, total + 1) if i not in seen]
    errors += [f"shard {i}/{total} wrote no report (did its job stop before?)" for i in missing]
    joined.hosts.sort()
    joined.error = "; ".join(errors) or None
    return joined, total, missing
