"""The rollout's settings: one validated, frozen `Settings` built once from the command line and
the environment (an option beats its environment variable), with the parsers of each value
(health checks, batches, shards) and the errors that name the key, its value and what is allowed.
It leaves alone what the settings are used for (hosts.py, gate.py, commands.py)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.rollout.errors import EXIT_USAGE, RolloutError

PROXY_GROUP = "proxies"
DEFAULT_INVENTORY = "inventories/aws.py"
DEFAULT_DEPLOY_FILE = "deploy.py"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
HEALTH_PORT = 80


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
    # The load balancer's target groups: the gate also waits for its own view (lb_health.py).
    target_group_arns: tuple[str, ...] = ()
    # Or the load balancer by name: its target groups, looked up before any host is touched.
    load_balancer: str | None = None
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
    ("target_group_arns", "--target-group-arn", "ROLLOUT_TARGET_GROUP_ARNS"),
    ("load_balancer", "--load-balancer", "ROLLOUT_LOAD_BALANCER"),
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


def is_target_group_arn(arn: object) -> bool:
    """arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID (the region is
    where lb_health.py asks)."""
    parts = arn.split(":") if isinstance(arn, str) else []
    return (
        len(parts) >= 6
        and parts[0] == "arn"
        and parts[2] == "elasticloadbalancing"
        and bool(parts[3])
        and parts[5].startswith("targetgroup/")
    )


def parse_target_group_arns(key: str, value: str) -> tuple[str, ...]:
    """Target group ARNs: comma- or space-separated, or the JSON object (group -> ARN) or list
    that `terraform output -json target_group_arns` prints. Duplicates count once."""
    text = value.strip()
    if text.startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise RolloutError(f"{key}={value!r}: not JSON ({e.msg})", EXIT_USAGE) from None
        items = list(doc.values()) if isinstance(doc, dict) else doc
    else:
        items = text.replace(",", " ").split()
    arns = tuple(dict.fromkeys(items))
    for arn in arns:
        if not is_target_group_arn(arn):
            raise RolloutError(
                f"{key}={value!r}: {arn!r} is not a target group ARN (expected "
                "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID; Terraform's "
                "output target_group_arns)",
                EXIT_USAGE,
            )
    if not arns:
        raise RolloutError(f"{key}={value!r}: no target group ARN in it", EXIT_USAGE)
    return arns


def parse_load_balancer_name(key: str, value: str) -> str:
    """An Application Load Balancer's name, as ELBv2 allows it: 1 to 32 letters, digits and
    hyphens, not starting or ending with a hyphen (Terraform's <name_prefix>-<environment>)."""
    name = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?", name):
        raise RolloutError(
            f"{key}={value!r}: expected a load balancer name, 1 to 32 letters, digits and "
            "hyphens, not starting or ending with a hyphen (e.g. proxy-production)",
            EXIT_USAGE,
        )
    return name


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
    if name == "target_group_arns":
        return parse_target_group_arns(key, value)
    if name == "load_balancer":
        return parse_load_balancer_name(key, value)
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
    sources: dict[str, str] = {}
    for name, option, env in _SETTING_SOURCES:
        given = getattr(args, name)
        if isinstance(given, list):  # --health-check and --target-group-arn may be repeated
            given = ",".join(given) if given else None
        if given is not None:
            values[name], sources[name] = _convert(name, option, given), option
        elif env and environ.get(env, "").strip():
            values[name], sources[name] = _convert(name, env, environ[env]), env
    _one_target_group_source(values, sources)
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


def _one_target_group_source(values: dict[str, object], sources: dict[str, str]) -> None:
    """Target group ARNs and a load balancer name say the same thing: the command line beats the
    environment, and both at the same level are refused rather than one silently ignored."""
    if "target_group_arns" not in values or "load_balancer" not in values:
        return
    arns_key, lb_key = sources["target_group_arns"], sources["load_balancer"]
    if arns_key.startswith("--") == lb_key.startswith("--"):
        in_ci = "" if lb_key.startswith("--") else f"; in CI, set {lb_key} empty to use {arns_key}"
        raise RolloutError(
            f"{arns_key} and {lb_key}={values['load_balancer']}: give one of them, not both "
            f"(the target groups, or the load balancer whose target groups they are{in_ci})",
            EXIT_USAGE,
        )
    del values["load_balancer" if arns_key.startswith("--") else "target_group_arns"]


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
