"""Roll the deploy out to the proxies, check their health, detect and repair drift.

Used by the GitLab CI jobs (through the Makefile) and by people, with the same commands:

    python -m tools.rollout [deploy] [--canary HOST] [--batch-size N] [--dry] [--inventory PATH]
    python -m tools.rollout canary [--canary HOST]   one host (default: the first proxy), gated
    python -m tools.rollout fleet [--canary HOST]    the other proxies, in batches, after a canary
    python -m tools.rollout verify                   every proxy's health; deploys nothing
    python -m tools.rollout drift [--report FILE]    dry run: which host would change, and how
    python -m tools.rollout repair [--report FILE]   re-deploy the drifted proxies, check again

deploy = canary + fleet. Hosts come from `python -m inventories.aws --json` (docs/CONTRACTS.md: a
JSON list of {"name", "ssh_hostname", "groups", "data"} in host-name order), filtered to the
`proxies` group. Each batch is deployed with
`pyinfra -y --json INVENTORY deploy.py --limit HOST...`; then every host of the batch must pass
the health gate: GET http://<ssh_hostname>:80/healthz and /readyz answer 200 (nginx itself, then
a request through to the backend). The first host that fails its deploy or its gate stops the
rollout; hosts of later batches are left untouched.

Drift uses pyinfra's own structured output: `pyinfra --dry --json` prints one JSON object on stdout,
{"plan": [{"name", "hosts_with_change", "hosts_with_conditional_change", ...}], "results": null}.
A host drifted when an operation lists it in "hosts_with_change". "hosts_with_conditional_change"
is not drift: operations gated with `_if=` (e.g. "reload nginx if the config changed") are listed
there on every run. The dry run is made WITHOUT `-y`: with `-y` pyinfra skips change detection and
reports no change at all. Hosts that cannot be reached are missing from that JSON; they are found
in pyinfra's log ("[host] Could not connect (...)") and reported as not checked.

This module owns the order of hosts, the health gate and the reports. It leaves alone what is
deployed (deploy.py, tasks/) and which hosts exist (inventories/).

Settings (command-line option > environment variable > default):

    --inventory        PROXY_INVENTORY      inventories/aws.py
    --canary           CANARY_HOST          the first proxy of the inventory
    --batch-size       ROLLOUT_BATCH_SIZE   1      hosts deployed together after the canary
    --health-port      HEALTH_PORT          80
    --health-check     HEALTH_CHECKS        /healthz=200,/readyz=200   PATH=STATUS, all must pass
    --health-timeout   HEALTH_TIMEOUT       5      seconds per request
    --health-attempts  HEALTH_ATTEMPTS      6      tries before a host counts as unhealthy
    --health-interval  HEALTH_INTERVAL      5      seconds between tries
    --health-host      HEALTH_HOST          (the address)  Host header of the checks; set it to a
                                            served name when nginx's `server_names` is set (its
                                            catch-all server answers /healthz only)

Exit codes:
    0  done: every host deployed and healthy / all healthy / no drift
    1  a host failed its deploy or its health gate (the rollout stopped there) / a host is unhealthy
    2  bad usage or setting (the message names it), e.g. a canary that is not a proxy
    3  drift: a host would be changed by the deploy (after `repair`: still would)
    4  could not work: inventory unreadable or empty, pyinfra output unreadable, a host unreachable
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
EXIT_ERROR = 4

PROXY_GROUP = "proxies"
DEFAULT_INVENTORY = "inventories/aws.py"
DEFAULT_DEPLOY_FILE = "deploy.py"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
HEALTH_PORT = 80

ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OP_START_RE = re.compile(r"^--> Starting (?:[\w ,]+ )?operation: (?P<op>.*?)\s*$")
HOST_LINE_RE = re.compile(r"^\s*\[(?P<host>[^\]]+)\]\s+(?:nested\s+)?(?P<text>.*?)\s*$")
CONNECT_FAIL_RE = re.compile(r"^Could not connect(?: \((?P<why>.*)\))?$")
ERROR_RE = re.compile(r"^Error(?P<ignored> \(ignored[^)]*\))?(?::\s*(?P<why>.*))?$")
FATAL_RE = re.compile(r"^--> pyinfra error(?: in [^:]*)?: (?P<why>.*)$")


class RolloutError(Exception):
    """An error that ends the run with a message and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- Settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One health check: GET `path` must answer `status`."""

    path: str
    status: int


DEFAULT_CHECKS = (Check(HEALTH_PATH, 200), Check(READY_PATH, 200))


@dataclass(frozen=True)
class Settings:
    """Every setting of a run, validated; built once by `settings_from`."""

    inventory: str = DEFAULT_INVENTORY
    deploy_file: str = DEFAULT_DEPLOY_FILE
    group: str = PROXY_GROUP
    canary: str | None = None
    batch_size: int = 1
    health_port: int = HEALTH_PORT
    health_checks: tuple[Check, ...] = DEFAULT_CHECKS
    health_timeout: float = 5.0
    health_attempts: int = 6
    health_interval: float = 5.0
    health_host: str | None = None
    dry: bool = False
    report: Path | None = None
    pyinfra: tuple[str, ...] = (sys.executable, "-m", "pyinfra")


# (Settings field, command-line option, environment variable)
_SETTING_SOURCES: tuple[tuple[str, str, str | None], ...] = (
    ("inventory", "--inventory", "PROXY_INVENTORY"),
    ("canary", "--canary", "CANARY_HOST"),
    ("batch_size", "--batch-size", "ROLLOUT_BATCH_SIZE"),
    ("health_port", "--health-port", "HEALTH_PORT"),
    ("health_checks", "--health-check", "HEALTH_CHECKS"),
    ("health_timeout", "--health-timeout", "HEALTH_TIMEOUT"),
    ("health_attempts", "--health-attempts", "HEALTH_ATTEMPTS"),
    ("health_interval", "--health-interval", "HEALTH_INTERVAL"),
    ("health_host", "--health-host", "HEALTH_HOST"),
)


def _positive_int(key: str, value: str, maximum: int | None = None) -> int:
    allowed = f"an integer from 1 to {maximum}" if maximum else "an integer of 1 or more"
    try:
        number = int(value)
    except ValueError:
        raise RolloutError(f"{key}={value!r}: expected {allowed}", EXIT_USAGE) from None
    if number < 1 or (maximum is not None and number > maximum):
        raise RolloutError(f"{key}={value!r}: expected {allowed}", EXIT_USAGE)
    return number


def _positive_float(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise RolloutError(f"{key}={value!r}: expected a number of seconds above 0", EXIT_USAGE)
    return number


def parse_checks(key: str, value: str) -> tuple[Check, ...]:
    """Parse "PATH=STATUS,PATH=STATUS" (e.g. "/healthz=200,/readyz=200")."""
    checks = []
    for item in (part.strip() for part in value.split(",")):
        path, sep, status = item.partition("=")
        if not sep or not path.startswith("/") or not status.isdigit():
            raise RolloutError(
                f"{key}={value!r}: expected PATH=STATUS[,PATH=STATUS...], e.g. /healthz=200",
                EXIT_USAGE,
            )
        code = int(status)
        if not 100 <= code <= 599:
            raise RolloutError(f"{key}={value!r}: status {code} is not an HTTP status", EXIT_USAGE)
        checks.append(Check(path, code))
    return tuple(checks)


def _convert(name: str, key: str, value: str) -> object:
    if name in ("inventory", "canary", "health_host"):
        if not value.strip():
            raise RolloutError(f"{key}={value!r}: must not be empty", EXIT_USAGE)
        return value.strip()
    if name == "batch_size":
        return _positive_int(key, value)
    if name == "health_port":
        return _positive_int(key, value, maximum=65535)
    if name == "health_checks":
        return parse_checks(key, value)
    if name == "health_attempts":
        return _positive_int(key, value)
    return _positive_float(key, value)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Build the settings: a command-line option wins over its environment variable; an empty
    environment variable counts as unset (CI passes unset variables as empty strings)."""
    values: dict[str, object] = {}
    for name, option, env in _SETTING_SOURCES:
        given = getattr(args, name)
        if isinstance(given, list):  # --health-check may be repeated
            given = ",".join(given) if given else None
        if given is not None:
            values[name] = _convert(name, option, given)
        elif env and environ.get(env, "").strip():
            values[name] = _convert(name, env, environ[env])
    values["dry"] = args.dry
    values["report"] = Path(args.report) if args.report else None
    values["deploy_file"] = args.deploy_file
    if args.pyinfra:
        values["pyinfra"] = tuple(shlex.split(args.pyinfra))
    return Settings(**values)


# --- Hosts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # ssh_hostname: where SSH and the health checks go


def inventory_module(path: str) -> str:
    """`inventories/aws.py` -> `inventories.aws` (run as `python -m inventories.aws --json`)."""
    p = Path(path)
    if p.suffix != ".py" or p.is_absolute() or ".." in p.parts:
        raise RolloutError(
            f"--inventory={path!r}: expected a relative path to a Python inventory module, "
            "e.g. inventories/aws.py",
            EXIT_USAGE,
        )
    return ".".join(p.with_suffix("").parts)


def parse_inventory_json(text: str, group: str = PROXY_GROUP) -> list[Host]:
    """Hosts of `group` from the inventory's --json output, in the inventory's order."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise RolloutError(f"inventory printed no JSON list ({e})") from None
    if not isinstance(entries, list):
        raise RolloutError("inventory JSON is not a list of hosts")
    hosts = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RolloutError(f"inventory entry {i} has no host name: {entry!r}")
        groups = entry.get("groups") or []
        if group not in groups:
            continue
        address = entry.get("ssh_hostname") or (entry.get("data") or {}).get("ssh_hostname")
        if not isinstance(address, str) or not address:
            raise RolloutError(f"inventory host {entry['name']} has no ssh_hostname")
        hosts.append(Host(entry["name"], address))
    names = [h.name for h in hosts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RolloutError(f"inventory lists these hosts twice: {', '.join(duplicates)}")
    return hosts


def load_hosts(settings: Settings) -> list[Host]:
    module = inventory_module(settings.inventory)
    cmd = [sys.executable, "-m", module, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode == 0 and proc.stderr.strip():
        sys.stderr.write(proc.stderr)  # the inventory's warnings
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RolloutError(f"`{shlex.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    hosts = parse_inventory_json(proc.stdout, settings.group)
    if not hosts:
        raise RolloutError(
            f"the inventory has no host in group {settings.group!r} "
            "(check ENVIRONMENT, EC2_INVENTORY_REGIONS and the instances' tags)"
        )
    return hosts


def pick_canary(hosts: Sequence[Host], name: str | None) -> Host:
    """The named host, or the first one when no name is given."""
    if not name:
        return hosts[0]
    for host in hosts:
        if host.name == name:
            return host
    raise RolloutError(
        f"canary host {name!r} is not a proxy in the inventory; proxies: "
        + ", ".join(h.name for h in hosts),
        EXIT_USAGE,
    )


def chunk(items: Sequence[T], size: int) -> list[list[T]]:
    if size < 1:
        raise ValueError("batch size must be 1 or more")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def plan_batches(
    hosts: Sequence[Host], canary: Host, batch_size: int, *, with_canary: bool = True
) -> list[list[Host]]:
    """The canary alone first (if `with_canary`), then the other hosts in inventory order."""
    rest = [h for h in hosts if h != canary]
    return ([[canary]] if with_canary else []) + chunk(rest, batch_size)


# --- Health gate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    attempts: int
    details: tuple[str, ...]  # one line per check of the last attempt


def url_for(address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{path}"


def probe(
    address: str, port: int, check: Check, timeout: float, host_header: str | None = None
) -> tuple[bool, str]:
    """One GET; no redirect followed, no proxy from the environment. Returns (ok, what happened)."""
    url = url_for(address, port, check.path)
    headers = {"User-Agent": "rollout-health-gate"}
    if host_header:
        headers["Host"] = host_header
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", check.path, headers=headers)
        status = conn.getresponse().status
    except TimeoutError:
        return False, f"GET {url}: no answer within {timeout:g} s"
    except OSError as e:
        return False, f"GET {url}: {e.strerror or e}"
    except http.client.HTTPException as e:
        return False, f"GET {url}: bad HTTP answer ({type(e).__name__})"
    finally:
        conn.close()
    if status != check.status:
        return False, f"GET {url} answered {status}, expected {check.status}"
    return True, f"GET {url} answered {status}"


ProbeFn = Callable[[str, int, Check, float, str | None], tuple[bool, str]]


def health_gate(
    host: Host,
    settings: Settings,
    *,
    probe_fn: ProbeFn = probe,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthResult:
    """Every check must pass in the same attempt; up to `health_attempts` attempts."""
    details: tuple[str, ...] = ()
    for attempt in range(1, settings.health_attempts + 1):
        results = [
            probe_fn(
                host.address,
                settings.health_port,
                check,
                settings.health_timeout,
                settings.health_host,
            )
            for check in settings.health_checks
        ]
        details = tuple(text for _, text in results)
        if all(ok for ok, _ in results):
            return HealthResult(True, attempt, details)
        if attempt < settings.health_attempts:
            sleep(settings.health_interval)
    failing = tuple(text for ok, text in results if not ok)
    return HealthResult(False, settings.health_attempts, failing)


# --- Reading pyinfra's output ---------------------------------------------------------------------


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


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


@dataclass
class LogFacts:
    """What pyinfra's log (stderr) says went wrong, per host."""

    unreachable: dict[str, str] = field(default_factory=dict)  # host -> reason
    op_errors: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # host -> (op, lines)
    fatal: str | None = None  # "--> pyinfra error: ..."

    def describe_error(self, host: str) -> str:
        op, why = self.op_errors[host]
        detail = f": {' / '.join(why)}" if why else ""
        if not op:
            return f"failed before any operation ran{detail}"
        return f"operation '{op}' failed{detail}"


def parse_log(lines: Sequence[str]) -> LogFacts:
    facts = LogFacts()
    current_op = ""
    recent: dict[str, list[str]] = {}  # host -> its lines in the current operation
    for raw in lines:
        line = strip_ansi(raw).rstrip()
        if m := OP_START_RE.match(line):
            current_op, recent = m["op"], {}
            continue
        if m := FATAL_RE.match(line):
            facts.fatal = m["why"]
            continue
        m = HOST_LINE_RE.match(line)
        if not m:
            continue
        host, text = m["host"], m["text"]
        if c := CONNECT_FAIL_RE.match(text):
            facts.unreachable[host] = c["why"] or "could not connect"
            continue
        e = ERROR_RE.match(text)
        if e and not e["ignored"]:
            if host not in facts.op_errors:  # the first failure is the one that stopped the host
                output = recent.get(host, [])[-3:]
                why = [w for w in [*output, e["why"] or ""] if w]
                facts.op_errors[host] = (current_op, why)
            continue
        recent.setdefault(host, []).append(text)
    return facts


def deploy_failures(
    hosts: Sequence[str], returncode: int, stdout: str, log_lines: Sequence[str]
) -> dict[str, str]:
    """What failed on each host of a deploy batch (hosts that went well are absent).

    pyinfra's JSON results are the first source; when every host failed pyinfra stops with
    "No hosts remaining!" before printing them, so its log is read as well.
    """
    payload = find_json_object(stdout)
    results = payload.get("results") if payload else None
    facts = parse_log(log_lines)
    json_failed: set[str] = set()
    json_errors: dict[str, list[str]] = {}
    touched: set[str] = set()
    if isinstance(results, dict):
        json_failed = set(results.get("failed_hosts") or [])
        for op in results.get("operations") or []:
            for key in ("success", "no_change", "error"):
                touched.update(op.get(key) or [])
            for host in op.get("error") or []:
                json_errors.setdefault(host, []).append(op.get("name", "?"))

    failures: dict[str, str] = {}
    for host in hosts:
        if host in facts.unreachable:
            failures[host] = f"could not connect ({facts.unreachable[host]})"
        elif host in facts.op_errors:
            failures[host] = facts.describe_error(host)
        elif host in json_errors:
            failures[host] = f"operation '{json_errors[host][0]}' failed"
        elif host in json_failed:
            failures[host] = "pyinfra marked the host as failed (see its output above)"
        elif isinstance(results, dict) and host not in touched:
            failures[host] = (
                "pyinfra ran nothing on it (is it in the inventory pyinfra loaded?) "
                "(see its output above)"
            )
    if returncode != 0 and not failures:
        why = facts.fatal or "see its output above"
        failures = {host: f"pyinfra exited {returncode} ({why})" for host in hosts}
    elif not isinstance(results, dict) and not failures:
        failures = {host: "pyinfra printed no results (see its output above)" for host in hosts}
    return failures


@dataclass
class DryRun:
    """The result of `pyinfra --dry --json` over some hosts."""

    hosts: list[str]
    changes: dict[str, list[str]] = field(default_factory=dict)  # host -> operations
    conditional: dict[str, list[str]] = field(default_factory=dict)
    not_checked: dict[str, str] = field(default_factory=dict)  # host -> why (unreachable, ...)
    error: str | None = None  # the dry run itself failed

    @property
    def drifted(self) -> list[str]:
        return [h for h in self.hosts if self.changes.get(h)]

    @property
    def in_step(self) -> list[str]:
        return [
            h
            for h in self.hosts
            if not self.changes.get(h) and h not in self.not_checked and not self.error
        ]


def parse_dry_run(
    hosts: Sequence[str], returncode: int, stdout: str, log_lines: Sequence[str]
) -> DryRun:
    result = DryRun(hosts=list(hosts))
    facts = parse_log(log_lines)
    for host in hosts:
        if host in facts.unreachable:
            result.not_checked[host] = f"could not connect ({facts.unreachable[host]})"
        elif host in facts.op_errors:
            result.not_checked[host] = facts.describe_error(host)
    payload = find_json_object(stdout)
    if payload is None or not isinstance(payload.get("plan"), list):
        why = facts.fatal or f"pyinfra exited {returncode} without its JSON plan"
        result.error = why
        return result
    for op in payload["plan"]:
        name = op.get("name") or ", ".join(op.get("names") or []) or op.get("op_hash", "?")
        for host in op.get("hosts_with_change") or []:
            result.changes.setdefault(host, []).append(name)
        for host in op.get("hosts_with_conditional_change") or []:
            result.conditional.setdefault(host, []).append(name)
    if returncode != 0 and not result.not_checked:
        result.error = facts.fatal or f"pyinfra exited {returncode} (see its output above)"
    return result


def format_drift_report(
    dry: DryRun, *, title: str, command: Sequence[str], now: datetime | None = None
) -> str:
    now = now or datetime.now(UTC)
    out = [
        f"{title} ({now:%Y-%m-%d %H:%M} UTC)",
        f"Command: {shlex.join(command)}",
        f"Hosts: {len(dry.hosts)} ({', '.join(dry.hosts)})",
        "",
    ]
    drifted = dry.drifted
    if drifted:
        out.append(
            f"RESULT: DRIFTED - {len(drifted)} of {len(dry.hosts)} hosts would be changed "
            "by the deploy."
        )
    elif dry.error or dry.not_checked:
        out.append("RESULT: NOT CHECKED - the dry run did not cover every host (see below).")
    else:
        out.append("RESULT: IN STEP - no host would be changed by the deploy.")
    for host in drifted:
        ops = dry.changes[host]
        out += ["", f"{host}: {len(ops)} operation(s) would change something"]
        out += [f"  - {op}" for op in ops]
        if dry.conditional.get(host):
            out.append("  and, because of those, possibly:")
            out += [f"  - {op}" for op in dry.conditional[host]]
    if dry.not_checked:
        out += ["", "Not checked:"]
        out += [f"  {h}: {why}" for h, why in dry.not_checked.items()]
    if dry.error:
        out += ["", f"The dry run failed: {dry.error}"]
    if dry.in_step:
        out += ["", f"In step: {', '.join(dry.in_step)}"]
    if drifted:
        out += [
            "",
            "To repair: `make drift-repair` (or the drift:repair job) re-runs the deploy on the",
            "drifted hosts, one batch at a time with the health gate, then checks them again.",
        ]
    return "\n".join(out) + "\n"


def drift_json(dry: DryRun) -> dict:
    status = "drifted" if dry.drifted else ("error" if dry.error or dry.not_checked else "clean")
    return {
        "status": status,
        "hosts": dry.hosts,
        "drifted": {h: dry.changes[h] for h in dry.drifted},
        "not_checked": dry.not_checked,
        "error": dry.error,
    }


# --- Running pyinfra ------------------------------------------------------------------------------


def run_streaming(cmd: Sequence[str]) -> tuple[int, str, list[str]]:
    """Run `cmd`; its stderr (pyinfra's log) goes on to ours as it comes and is also kept."""
    env = {**os.environ, "PYINFRA_PROGRESS": "off"}
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout_parts: list[str] = []
    reader = threading.Thread(target=lambda: stdout_parts.append(proc.stdout.read()), daemon=True)
    reader.start()
    lines = []
    for line in proc.stderr:
        sys.stderr.write(line)
        lines.append(line.rstrip("\n"))
    reader.join()
    return proc.wait(), "".join(stdout_parts), lines


def deploy_command(settings: Settings, hosts: Sequence[str]) -> list[str]:
    limits = [arg for h in hosts for arg in ("--limit", h)]
    return [*settings.pyinfra, "-y", "--json", settings.inventory, settings.deploy_file, *limits]


def dry_run_command(settings: Settings, limits: Sequence[str]) -> list[str]:
    # No -y here: with -y pyinfra skips change detection and every host looks in step.
    args = [arg for name in limits for arg in ("--limit", name)]
    return [*settings.pyinfra, "--dry", "--json", settings.inventory, settings.deploy_file, *args]


def pyinfra_deploy(settings: Settings, hosts: Sequence[Host]) -> dict[str, str]:
    names = [h.name for h in hosts]
    rc, stdout, lines = run_streaming(deploy_command(settings, names))
    return deploy_failures(names, rc, stdout, lines)


def pyinfra_dry_run(settings: Settings, hosts: Sequence[Host], limits: Sequence[str]) -> DryRun:
    rc, stdout, lines = run_streaming(dry_run_command(settings, limits))
    return parse_dry_run([h.name for h in hosts], rc, stdout, lines)


# --- The rollout ----------------------------------------------------------------------------------


@dataclass
class RolloutResult:
    healthy: list[str] = field(default_factory=list)  # deployed and through the gate
    failed_host: str | None = None
    reason: str = ""
    unchecked: list[str] = field(default_factory=list)  # deployed in the failed batch, not gated
    untouched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed_host is None

    def abort_message(self) -> str:
        lines = [
            f"ROLLOUT ABORTED at {self.failed_host}: {self.reason}",
            f"  deployed and healthy: {', '.join(self.healthy) or '-'}",
        ]
        if self.unchecked:
            lines.append(f"  deployed in the same batch, not checked: {', '.join(self.unchecked)}")
        lines.append(f"  untouched: {', '.join(self.untouched) or '-'}")
        return "\n".join(lines)


DeployFn = Callable[[Sequence[Host]], dict[str, str]]
GateFn = Callable[[Host], HealthResult]


def roll_out(
    batches: Sequence[Sequence[Host]],
    *,
    deploy: DeployFn,
    gate: GateFn,
    log: Callable[[str], None] = print,
) -> RolloutResult:
    """Deploy batch by batch; after each batch every host must pass the gate, in order.
    Stops at the first failure: later batches are not touched."""
    result = RolloutResult()
    for index, batch in enumerate(batches):
        names = [h.name for h in batch]
        later = [h.name for b in batches[index + 1 :] for h in b]
        log(f"==> batch {index + 1}/{len(batches)}: deploying {', '.join(names)}")
        failures = deploy(batch)
        failed = [h.name for h in batch if h.name in failures]
        if failed:
            result.failed_host = failed[0]
            result.reason = f"deploy failed: {failures[failed[0]]}"
            result.reason += "".join(f"; {h} also failed: {failures[h]}" for h in failed[1:])
            result.unchecked = [h.name for h in batch if h.name not in failures]
            result.untouched = later
            return result
        for position, host in enumerate(batch):
            health = gate(host)
            if not health.ok:
                result.failed_host = host.name
                result.reason = (
                    f"health gate failed after {health.attempts} attempt(s): "
                    + "; ".join(health.details)
                )
                result.unchecked = [h.name for h in batch[position + 1 :]]
                result.untouched = later
                return result
            log(f"    {host.name}: healthy ({'; '.join(health.details)})")
            result.healthy.append(host.name)
    return result


class Output:
    """Prints as it goes and keeps the lines for --report."""

    def __init__(self, report: Path | None) -> None:
        self.report = report
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def error(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        self.lines.extend(text.splitlines())

    def write(self) -> None:
        if self.report:
            self.report.write_text("\n".join(self.lines) + "\n")


def _describe_plan(settings: Settings, batches: Sequence[Sequence[Host]], out: Output) -> None:
    out("Dry: nothing is deployed. The rollout would run, stopping at the first failure:")
    for i, batch in enumerate(batches, 1):
        out(f"  batch {i}: {shlex.join(deploy_command(settings, [h.name for h in batch]))}")
        for host in batch:
            checks = ", ".join(
                f"{url_for(host.address, settings.health_port, c.path)} -> {c.status}"
                for c in settings.health_checks
            )
            out(f"    then gate {host.name}: {checks}")


def _finish_rollout(result: RolloutResult, out: Output) -> int:
    if result.ok:
        out(f"ROLLOUT DONE: deployed and healthy: {', '.join(result.healthy) or '-'}")
        return EXIT_OK
    out.error(result.abort_message())
    return EXIT_FAILED


@dataclass
class Actions:
    """The side effects, replaceable in tests."""

    load_hosts: Callable[[Settings], list[Host]] = load_hosts
    deploy: Callable[[Settings, Sequence[Host]], dict[str, str]] = pyinfra_deploy
    dry_run: Callable[[Settings, Sequence[Host], Sequence[str]], DryRun] = pyinfra_dry_run
    gate: Callable[[Host, Settings], HealthResult] = lambda host, s: health_gate(host, s)


def cmd_rollout(mode: str, settings: Settings, actions: Actions, out: Output) -> int:
    hosts = actions.load_hosts(settings)
    canary = pick_canary(hosts, settings.canary)
    if mode == "canary":
        batches = [[canary]]
    else:
        batches = plan_batches(hosts, canary, settings.batch_size, with_canary=(mode == "deploy"))
    out(f"{mode}: {len(hosts)} proxies, canary {canary.name}, batch size {settings.batch_size}")
    if settings.dry:
        if mode == "fleet":
            out(f"  first: gate the canary {canary.name} (it must already be healthy)")
        _describe_plan(settings, batches, out)
        return EXIT_OK
    if mode == "fleet":
        health = actions.gate(canary, settings)
        if not health.ok:
            result = RolloutResult(
                failed_host=canary.name,
                reason="the canary is not healthy, so the fleet is not started: "
                + "; ".join(health.details),
                untouched=[h.name for b in batches for h in b],
            )
            return _finish_rollout(result, out)
        out(f"canary {canary.name} is healthy; rolling out to the rest")
        if not batches:
            out("no other proxy to deploy")
    result = roll_out(
        batches,
        deploy=lambda batch: actions.deploy(settings, batch),
        gate=lambda host: actions.gate(host, settings),
        log=out,
    )
    return _finish_rollout(result, out)


def cmd_verify(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = actions.load_hosts(settings)
    unhealthy = []
    for host in hosts:
        health = actions.gate(host, settings)
        state = "healthy" if health.ok else "UNHEALTHY"
        out(f"{host.name}: {state}: {'; '.join(health.details)}")
        if not health.ok:
            unhealthy.append(host.name)
    if unhealthy:
        out(f"VERIFY FAILED: unhealthy: {', '.join(unhealthy)}")
        return EXIT_FAILED
    out(f"VERIFY OK: {len(hosts)} proxies healthy")
    return EXIT_OK


def _write_drift_report(settings: Settings, dry: DryRun, text: str) -> None:
    if settings.report:
        settings.report.write_text(text)
        settings.report.with_suffix(".json").write_text(
            json.dumps(drift_json(dry), indent=2) + "\n"
        )


def _drift_exit(dry: DryRun) -> int:
    if dry.drifted:
        return EXIT_DRIFT
    if dry.error or dry.not_checked:
        return EXIT_ERROR
    return EXIT_OK


def cmd_drift(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = actions.load_hosts(settings)
    dry = actions.dry_run(settings, hosts, [settings.group])
    text = format_drift_report(
        dry, title="Drift report", command=dry_run_command(settings, [settings.group])
    )
    out(text.rstrip("\n"))
    _write_drift_report(settings, dry, text)
    return _drift_exit(dry)


def cmd_repair(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = actions.load_hosts(settings)
    before = actions.dry_run(settings, hosts, [settings.group])
    report = format_drift_report(
        before, title="Drift before repair", command=dry_run_command(settings, [settings.group])
    )
    out(report.rstrip("\n"))
    drifted = [h for h in hosts if h.name in before.drifted]
    if before.error:
        _write_drift_report(settings, before, report)
        return EXIT_ERROR
    if not drifted:
        out("Nothing to repair.")
        _write_drift_report(settings, before, report)
        return _drift_exit(before)
    batches = plan_batches(drifted, drifted[0], settings.batch_size)
    if settings.dry:
        _describe_plan(settings, batches, out)
        _write_drift_report(settings, before, report)
        return EXIT_DRIFT
    result = roll_out(
        batches,
        deploy=lambda batch: actions.deploy(settings, batch),
        gate=lambda host: actions.gate(host, settings),
        log=out,
    )
    code = _finish_rollout(result, out)
    if code != EXIT_OK:
        _write_drift_report(settings, before, report + "\n" + result.abort_message() + "\n")
        return code
    names = [h.name for h in drifted]
    after = actions.dry_run(settings, drifted, names)
    after_text = format_drift_report(
        after, title="Drift after repair", command=dry_run_command(settings, names)
    )
    out(after_text.rstrip("\n"))
    if after.drifted:
        out(
            "STILL DRIFTED right after the deploy: those operations report a change on every run "
            "(not idempotent); fix them in tasks/."
        )
    _write_drift_report(settings, after, report + "\n" + after_text)
    if after.drifted or after.error:
        return _drift_exit(after)
    return EXIT_ERROR if before.not_checked else EXIT_OK


# --- Command line ---------------------------------------------------------------------------------

MODES = ("deploy", "canary", "fleet", "verify", "drift", "repair")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.rollout",
        description="Canary-first, health-gated rollout of deploy.py to the proxies; "
        "verify; drift detection and repair.",
        epilog="Exit codes: 0 ok, 1 a host failed (rollout stopped), 2 bad usage, "
        "3 drift, 4 could not work (inventory, pyinfra, unreachable host).",
    )
    parser.add_argument("mode", nargs="?", default="deploy", choices=MODES, help="default: deploy")
    parser.add_argument("--inventory", help=f"pyinfra inventory (default {DEFAULT_INVENTORY})")
    parser.add_argument("--canary", help="canary host name (default: the first proxy)")
    parser.add_argument("--batch-size", help="hosts per batch after the canary (default 1)")
    parser.add_argument("--dry", action="store_true", help="print the plan; deploy nothing")
    parser.add_argument("--report", help="also write the output (drift: the report) to FILE")
    parser.add_argument("--health-port", help=f"port of the health checks (default {HEALTH_PORT})")
    parser.add_argument(
        "--health-check",
        dest="health_checks",
        action="append",
        help="PATH=STATUS, repeatable (default /healthz=200 and /readyz=200)",
    )
    parser.add_argument("--health-timeout", help="seconds per request (default 5)")
    parser.add_argument("--health-attempts", help="tries before a host is unhealthy (default 6)")
    parser.add_argument("--health-interval", help="seconds between tries (default 5)")
    parser.add_argument("--health-host", help="Host header of the checks (default: the address)")
    parser.add_argument("--deploy-file", default=DEFAULT_DEPLOY_FILE, help=argparse.SUPPRESS)
    parser.add_argument("--pyinfra", help="pyinfra command (default: this Python's -m pyinfra)")
    return parser


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    actions: Actions | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    actions = actions or Actions()
    try:
        settings = settings_from(args, os.environ if environ is None else environ)
        out = Output(settings.report if args.mode not in ("drift", "repair") else None)
        if args.mode in ("deploy", "canary", "fleet"):
            code = cmd_rollout(args.mode, settings, actions, out)
        elif args.mode == "verify":
            code = cmd_verify(settings, actions, out)
        elif args.mode == "drift":
            code = cmd_drift(settings, actions, out)
        else:
            code = cmd_repair(settings, actions, out)
        out.write()
        return code
    except RolloutError as e:
        print(f"rollout: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
