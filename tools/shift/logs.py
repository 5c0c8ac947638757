"""The proxies' access logs over SSH, read by window, as samples for the judge.

Owns: which proxies belong to each group (the target group's targets matched to the inventory's
proxies), one SSH connection per proxy for the whole shift, and reading only the lines written
since a mark (`tail -c +N`). Leaves alone: what a log line means (report.parse and
report.analyze decide), how the proxies are reached (report.sources: DEPLOY_SSH_KEY,
DEPLOY_SSH_KNOWN_HOSTS, EC2_INVENTORY_BASTION).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tools.shift.elb import Elb, RuleGroups
from tools.shift.errors import ShiftError, UsageError
from tools.shift.judge import Sample


def sample_of(line: bytes | str) -> tuple[datetime, Sample] | None:
    """One access-log line -> (its time, its Sample); None for a blocked request or a line that
    is not a request (report.parse decides what a line means)."""
    from report.analyze import classify
    from report.parse import MalformedLine, parse_line

    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if not text.strip():
        return None
    try:
        entry = parse_line(text)
        seconds = float(json.loads(text).get("request_time") or 0.0)
    except (MalformedLine, ValueError, TypeError):
        return None
    outcome = classify(entry)
    if outcome.blocked:
        return None
    first_failed = None if outcome.first_ok is None else not outcome.first_ok
    return entry.time, Sample(outcome.client_ok, first_failed, seconds)


def in_window(lines: Iterable[bytes | str], start: datetime, end: datetime) -> list[Sample]:
    """Samples of the lines logged from START (included) to END (excluded); nginx logs whole
    seconds, so the bounds are whole seconds too."""
    out = []
    for line in lines:
        found = sample_of(line)
        if found and start <= found[0] < end:
            out.append(found[1])
    return out


class RemoteLog:
    """One proxy's access log over SSH (one connection for the whole shift): its size now, and
    the lines written since a given size (`tail -c +N`; a log that shrank was rotated: all of it).
    Connection as report.sources reaches the proxies (DEPLOY_SSH_KEY, DEPLOY_SSH_KNOWN_HOSTS,
    unknown host keys refused, EC2_INVENTORY_BASTION)."""

    def __init__(self, target: Any, auth: Any, log_path: str) -> None:
        self.name = target.name
        self.log_path = log_path
        self._target, self._auth = target, auth
        self._client: Any = None
        self._jump: Any = None

    def _connect(self) -> Any:
        """The proxy's client, logged in on first use (report.sources.connect_proxy)."""
        from report.sources import SourceError, connect_proxy

        if self._client is None:
            t = self._target
            try:
                self._client, self._jump = connect_proxy(t, self._auth)
            except SourceError as e:
                where = f"{self.name} ({t.hostname}:{t.port})"
                raise ShiftError(f"cannot reach {where} over SSH: {e}") from None
        return self._client

    def _run(self, command: str) -> Iterable[bytes]:
        import paramiko

        try:
            channel = self._connect().get_transport().open_session(timeout=10)
            channel.settimeout(60)
            channel.exec_command(command)
            yield from channel.makefile("rb")
            status = channel.recv_exit_status()
            errors = channel.makefile_stderr("rb").read().decode("utf-8", "replace").strip()
        except (OSError, paramiko.SSHException) as e:
            raise ShiftError(f"{self.name}: `{command}` failed ({e})") from None
        if status != 0:
            raise ShiftError(f"{self.name}: `{command}` exited {status}: {errors or 'no message'}")

    def size(self) -> int:
        out = b"".join(self._run(f"sudo -n stat -c %s -- {shlex.quote(self.log_path)}"))
        return int(out.strip() or 0)

    def lines_since(self, offset: int) -> Iterable[bytes]:
        path = shlex.quote(self.log_path)
        size = self.size()
        start = offset + 1 if size >= offset else 1  # shrank: rotated, read the new file whole
        return self._run(f"sudo -n tail -c +{start} -- {path}")

    def close(self) -> None:
        for c in (self._client, self._jump):
            if c is not None:
                c.close()
        self._client = self._jump = None


@dataclass
class Fleet:
    """The proxies of each group, with their logs."""

    logs: dict[str, list[RemoteLog]]  # group -> logs of its proxies

    def marks(self) -> dict[str, int]:
        return {log.name: log.size() for logs in self.logs.values() for log in logs}

    def samples(
        self, group: str, marks: Mapping[str, int], start: datetime, end: datetime
    ) -> list[Sample]:
        out: list[Sample] = []
        for log in self.logs[group]:
            out += in_window(log.lines_since(marks[log.name]), start, end)
        return out

    def close(self) -> None:
        for logs in self.logs.values():
            for log in logs:
                log.close()


def _inventory_proxies(environ: Mapping[str, str]) -> tuple[Any, list[Any], list[Any]]:
    """(SSH auth, the inventory's proxy hosts, their SSH targets), as report.sources has them."""
    from inventories.errors import InventoryError
    from inventories.loader import load_inventory
    from inventories.settings import PROXY_GROUP, InventorySettings
    from report.sources import JumpHost, proxy_targets, ssh_auth_from_env
    from report.sources import UsageError as ReportUsage

    try:
        auth = ssh_auth_from_env(environ)
        settings = InventorySettings.from_environ(environ)
        inventory = load_inventory(settings)
    except ReportUsage as e:
        raise UsageError(str(e)) from None
    except InventoryError as e:
        raise UsageError(f"inventory: {e}") from None
    jump = None
    if settings.bastion is not None:
        b = settings.bastion
        jump = JumpHost(b.host, b.port, b.user, settings.bastion_key)
    hosts = [h for h in inventory.hosts if PROXY_GROUP in h.groups]
    return auth, hosts, proxy_targets(hosts, group=PROXY_GROUP, jump=jump)


def load_fleet(elb: Elb, rule: RuleGroups, environ: Mapping[str, str], log_path: str) -> Fleet:
    """Each group's proxies: the target group's targets matched to the inventory's proxies by
    instance id (or private address); every log must answer before anything moves."""
    auth, hosts, proxy_targets = _inventory_proxies(environ)
    by_key = {}
    for host in hosts:
        for key in ("ec2_instance_id", "ec2_private_ip", "ssh_hostname"):
            if host.data.get(key):
                by_key[str(host.data[key])] = host
    targets = {t.name: t for t in proxy_targets}
    logs: dict[str, list[RemoteLog]] = {}
    for group, arn in rule.arn_of.items():
        members = [by_key.get(target) for target in elb.targets(arn)]
        if any(m is None for m in members):
            missing = [t for t, m in zip(elb.targets(arn), members, strict=True) if m is None]
            raise UsageError(
                f"target group of {group}: {', '.join(missing)} not among the inventory's "
                "proxies (check ENVIRONMENT and EC2_INVENTORY_*)"
            )
        logs[group] = [
            RemoteLog(targets[m.name], auth, log_path)
            for m in sorted(members, key=lambda m: m.name)
        ]
    return Fleet(logs)
