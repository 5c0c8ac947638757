"""Roll the deploy out to the proxies, check their health, detect and repair drift.

Used by the GitLab CI jobs (through the Makefile) and by people, with the same commands:

    python -m tools.rollout [deploy] [--canary HOST] [--batches LIST] [--max-fail-percent P] [--dry]
    python -m tools.rollout canary [--canary HOST]   one host (default: the first proxy), gated
    python -m tools.rollout fleet [--canary HOST]    the other proxies, in batches, after a canary
    python -m tools.rollout verify                   every proxy's health; deploys nothing
    python -m tools.rollout drift [--report FILE]    dry run: which host would change, and how
    python -m tools.rollout repair [--report FILE]   re-deploy the drifted proxies, check again
    python -m tools.rollout join-drift [--report FILE]   the shards' drift reports as one (below)

fleet, verify, drift and repair also take --shard I/N (below).

deploy = canary + fleet. Hosts come from `python -m inventories.aws --json` (docs/CONTRACTS.md: a
JSON list of {"name", "ssh_hostname", "groups", "data"} in host-name order), filtered to the
`proxies` group. Each batch is deployed with
`pyinfra -y --json INVENTORY deploy.py --limit HOST...`; then every host of the batch must pass
the health gate: GET http://<ssh_hostname>:80/healthz and /readyz answer 200 (nginx itself, then
a request through to the backend).

Batches (--batches, like Ansible's `serial`): a comma-separated list whose items are counts (1 or
more) or percentages (1% to 100%) of the hosts of the rollout, canary included, rounded down and
at least 1. The last item repeats until every host is in a batch; the canary is always the first
host of the first batch. `1,25%,100%` on 8 hosts: the canary, then 2 hosts, then the other 5.
`--batch-size N` is the same as `--batches 1,N`; giving both is an error. `fleet` runs the same
plan without the canary (the `canary` job deployed it), `repair` over the drifted hosts only.

Failure tolerance (--max-fail-percent, like Ansible's `max_fail_percentage`): the rollout stops
when the hosts of one batch that failed their deploy or their gate are more than that percentage
of the batch; hosts of later batches are left untouched. The default, 0, stops at the first
failed host. Below the limit the failures are logged and the rollout goes on; it still exits 1.

Shards (--shard I/N, else GitLab's CI_NODE_INDEX/CI_NODE_TOTAL, which `parallel: N` sets): a
fleet too large for one job is split into N jobs, each taking the proxies of its shard. A host's
shard is sha256(key) mod N, plus 1 (not Python's hash(), which changes with every process), where
the key is its EC2 instance id (`ec2_instance_id` in the inventory's data); a host the inventory
gives no instance id is placed by its name, and the run lists it. A host's shard depends on its
own key and N only: it stays in its shard when other hosts come and go (changing N reshuffles).
1/1 is the whole fleet. fleet, verify, drift and repair take a shard; deploy and canary refuse one,
because the canary is deployed once, by the `canary` run before the shards. In a shard, `fleet`
picks the canary from the whole inventory (every shard agrees on it) and checks it first, as
without shards, then deploys the shard's own hosts in the shard's own batches (percentages of the
shard's hosts, the canary first and then left out when it is in the shard, else the shard's first
host); --max-fail-percent counts per batch of the shard, and a failure stops that shard only. A
shard with no host succeeds and says "shard I/N: no hosts"; an inventory with no proxy at all is
still an error. --report FILE becomes FILE-shard-I-of-N (drift-report-shard-2-of-3.txt and .json),
so the shards' files never collide; `join-drift --report drift-report.txt` reads every
drift-report-shard-*-of-*.json beside it and writes drift-report.txt and .json for the whole fleet
(exit 4 when a shard's report is missing, or the reports come from different shard counts).

Every decision comes from machine-readable output, never from pyinfra's log (a reworded message
must not turn a failure into a pass):

- Deploy: the JSON results of `pyinfra -y --json` on stdout. A host is deployed only if the
  results mention it, it is not in "failed_hosts" (unreachable hosts are there) and no operation
  lists it under "error". No results at all (pyinfra stops before printing them when every host
  failed, "No hosts remaining!"): every host of the batch failed. pyinfra's log goes on to our
  stderr as it comes; its last lines are repeated for the human on a failure, never read.
- Drift: `pyinfra --dry --json` (WITHOUT -y, which skips change detection), plus the lines the
  deploy itself writes to the file named by PROXY_DEPLOY_DRIFT_FILE (tasks/drift.py; one JSON
  object per line: "checked" for each host it planned, then "file" (a unified diff), "state"
  (one line: what runs and what should) and "invalid" (the repair would fail nginx -t / sshd -t /
  nft -c) records). A host drifted when it has a record or an operation of the plan lists it in
  "hosts_with_change". "hosts_with_conditional_change" is ignored: operations gated with `_if=`
  (e.g. "reload nginx if the config changed") are listed there on every run. A host without its
  "checked" line was not reached: it is reported as not checked.

This module owns the order of hosts, the health gate and the reports. It leaves alone what is
deployed (deploy.py, tasks/) and which hosts exist (inventories/).

Settings (command-line option > environment variable > default):

    --inventory         PROXY_INVENTORY           inventories/aws.py
    --canary            CANARY_HOST               the first proxy of the inventory
    --batches           ROLLOUT_BATCHES           1,1    batch sizes, e.g. 1,25%,100% (above)
    --batch-size        ROLLOUT_BATCH_SIZE        1      N = --batches 1,N
    --max-fail-percent  ROLLOUT_MAX_FAIL_PERCENT  0      0-100: failed hosts a batch tolerates
    --health-port       HEALTH_PORT               80
    --health-check      HEALTH_CHECKS             /healthz=200,/readyz=200   PATH=STATUS, all pass
    --health-timeout    HEALTH_TIMEOUT            5      seconds per request
    --health-attempts   HEALTH_ATTEMPTS           6      tries before a host counts as unhealthy
    --health-interval   HEALTH_INTERVAL           5      seconds between tries
    --health-host       HEALTH_HOST               (the address)  Host header of the checks; set it
                                                  to a served name when nginx's `server_names` is
                                                  set (its catch-all server answers /healthz only)
    --shard             CI_NODE_INDEX and         (every proxy)  I/N: shard I of N (above); an
                        CI_NODE_TOTAL             empty CI_NODE_INDEX is no shard (GitLab sets
                                                  CI_NODE_TOTAL=1 on every job without parallel)

A command-line batch option beats both environment variables; --batches and --batch-size
together (or ROLLOUT_BATCHES and ROLLOUT_BATCH_SIZE together) are refused.

Exit codes:
    0  done: every host deployed and healthy / all healthy / no drift
    1  a host failed its deploy or its health gate / a host is unhealthy
    2  bad usage or setting (the message names it), e.g. a canary that is not a proxy
    3  drift: a host would be changed by the deploy (after `repair`: still would)
    4  could not work: inventory unreadable or empty, pyinfra output unreadable, a host not checked
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

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
DRIFT_FILE_ENV = "PROXY_DEPLOY_DRIFT_FILE"
STDERR_TAIL_LINES = 5  # pyinfra's last log lines, repeated for the human when it gave no results
DIFF_LINES_SHOWN = 60  # per record in the text report; drift-report.json keeps everything


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
class BatchItem:
    """One item of --batches: a count of hosts, or a percentage of the rollout's hosts."""

    value: int
    percent: bool = False

    def size(self, total: int) -> int:
        """Hosts in a batch of a rollout over `total` hosts: percentages round down, minimum 1."""
        if not self.percent:
            return self.value
        return max(1, total * self.value // 100)

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


DEFAULT_BATCHES = (BatchItem(1), BatchItem(1))  # the canary, then one host at a time


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `total`, 1-based like GitLab's CI_NODE_INDEX; `source` names the setting
    it came from, for messages."""

    index: int
    total: int
    source: str = field(default="--shard", compare=False)

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"

    @property
    def file_suffix(self) -> str:
        """What a shard's report file names carry: drift-report-shard-2-of-3.txt."""
        return f"-shard-{self.index}-of-{self.total}"


# Modes that take a shard. deploy and canary do not: the canary is deployed once, before the
# shards, and N jobs picking and deploying it would deploy it N times at once.
SHARDED_MODES = ("fleet", "verify", "drift", "repair")


@dataclass(frozen=True)
class Settings:
    """Every setting of a run, validated; built once by `settings_from`."""

    inventory: str = DEFAULT_INVENTORY
    deploy_file: str = DEFAULT_DEPLOY_FILE
    group: str = PROXY_GROUP
    canary: str | None = None
    batches: tuple[BatchItem, ...] = DEFAULT_BATCHES
    max_fail_percent: int = 0
    health_port: int = HEALTH_PORT
    health_checks: tuple[Check, ...] = DEFAULT_CHECKS
    health_timeout: float = 5.0
    health_attempts: int = 6
    health_interval: float = 5.0
    health_host: str | None = None
    dry: bool = False
    report: Path | None = None
    shard: Shard | None = None  # None: every proxy (1/1 is None too)
    pyinfra: tuple[str, ...] = (sys.executable, "-m", "pyinfra")


# (Settings field, command-line option, environment variable). The batch sizes come from two
# settings that exclude each other: `_batches_from` reads them.
_SETTING_SOURCES: tuple[tuple[str, str, str | None], ...] = (
    ("inventory", "--inventory", "PROXY_INVENTORY"),
    ("canary", "--canary", "CANARY_HOST"),
    ("max_fail_percent", "--max-fail-percent", "ROLLOUT_MAX_FAIL_PERCENT"),
    ("health_port", "--health-port", "HEALTH_PORT"),
    ("health_checks", "--health-check", "HEALTH_CHECKS"),
    ("health_timeout", "--health-timeout", "HEALTH_TIMEOUT"),
    ("health_attempts", "--health-attempts", "HEALTH_ATTEMPTS"),
    ("health_interval", "--health-interval", "HEALTH_INTERVAL"),
    ("health_host", "--health-host", "HEALTH_HOST"),
)


def _int_in_range(key: str, value: str, minimum: int, maximum: int | None = None) -> int:
    if maximum is None:
        allowed = f"an integer of {minimum} or more"
    else:
        allowed = f"an integer from {minimum} to {maximum}"
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise RolloutError(f"{key}={value!r}: expected {allowed}", EXIT_USAGE)
    number = int(text)
    if number < minimum or (maximum is not None and number > maximum):
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


def parse_batches(key: str, value: str) -> tuple[BatchItem, ...]:
    """Parse a batch list such as "1,25%,100%" (counts of 1 or more, percentages 1-100%)."""
    error = RolloutError(
        f"{key}={value!r}: items are counts of 1 or more or percentages from 1% to 100%, "
        "e.g. 1,25%,100%",
        EXIT_USAGE,
    )
    items = []
    for raw in value.split(","):
        text = raw.strip()
        percent = text.endswith("%")
        digits = text.removesuffix("%").strip()
        if not (digits.isascii() and digits.isdigit()):
            raise error
        number = int(digits)
        if number < 1 or (percent and number > 100):
            raise error
        items.append(BatchItem(number, percent))
    return tuple(items)


def parse_shard(key: str, value: str) -> Shard:
    """Parse "I/N": shard I of N, N of 1 or more, I from 1 to N."""
    allowed = "expected I/N, shard I of N, with N of 1 or more and I from 1 to N, e.g. 2/4"
    index, sep, total = value.strip().partition("/")
    parts = (index.strip(), total.strip())
    if not sep or not all(p.isascii() and p.isdigit() for p in parts):
        raise RolloutError(f"{key}={value!r}: {allowed}", EXIT_USAGE)
    i, n = (int(p) for p in parts)
    if n < 1 or not 1 <= i <= n:
        raise RolloutError(f"{key}={value!r}: there is no shard {i} of {n}; {allowed}", EXIT_USAGE)
    return Shard(i, n, key)


def _shard_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Shard | None:
    """--shard, else CI_NODE_INDEX/CI_NODE_TOTAL (GitLab's `parallel:`). No index is no shard:
    GitLab sets CI_NODE_TOTAL=1 on every job, CI_NODE_INDEX only on parallel ones. 1/1 is None."""
    if args.shard is not None:
        shard = parse_shard("--shard", args.shard)
    else:
        index = environ.get("CI_NODE_INDEX", "").strip()
        total = environ.get("CI_NODE_TOTAL", "").strip()
        if not index:
            if total not in ("", "1"):
                raise RolloutError(
                    f"CI_NODE_TOTAL={total!r} without CI_NODE_INDEX: set both (GitLab's "
                    "`parallel:` does) or give --shard I/N",
                    EXIT_USAGE,
                )
            return None
        shard = parse_shard("CI_NODE_INDEX/CI_NODE_TOTAL", f"{index}/{total}")
    return None if shard.total == 1 else shard


def _shard_report(report: Path | None, shard: Shard | None) -> Path | None:
    """drift-report.txt -> drift-report-shard-2-of-3.txt in shard 2/3 (its .json follows)."""
    if report is None or shard is None:
        return report
    return report.with_name(f"{report.stem}{shard.file_suffix}{report.suffix}")


def _convert(name: str, key: str, value: str) -> object:
    if name in ("inventory", "canary", "health_host"):
        if not value.strip():
            raise RolloutError(f"{key}={value!r}: must not be empty", EXIT_USAGE)
        return value.strip()
    if name == "max_fail_percent":
        return _int_in_range(key, value, 0, 100)
    if name == "health_port":
        return _int_in_range(key, value, 1, 65535)
    if name == "health_checks":
        return parse_checks(key, value)
    if name == "health_attempts":
        return _int_in_range(key, value, 1)
    return _positive_float(key, value)


def _batches_from(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[BatchItem, ...] | None:
    """--batches or --batch-size N (= 1,N); the command line beats the environment, and the two
    settings given at the same level are refused rather than one silently ignored."""
    levels = (
        ("--batches", args.batches, "--batch-size", args.batch_size),
        (
            "ROLLOUT_BATCHES",
            environ.get("ROLLOUT_BATCHES", "").strip() or None,
            "ROLLOUT_BATCH_SIZE",
            environ.get("ROLLOUT_BATCH_SIZE", "").strip() or None,
        ),
    )
    for list_key, batches, size_key, size in levels:
        if batches is not None and size is not None:
            raise RolloutError(
                f"{list_key}={batches!r} and {size_key}={size!r}: give one of them, not both "
                f"({size_key} N is the same as {list_key} 1,N)",
                EXIT_USAGE,
            )
        if batches is not None:
            return parse_batches(list_key, batches)
        if size is not None:
            return (BatchItem(1), BatchItem(_int_in_range(size_key, size, 1)))
    return None


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
    batches = _batches_from(args, environ)
    if batches is not None:
        values["batches"] = batches
    values["dry"] = args.dry
    values["shard"] = shard = _shard_from(args, environ)
    values["report"] = _shard_report(Path(args.report) if args.report else None, shard)
    values["deploy_file"] = args.deploy_file
    if args.pyinfra:
        values["pyinfra"] = tuple(shlex.split(args.pyinfra))
    return Settings(**values)


def check_mode_takes_shard(mode: str, shard: Shard | None) -> None:
    """Refuse a shard where it has no meaning, before anything is touched."""
    if shard is None or mode in SHARDED_MODES:
        return
    if mode == "join-drift":
        why = "it reads every shard's report; run it once, after the shards"
    else:
        why = (
            "the canary is deployed once, before the shards: run `canary` once, then `fleet` "
            "in each shard"
        )
    raise RolloutError(
        f"{shard.source}={str(shard)!r}: `{mode}` does not take a shard ({why}); "
        f"shards are for {', '.join(SHARDED_MODES)}",
        EXIT_USAGE,
    )


def describe_batches(items: Sequence[BatchItem]) -> str:
    return ",".join(str(item) for item in items)


# --- Hosts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # ssh_hostname: where SSH and the health checks go
    instance_id: str | None = None  # ec2_instance_id: what places the host in a shard

    @property
    def shard_key(self) -> str:
        return self.instance_id or self.name


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
        data = entry.get("data") or {}
        address = entry.get("ssh_hostname") or data.get("ssh_hostname")
        if not isinstance(address, str) or not address:
            raise RolloutError(f"inventory host {entry['name']} has no ssh_hostname")
        instance_id = data.get("ec2_instance_id")
        if not (isinstance(instance_id, str) and instance_id.strip()):
            instance_id = None
        hosts.append(Host(entry["name"], address, instance_id))
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


def shard_of(key: str, total: int) -> int:
    """The shard (1 to `total`) of a host whose key is `key`: the first 8 bytes of its sha256,
    mod `total`, plus 1. The same on every machine and run (Python's hash() is not)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total + 1


def shard_hosts(hosts: Sequence[Host], shard: Shard) -> list[Host]:
    """The hosts of `shard`, in inventory order."""
    return [h for h in hosts if shard_of(h.shard_key, shard.total) == shard.index]


def describe_shard(shard: Shard, hosts: Sequence[Host], mine: Sequence[Host]) -> list[str]:
    """What a sharded run says first: which hosts are its own, and how they were chosen."""
    if not mine:
        return [
            f"shard {shard}: no hosts (the inventory's {len(hosts)} proxies are all in other "
            "shards); nothing to do"
        ]
    lines = [
        f"shard {shard}: {len(mine)} of {len(hosts)} proxies (by sha256 of the EC2 instance "
        f"id, mod {shard.total}): {', '.join(h.name for h in mine)}"
    ]
    by_name = [h.name for h in mine if not h.instance_id]
    if by_name:
        lines.append(
            "  placed by host name, the inventory gave them no ec2_instance_id: "
            + ", ".join(by_name)
        )
    return lines


def batch_sizes(items: Sequence[BatchItem], total: int) -> list[int]:
    """Sizes of the consecutive batches covering `total` hosts: the items in turn, the last one
    repeating; the final batch takes whatever is left."""
    sizes: list[int] = []
    covered = 0
    while covered < total:
        item = items[min(len(sizes), len(items) - 1)]
        size = min(item.size(total), total - covered)
        sizes.append(size)
        covered += size
    return sizes


def plan_batches(
    hosts: Sequence[Host],
    canary: Host,
    items: Sequence[BatchItem],
    *,
    with_canary: bool = True,
) -> list[list[Host]]:
    """The canary first, then the other hosts in inventory order, cut into batches by `items`
    (percentages of all these hosts, canary included). Without the canary (`fleet`: the canary
    job deployed it) the plan is the same, minus the canary and any batch left empty."""
    ordered = [canary, *(h for h in hosts if h != canary)]
    batches: list[list[Host]] = []
    start = 0
    for size in batch_sizes(items, len(ordered)):
        batches.append(ordered[start : start + size])
        start += size
    if not with_canary:
        batches = [[h for h in batch if h != canary] for batch in batches]
        batches = [batch for batch in batches if batch]
    return batches


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


# --- Deploy results: `pyinfra -y --json` --------------------------------------------------------


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


def _host_list(entry: dict, key: str) -> list[str]:
    """A list of host names from pyinfra's JSON; anything else means we cannot read it."""
    value = entry.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} is not a list of host names")
    return value


def _op_names(op: dict) -> set[str]:
    """Every name an operation is known by (a record's "operation" may use any of them)."""
    names = {n for n in op.get("names") or [] if isinstance(n, str)}
    if isinstance(op.get("name"), str):
        names.add(op["name"])
    return names


def _op_name(op: dict) -> str:
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
        failed_hosts = set(_host_list(results, "failed_hosts"))
        operations = results.get("operations") or []
        if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
            raise ValueError("'operations' is not a list of objects")
        lists = [
            (_op_name(op), *(_host_list(op, k) for k in ("success", "no_change", "error")))
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


# --- Drift: `pyinfra --dry --json` plus the deploy's drift records --------------------------------

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
        for host in _host_list(op, "hosts_with_change"):
            changes.setdefault(host, []).append((_op_name(op), _op_names(op)))
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
    if dry.repair_would_fail:
        out.append(
            f"REPAIR WOULD FAIL VALIDATION on {', '.join(dry.repair_would_fail)}: "
            "the desired configuration is refused by its checker; fix it before repairing."
        )
    for host in drifted:
        entries = dry.drift[host]
        loud = " - REPAIR WOULD FAIL VALIDATION" if host in dry.repair_would_fail else ""
        out += ["", f"{host}: {len(entries)} difference(s){loud}"]
        for entry in entries:
            out += describe_entry(entry)
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
            "drifted hosts, in batches with the health gate, then checks them again.",
        ]
    return "\n".join(out) + "\n"


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


# --- Running pyinfra ------------------------------------------------------------------------------


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


# --- The rollout ----------------------------------------------------------------------------------


@dataclass
class RolloutResult:
    healthy: list[str] = field(default_factory=list)  # deployed and through the gate
    failed: dict[str, str] = field(default_factory=dict)  # host -> why, in the order they failed
    unchecked: list[str] = field(default_factory=list)  # deployed in the stopping batch, not gated
    untouched: list[str] = field(default_factory=list)
    stopped_at: str | None = None  # the host whose failure stopped the rollout
    stop_reason: str = ""  # why that failure was one too many

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """What an operator needs after a failure: where it stopped and why, then every host."""
        if self.stopped_at:
            lines = [f"ROLLOUT ABORTED at {self.stopped_at}: {self.failed[self.stopped_at]}"]
            if self.stop_reason:
                lines.append(f"  {self.stop_reason}")
        else:
            lines = [
                f"ROLLOUT FINISHED WITH FAILURES: {len(self.failed)} host(s) failed "
                "(within --max-fail-percent, so the rollout went on)"
            ]
        lines.append("  failed:")
        lines += [f"    {host}: {why}" for host, why in self.failed.items()]
        lines.append(f"  deployed and healthy: {', '.join(self.healthy) or '-'}")
        if self.unchecked:
            lines.append(f"  deployed in the same batch, not checked: {', '.join(self.unchecked)}")
        lines.append(f"  untouched: {', '.join(self.untouched) or '-'}")
        return "\n".join(lines)


def too_many_failures(failed: int, batch_size: int, max_fail_percent: int) -> bool:
    """More than `max_fail_percent` of the batch failed (0: any failure is too many)."""
    return failed * 100 > max_fail_percent * batch_size


DeployFn = Callable[[Sequence[Host]], DeployRun]
GateFn = Callable[[Host], HealthResult]


@dataclass
class _BatchFailures:
    """One batch's failures, counted against the tolerance as they come."""

    result: RolloutResult
    label: str  # "batch 2/4"
    size: int
    max_fail_percent: int
    log: Callable[[str], None]
    count: int = 0

    def fail(self, host: str, reason: str) -> bool:
        """Record a failure; True when it is one too many: the rollout stops here."""
        self.result.failed[host] = reason
        self.count += 1
        self.log(f"    {host}: FAILED: {reason}")
        if not too_many_failures(self.count, self.size, self.max_fail_percent):
            return False
        self.result.stopped_at = host
        self.result.stop_reason = (
            f"{self.label}: {self.count} of {self.size} host(s) failed, more than the "
            f"{self.max_fail_percent}% tolerated (--max-fail-percent / ROLLOUT_MAX_FAIL_PERCENT)"
        )
        return True


def roll_out(
    batches: Sequence[Sequence[Host]],
    *,
    deploy: DeployFn,
    gate: GateFn,
    max_fail_percent: int = 0,
    log: Callable[[str], None] = print,
) -> RolloutResult:
    """Deploy batch by batch; after each batch its deployed hosts go through the gate, in order.
    When the failures of one batch exceed `max_fail_percent` of it, stop there: the rest of the
    batch is not gated and later batches are not touched."""
    result = RolloutResult()
    for index, batch in enumerate(batches):
        names = [h.name for h in batch]
        later = [h.name for b in batches[index + 1 :] for h in b]
        label = f"batch {index + 1}/{len(batches)}"
        log(f"==> {label}: deploying {', '.join(names)}")
        failures = _BatchFailures(result, label, len(batch), max_fail_percent, log)
        run = deploy(batch)
        missing = HostRun(failure="pyinfra gave no result for it")
        runs = {name: run.hosts.get(name, missing) for name in names}
        deployed = [h for h in batch if runs[h.name].failure is None]
        for host in deployed:
            log(f"    {host.name}: deployed: {runs[host.name].summary()}")
        if run.log_tail:
            log("    pyinfra's last lines (its whole log is above):")
            log("\n".join(f"      {line}" for line in run.log_tail))
        for name in names:
            why = runs[name].failure
            if why and failures.fail(name, f"deploy failed: {why}"):
                result.unchecked = [h.name for h in deployed]
                result.untouched = later
                return result
        for position, host in enumerate(deployed):
            health = gate(host)
            if health.ok:
                log(f"    {host.name}: healthy ({'; '.join(health.details)})")
                result.healthy.append(host.name)
                continue
            reason = f"health gate failed after {health.attempts} attempt(s): " + "; ".join(
                health.details
            )
            if failures.fail(host.name, reason):
                result.unchecked = [h.name for h in deployed[position + 1 :]]
                result.untouched = later
                return result
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
    out(
        "Dry: nothing is deployed. The rollout would run, stopping when more than "
        f"{settings.max_fail_percent}% of a batch fails:"
    )
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
    out.error(result.summary())
    return EXIT_FAILED


@dataclass
class Actions:
    """The side effects, replaceable in tests."""

    load_hosts: Callable[[Settings], list[Host]] = load_hosts
    deploy: Callable[[Settings, Sequence[Host]], DeployRun] = pyinfra_deploy
    dry_run: Callable[[Settings, Sequence[Host], Sequence[str]], DryRun] = pyinfra_dry_run
    gate: Callable[[Host, Settings], HealthResult] = lambda host, s: health_gate(host, s)


def _roll_out(
    settings: Settings, actions: Actions, batches: list[list[Host]], out: Output
) -> RolloutResult:
    return roll_out(
        batches,
        deploy=lambda batch: actions.deploy(settings, batch),
        gate=lambda host: actions.gate(host, settings),
        max_fail_percent=settings.max_fail_percent,
        log=out,
    )


def _own_hosts(settings: Settings, hosts: list[Host], out: Output) -> list[Host]:
    """Every host, or in a shard the shard's own hosts (said first, with how they were chosen)."""
    if settings.shard is None:
        return hosts
    mine = shard_hosts(hosts, settings.shard)
    for line in describe_shard(settings.shard, hosts, mine):
        out(line)
    return mine


def cmd_rollout(mode: str, settings: Settings, actions: Actions, out: Output) -> int:
    hosts = actions.load_hosts(settings)
    # From the whole inventory, so that every shard agrees on the canary (deploy:canary's).
    canary = pick_canary(hosts, settings.canary)
    mine = _own_hosts(settings, hosts, out)
    if not mine:
        return EXIT_OK  # an empty shard; describe_shard said so
    if mode == "canary":
        batches = [[canary]]
    elif canary in mine:
        batches = plan_batches(mine, canary, settings.batches, with_canary=(mode == "deploy"))
    else:  # a shard without the canary: its batches start with its own first host
        batches = plan_batches(mine, mine[0], settings.batches)
    where = "" if canary in mine else " (another shard's)"
    out(
        f"{mode}: {len(mine)} proxies, canary {canary.name}{where}, "
        f"batches {describe_batches(settings.batches)} "
        f"({', '.join(str(len(b)) for b in batches) or 'none'}), "
        f"max fail {settings.max_fail_percent}% per batch"
    )
    if settings.dry:
        if mode == "fleet":
            out(f"  first: gate the canary {canary.name} (it must already be healthy)")
        _describe_plan(settings, batches, out)
        return EXIT_OK
    if mode == "fleet":
        health = actions.gate(canary, settings)
        if not health.ok:
            result = RolloutResult(
                failed={
                    canary.name: "the canary is not healthy, so the fleet is not started: "
                    + "; ".join(health.details)
                },
                untouched=[h.name for b in batches for h in b],
                stopped_at=canary.name,
            )
            return _finish_rollout(result, out)
        out(f"canary {canary.name} is healthy; rolling out to the rest")
        if not batches:
            out("no other proxy to deploy")
    return _finish_rollout(_roll_out(settings, actions, batches, out), out)


def cmd_verify(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = _own_hosts(settings, actions.load_hosts(settings), out)
    if not hosts:
        return EXIT_OK
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
            json.dumps(drift_json(dry, settings.shard), indent=2) + "\n"
        )


def _dry_run_limits(settings: Settings, hosts: Sequence[Host]) -> list[str]:
    """--limit proxies for the whole fleet; a shard names its hosts (pyinfra reaches only them)."""
    return [h.name for h in hosts] if settings.shard else [settings.group]


def _empty_shard_report(settings: Settings, title: str) -> int:
    """An empty shard still writes its report: `join-drift` then knows the shard ran."""
    assert settings.shard is not None
    now = datetime.now(UTC)
    text = f"{title} ({now:%Y-%m-%d %H:%M} UTC)\nShard {settings.shard}: no hosts.\n"
    _write_drift_report(settings, DryRun(hosts=[]), text)
    return EXIT_OK


def _drift_exit(dry: DryRun) -> int:
    if dry.drifted:
        return EXIT_DRIFT
    if dry.error or dry.not_checked:
        return EXIT_ERROR
    return EXIT_OK


def cmd_drift(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = _own_hosts(settings, actions.load_hosts(settings), out)
    if not hosts:
        return _empty_shard_report(settings, "Drift report")
    limits = _dry_run_limits(settings, hosts)
    dry = actions.dry_run(settings, hosts, limits)
    text = format_drift_report(
        dry,
        title="Drift report",
        command=dry_run_command(settings, limits),
        shard=settings.shard,
    )
    out(text.rstrip("\n"))
    _write_drift_report(settings, dry, text)
    return _drift_exit(dry)


def cmd_repair(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = _own_hosts(settings, actions.load_hosts(settings), out)
    if not hosts:
        return _empty_shard_report(settings, "Drift before repair")
    limits = _dry_run_limits(settings, hosts)
    before = actions.dry_run(settings, hosts, limits)
    report = format_drift_report(
        before,
        title="Drift before repair",
        command=dry_run_command(settings, limits),
        shard=settings.shard,
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
    batches = plan_batches(drifted, drifted[0], settings.batches)
    if settings.dry:
        _describe_plan(settings, batches, out)
        _write_drift_report(settings, before, report)
        return EXIT_DRIFT
    result = _roll_out(settings, actions, batches, out)
    code = _finish_rollout(result, out)
    if code != EXIT_OK:
        _write_drift_report(settings, before, report + "\n" + result.summary() + "\n")
        return code
    names = [h.name for h in drifted]
    after = actions.dry_run(settings, drifted, names)
    after_text = format_drift_report(
        after,
        title="Drift after repair",
        command=dry_run_command(settings, names),
        shard=settings.shard,
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


SHARD_REPORT_GLOB = "{stem}-shard-*-of-*.json"


def _read_shard_report(path: Path) -> tuple[DryRun, Shard]:
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


def cmd_join_drift(settings: Settings, out: Output) -> int:
    """drift-report-shard-*-of-*.json -> drift-report.txt and .json, the whole fleet's."""
    target = settings.report or Path("drift-report.txt")
    pattern = SHARD_REPORT_GLOB.format(stem=target.stem)
    paths = sorted(target.parent.glob(pattern))
    if not paths:
        whole = target.with_suffix(".json")
        if whole.is_file():
            out(
                f"no shard report ({pattern}): the drift check ran unsharded, so {target} is "
                "already the whole fleet's report"
            )
            return EXIT_OK
        raise RolloutError(f"no drift report to join: neither {pattern} nor {whole}")
    joined, total, missing = join_drift_reports([_read_shard_report(p) for p in paths])
    text = format_drift_report(
        joined,
        title=f"Drift report of the whole fleet ({total - len(missing)} of {total} shards)",
        command=None,
        sources=[p.name for p in paths],
    )
    out(text.rstrip("\n"))
    target.write_text(text)
    doc = drift_json(joined) | {"shards": {"total": total, "missing": missing}}
    target.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    return EXIT_ERROR if missing else EXIT_OK


# --- Command line ---------------------------------------------------------------------------------

MODES = ("deploy", "canary", "fleet", "verify", "drift", "repair", "join-drift")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.rollout",
        description="Canary-first, health-gated rollout of deploy.py to the proxies; "
        "verify; drift detection and repair.",
        epilog="Exit codes: 0 ok, 1 a host failed, 2 bad usage, "
        "3 drift, 4 could not work (inventory, pyinfra, a host not checked).",
    )
    parser.add_argument("mode", nargs="?", default="deploy", choices=MODES, help="default: deploy")
    parser.add_argument("--inventory", help=f"pyinfra inventory (default {DEFAULT_INVENTORY})")
    parser.add_argument("--canary", help="canary host name (default: the first proxy)")
    parser.add_argument(
        "--batches",
        help="batch sizes, counts or percentages of all the hosts, the last one repeating "
        "(default 1,1; e.g. 1,25%%,100%%)",
    )
    parser.add_argument("--batch-size", help="N: the same as --batches 1,N")
    parser.add_argument(
        "--max-fail-percent",
        help="stop when more than this percentage of a batch failed (0-100, default 0)",
    )
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
    parser.add_argument(
        "--shard",
        help="I/N: only the proxies of shard I of N, by EC2 instance id (fleet, verify, drift, "
        "repair; default: CI_NODE_INDEX/CI_NODE_TOTAL when set, else every proxy)",
    )
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
        check_mode_takes_shard(args.mode, settings.shard)
        out = Output(
            settings.report if args.mode not in ("drift", "repair", "join-drift") else None
        )
        if args.mode in ("deploy", "canary", "fleet"):
            code = cmd_rollout(args.mode, settings, actions, out)
        elif args.mode == "verify":
            code = cmd_verify(settings, actions, out)
        elif args.mode == "drift":
            code = cmd_drift(settings, actions, out)
        elif args.mode == "repair":
            code = cmd_repair(settings, actions, out)
        else:
            code = cmd_join_drift(settings, out)
        out.write()
        return code
    except RolloutError as e:
        print(f"rollout: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
